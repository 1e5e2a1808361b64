"""A trained prompt bundled with its frozen model (`TunedPrompt`): save, load, evaluate, classify, generate."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .backbones import FrozenModel, load_model
from .errors import SoftPromptError
from .evaluation import evaluate
from .methods import PromptMethod, build_method
from .runtime.kinds import check_texts, kind_of
from .runtime.prefix_cache import inference_prompt
from .storage import read_tensors, save_tensors
from .tasks import Task


@dataclass
class TunedPrompt:
    base: FrozenModel
    method: PromptMethod
    info: dict  # task, label words, metrics... (what the prompt file's metadata holds besides the method)

    def __call__(self, inputs):
        """The method's prompt for a batch; outside autograd a task-level prompt comes from the prefix cache."""
        return inference_prompt(self.base, self.method, inputs)

    def metadata(self) -> dict:
        return {
            **self.info,
            "method": self.method.name,
            "config": asdict(self.method.config),
            "base_model": {"name": self.base.name, "fingerprint": self.base.fingerprint},
        }

    def save(self, path) -> None:
        save_tensors(path, self.method.state_dict(), self.metadata())

    def features(self, texts: list[str]) -> torch.Tensor | None:
        with torch.no_grad():
            return self.method.instance_features(self.base, texts)

    def classify(self, inputs: list) -> list[dict]:
        """For each input, the most likely label word and every label's probability. Inputs are texts formatted as in
        training; on a ViT, images (file paths, encoded bytes, PIL images or uint8 arrays)."""
        kind, labels = kind_of(self.base), self.label_words()
        examples = kind.as_examples(inputs, labels)
        self.method.eval()
        encoded = kind.encode(self.base, examples, self.info.get("max_length", 512))
        with torch.no_grad():
            scores = kind.choice_scores(self.base, self, encoded, self.info.get("length_normalized", False),
                                        self.features([e.text for e in examples]))
        probabilities = torch.softmax(scores, -1)
        return [{"label": labels[int(p.argmax())].strip(), "probabilities": {l.strip(): float(v) for l, v in zip(labels, p)}}
                for p in probabilities]

    def label_words(self) -> list[str]:
        """The labels `classify` chooses between: the answer choices every example of the training task shared."""
        labels = self.info.get("label_words") or []
        if not labels:
            raise SoftPromptError("this prompt has no label words to classify with: it was trained on a generation task or on "
                                  "one whose answer choices differ per example (multiple choice); score such choices with evaluate()")
        return labels

    def generate(self, texts: list[str], max_new_tokens: int = 64, temperature: float = 0.0) -> list[str]:
        generate_text = kind_of(self.base).generate
        if generate_text is None:
            raise SoftPromptError(f"{self.base.name} is a {self.base.kind} backbone: it classifies, it does not generate text")
        check_texts(texts)
        self.method.eval()
        return generate_text(self.base, self, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                             features=self.features(texts))

    def evaluate(self, task: Task, batch_size: int = 16, max_length: int = 256) -> dict:
        self.method.eval()
        return evaluate(self.base, self, task, batch_size, max_length, self.features([e.text for e in task.test]))


def load_prompt(path, model: FrozenModel | None = None, device: str = "auto", dtype: str = "auto") -> TunedPrompt:
    """Load a prompt file onto `model` (default: the base model named in the file, loaded on `device` in
    `dtype`), checking it fits. Prompt files hold float32 CPU tensors: a prompt trained on a GPU in bf16
    loads on a CPU in float32 and the other way round."""
    tensors, metadata = read_tensors(path)
    stored = metadata["base_model"]
    base = model or load_model(stored["name"], device, dtype)
    if base.fingerprint != stored["fingerprint"]:
        raise SoftPromptError(
            f"prompt file {path} was trained on base model {stored['name']!r} ({stored['fingerprint']}), "
            f"not on the loaded model {base.name!r} ({base.fingerprint})")
    try:
        method = build_method(metadata["method"], base, metadata["config"])
    except SoftPromptError as error:
        raise SoftPromptError(f"prompt file {path}: {error}") from error
    expected = {k: tuple(v.shape) for k, v in method.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        raise SoftPromptError(f"prompt file {path}: tensors {found} do not match what {metadata['method']!r} builds: {expected}")
    method.load_state_dict(tensors)
    method.eval()
    info = {k: v for k, v in metadata.items() if k not in ("method", "config", "base_model", "format", "checksum")}
    return TunedPrompt(base, method, info)
