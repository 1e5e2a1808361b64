"""Hugging Face PEFT prompt-learning adapters <-> softprompt prompt files.

A PEFT adapter folder holds adapter_config.json and adapter_model.safetensors with one tensor,
`prompt_embeddings`: for PROMPT_TUNING / P_TUNING the (m, d) prompt itself, for PREFIX_TUNING the
(m, L * 2 * h_kv * d_head) keys and values of every layer (PEFT always saves the computed prompt, never
its encoder). Any method whose `shared_prefix()` is plain embeddings or plain keys/values maps onto one
of these exactly; input-dependent methods have no PEFT equivalent.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..tuned import TunedPrompt
from ..backbones import FrozenModel
from ..errors import SoftPromptError
from ..methods import METHODS, PromptMethod, build_method
from ..storage import METADATA_KEY

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING")
PREFIX_TYPE = "PREFIX_TUNING"


def export_peft(prompt: TunedPrompt, output: Path) -> None:
    """Write `prompt` as a PEFT adapter folder (prompt tuning for embeddings, prefix tuning for keys/values)."""
    from peft import PrefixTuningConfig, PromptTuningConfig

    if not peft_exportable(type(prompt.method)):
        raise SoftPromptError(f"method {prompt.method.name!r} has no PEFT equivalent: its prompt depends on the input "
                              f"or changes the model's layers (PEFT exports {', '.join(exportable_methods())})")
    base, static = prompt.base, prompt.method.shared_prefix()
    common = {"task_type": "CAUSAL_LM", "base_model_name_or_path": base.name, "num_transformer_submodules": 1,
              "num_layers": base.num_layers, "inference_mode": True}
    if static.embeds is not None:
        embeddings = static.embeds[0]  # (m, d)
        config = PromptTuningConfig(num_virtual_tokens=embeddings.shape[0], token_dim=base.hidden_size,
                                    num_attention_heads=base.config.num_attention_heads, **common)
    else:
        kv = torch.stack([torch.stack([k[0], v[0]]) for k, v in static.key_values])  # (L, 2, h_kv, m, d_head)
        m = kv.shape[3]
        embeddings = kv.permute(3, 0, 1, 2, 4).reshape(m, -1)  # PEFT's layout: (m, L * 2 * h_kv * d_head)
        config = PrefixTuningConfig(num_virtual_tokens=m, token_dim=base.num_kv_heads * base.head_dim,
                                    num_attention_heads=base.num_kv_heads, prefix_projection=False, **common)
    # Our own metadata rides along in the safetensors header (PEFT ignores it), so `import` restores it.
    header = {"format": "pt", METADATA_KEY: json.dumps(prompt.metadata())}
    with _staging_folder(output) as folder:
        config.save_pretrained(str(folder))
        save_file({"prompt_embeddings": embeddings.detach().contiguous().cpu()}, str(folder / WEIGHTS_FILE), metadata=header)


def peft_exportable(method_class: type[PromptMethod]) -> bool:
    """Whether a method's whole prompt is one fixed set of embeddings or of keys/values (what PEFT stores),
    read from what it declares. DePT's update of the input embeddings or CaPT's layer hook has no PEFT equivalent."""
    return "text" in method_class.kinds and not method_class.input_dependent and method_class.injects in ({"embeds"}, {"key_values"})


def exportable_methods() -> list[str]:
    return sorted(name for name, cls in METHODS.items() if peft_exportable(cls))


def import_peft(folder: Path, base: FrozenModel) -> TunedPrompt:
    """Read a PEFT prompt-learning adapter folder as a prompt on `base` (P_TUNING becomes prompt tuning:
    PEFT stores only the prompt its encoder computed)."""
    config, embeddings, metadata = read_peft_folder(folder)
    stored = metadata.get("base_model", {}).get("fingerprint")
    if stored and stored != base.fingerprint:
        raise SoftPromptError(f"{folder} was exported from base model {metadata['base_model']['name']!r} ({stored}), "
                              f"not from the loaded model {base.name!r} ({base.fingerprint})")
    peft_type, m = config.get("peft_type"), config.get("num_virtual_tokens")
    if peft_type in PROMPT_TYPES:
        _expect(folder, embeddings, (m, base.hidden_size), base)
        method = build_method("prompt-tuning", base, {"num_virtual_tokens": m})
        method.load_state_dict({"embeddings": embeddings})
    elif peft_type == PREFIX_TYPE:
        _expect(folder, embeddings, (m, base.num_layers * 2 * base.num_kv_heads * base.head_dim), base)
        method = build_method("prefix-tuning", base, {"num_virtual_tokens": m})
        kv = embeddings.view(m, base.num_layers, 2, base.num_kv_heads, base.head_dim).permute(1, 2, 3, 0, 4)
        method.load_state_dict({"key_values": kv.contiguous()})
    else:
        raise SoftPromptError(f"{folder}: PEFT type {peft_type!r} cannot be imported; softprompt reads "
                              f"{', '.join((*PROMPT_TYPES, PREFIX_TYPE))}")
    method.eval()
    info = {k: v for k, v in metadata.items() if k not in ("method", "config", "base_model")}
    return TunedPrompt(base, method, {**info, "imported_from": f"peft {peft_type}"})


def read_peft_folder(folder: Path) -> tuple[dict, torch.Tensor, dict]:
    """adapter_config.json, the prompt_embeddings tensor, and softprompt's metadata if the folder came from us."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise SoftPromptError(f"{folder} is not a PEFT adapter folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
        with safe_open(str(weights_path), framework="pt") as handle:
            header = handle.metadata() or {}
            embeddings = handle.get_tensor("prompt_embeddings").float()
    except (json.JSONDecodeError, SafetensorError, OSError) as error:
        raise SoftPromptError(f"{folder}: unreadable adapter ({error})") from error
    except KeyError as error:  # safe_open's get_tensor on a missing name
        raise SoftPromptError(f"{folder}: {WEIGHTS_FILE} has no 'prompt_embeddings' tensor (not a prompt-learning adapter)") from error
    return config, embeddings, json.loads(header.get(METADATA_KEY, "{}"))


def _expect(folder: Path, tensor: torch.Tensor, shape: tuple, base: FrozenModel) -> None:
    if tuple(tensor.shape) != shape:
        raise SoftPromptError(f"{folder}: prompt_embeddings has shape {tuple(tensor.shape)}, but model {base.name!r} "
                              f"needs {shape}: was the adapter made for another model?")


@contextmanager
def _staging_folder(output: Path):
    """A temporary folder beside `output` that replaces it only if the block succeeds, so an export is never
    half-written. Only an earlier adapter folder may be replaced."""
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not (output / CONFIG_FILE).exists():
        raise SoftPromptError(f"{output} exists and is not an adapter folder; choose another --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        yield staging
        shutil.rmtree(output, ignore_errors=True)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
