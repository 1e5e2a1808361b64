"""What training, evaluation and a trained prompt call on a backbone, by the backbone's kind (`FrozenModel.kind`):
text is tokenised and scored by its answers' log-probabilities; images are decoded and scored by the method's
classifier head. A new kind of backbone is one more entry in KINDS; nothing above this layer asks which kind it has."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..backbones import FrozenModel
from ..errors import SoftPromptError
from ..tasks import Example, ImageExample
from ..tasks.images import open_image
from . import images, scoring
from .batching import encode
from .generation import generate_text


@dataclass(frozen=True)
class KindOps:
    encode: Callable  # (base, examples, max_length) -> encoded examples, once per run
    train_length: Callable  # an encoded example -> its length in a training batch (batches group similar lengths)
    eval_length: Callable  # an encoded example -> its length when scored
    choice_scores: Callable  # (base, prompt_fn, batch, length_normalized, features) -> (B, C) scores
    choice_loss: Callable  # (base, prompt_fn, batch, features, length_normalized=) -> (loss, positions read)
    lm_loss: Callable  # (base, prompt_fn, batch, features) -> (loss, positions read): the true answer's likelihood
    as_examples: Callable  # (inputs a user passes to classify, label words) -> examples
    generate: Callable | None  # (base, prompt_fn, texts, **options) -> texts; None where the backbone cannot
    zero_shot: bool  # whether the bare model answers at all


def check_texts(texts) -> None:
    if not isinstance(texts, (list, tuple)) or not texts:
        raise SoftPromptError(f"expected a non-empty list of texts, got {type(texts).__name__} {texts!r:.60}")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise SoftPromptError(f"text {index} must be a non-empty string, got {text!r:.60}")


def _text_examples(texts, labels: list[str]) -> list[Example]:
    check_texts(texts)
    return [Example(text, tuple(labels), 0) for text in texts]


def _image_examples(sources, labels: list[str]) -> list[Example]:
    """Image files, encoded bytes, PIL images or arrays, each decoded now so that a bad one is named."""
    if not isinstance(sources, (list, tuple)) or not sources:
        raise SoftPromptError(f"expected a non-empty list of images (paths, bytes or PIL images), got {type(sources).__name__}")
    return [ImageExample(str(s) if isinstance(s, str) else f"image {i}", tuple(labels), 0, image=open_image(s))
            for i, s in enumerate(sources)]


def _with_answer_length(encoded) -> int:
    return len(encoded.context) + len(encoded.target)


KINDS: dict[str, KindOps] = {
    "text": KindOps(encode, _with_answer_length, lambda encoded: len(encoded.context), scoring.choice_scores,
                    scoring.choice_loss, scoring.lm_loss, _text_examples, generate_text, zero_shot=True),
    # An image has one fixed length; both objectives are the cross-entropy of the true class.
    "vision": KindOps(images.encode_images, lambda encoded: 1, lambda encoded: 1, images.class_scores, images.class_loss,
                      images.class_loss, _image_examples, None, zero_shot=False),
}


def kind_of(base: FrozenModel) -> KindOps:
    return KINDS[base.kind]
