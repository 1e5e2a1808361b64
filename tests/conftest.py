"""Shared fixtures: the real embedded model (loaded once), a tiny random Llama with grouped-query attention that uses
the real tokenizer, and a tiny random DINOv2 with synthetic images, for fast plumbing tests (never as evidence that a
method learns)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM

from softprompt.methods import build_method
from softprompt.backbones import load_model
from softprompt.backbones.loading import _smollm2_folder
from softprompt.tasks import Example, ImageExample, Task


@pytest.fixture(scope="session")
def real_base():
    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(_smollm2_folder())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tiny_model_dir):
    return load_model(str(tiny_model_dir))


REVIEWS = [("a gorgeous , witty film", 1), ("dull and lifeless", 0), ("one of the best of the year", 1),
           ("a tedious mess", 0), ("warm , funny and wise", 1), ("the plot is a total bore from start to end", 0),
           ("an utterly charming delight", 1), ("painfully slow", 0), ("sharp writing and great acting", 1),
           ("i hated every minute of it", 0), ("a triumph", 1), ("clumsy , boring and far too long", 0)]


def review(text: str, label: int) -> Example:
    return Example(f"Review: {text}\nSentiment:", (" negative", " positive"), label)


@pytest.fixture(scope="session")
def tiny_task():
    examples = [review(t, l) for t, l in REVIEWS]
    return Task("reviews", examples[:8], examples[8:], "Classify the sentiment of the review.", "hand-written")


@pytest.fixture
def reviews_file(tmp_path):
    path = tmp_path / "reviews.jsonl"
    labels = ["negative", "positive"]
    path.write_text("".join(json.dumps({"text": t, "label": labels[l]}) + "\n" for t, l in REVIEWS))
    return path


@pytest.fixture
def trained_like(tiny_base, tiny_task):
    """A method on the tiny model as if trained: initialised from the task, every parameter nudged off its start
    (DePT's zero-initialised update must matter too). Seeded: the same name gives the same method."""
    def make(name: str, options: dict | None = None, nudge: float = 0.05):
        torch.manual_seed(0)
        method = build_method(name, tiny_base, options)
        method.initialize(tiny_base, tiny_task)
        with torch.no_grad():
            for parameter in method.parameters():
                parameter.add_(torch.randn_like(parameter) * nudge)
        return method.eval()
    return make


# ---- vision: a tiny random DINOv2 (28 px images, 7 px patches: 16 patches) and a task of synthetic images ----
def striped_image(kind: int, seed: int) -> np.ndarray:
    """(28, 28) uint8: horizontal (0), vertical (1) or diagonal (2) stripes with seeded noise, easy to tell apart."""
    rows, cols = np.mgrid[0:28, 0:28]
    pattern = [rows, cols, rows + cols][kind] // 4 % 2 * 160
    noise = np.random.default_rng(seed).integers(0, 60, (28, 28))
    return (pattern + noise).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-dinov2")
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=2, patch_size=7,
                          image_size=28, layerscale_value=1.0, layer_norm_eps=1e-6)
    Dinov2Model(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 28, "width": 28}}))
    return folder


@pytest.fixture(scope="session")
def tiny_vit(tiny_vit_dir):
    return load_model(str(tiny_vit_dir))


CLASSES = ("horizontal", "vertical", "diagonal")


@pytest.fixture(scope="session")
def tiny_image_task():
    def examples(seeds):
        return [ImageExample(f"{CLASSES[k]} {s}", CLASSES, k, image=striped_image(k, s)) for s in seeds for k in range(3)]
    return Task("stripes", examples(range(4)), examples(range(100, 102)), "Tell the stripes apart.", "synthetic: 12 train / 6 test")


@pytest.fixture
def vision_trained_like(tiny_vit, tiny_image_task):
    """A vision method on the tiny ViT as if trained: initialised from the task, every parameter nudged off its start
    (LoRA's zero-initialised B must matter too). Seeded: the same name gives the same method."""
    def make(name: str, options: dict | None = None):
        torch.manual_seed(0)
        method = build_method(name, tiny_vit, options)
        method.initialize(tiny_vit, tiny_image_task)
        with torch.no_grad():
            for parameter in method.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
        return method.eval()
    return make
