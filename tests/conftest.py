"""Shared fixtures: the real embedded model (loaded once), and a tiny random Llama with grouped-query
attention that uses the real tokenizer, for fast plumbing tests (never as evidence that a method learns)."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from softprompt.methods import build_method
from softprompt.backbones import load_model
from softprompt.backbones.loading import _smollm2_folder
from softprompt.tasks import Example, Task


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
