"""A trained prompt bundled with its frozen model: save, load, evaluate, classify, generate."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .engine import accuracy, choice_scores, encode, no_prompt
from .errors import SoftPromptError
from .files import read_tensors, save_tensors
from .generate import generate_ids, generate_text
from .methods import PromptMethod, build_method
from .models import FrozenModel, load_model
from .prefix_cache import inference_prompt
from .tasks import Example, Task, final_number


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

    def classify(self, texts: list[str]) -> list[dict]:
        """For each text (formatted as in training), the most likely label word and every label's probability."""
        _check_texts(texts)
        labels = self.info.get("label_words") or []
        if not labels:
            raise SoftPromptError("this prompt was not trained on a classification task: it has no label words")
        self.method.eval()
        encoded = encode(self.base, [_as_example(t, labels) for t in texts], self.info.get("max_length", 512))
        with torch.no_grad():
            scores = choice_scores(self.base, self, encoded, False, self.features(texts))
        probabilities = torch.softmax(scores, -1)
        return [{"label": labels[int(p.argmax())].strip(), "probabilities": {l.strip(): float(v) for l, v in zip(labels, p)}}
                for p in probabilities]

    def generate(self, texts: list[str], max_new_tokens: int = 64, temperature: float = 0.0) -> list[str]:
        _check_texts(texts)
        self.method.eval()
        return generate_text(self.base, self, texts, max_new_tokens=max_new_tokens, temperature=temperature,
                             features=self.features(texts))

    def evaluate(self, task: Task, batch_size: int = 16, max_length: int = 256) -> dict:
        self.method.eval()
        return evaluate_prompt(self.base, self, task, batch_size, max_length, self.features([e.prompt for e in task.test]))


def _check_texts(texts) -> None:
    if not isinstance(texts, (list, tuple)) or not texts:
        raise SoftPromptError(f"expected a non-empty list of texts, got {type(texts).__name__} {texts!r:.60}")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise SoftPromptError(f"text {index} must be a non-empty string, got {text!r:.60}")


def _as_example(text: str, labels: list[str]) -> Example:
    return Example(text, tuple(labels), 0)


def evaluate_prompt(base: FrozenModel, prompt_fn, task: Task, batch_size: int, max_length: int,
                    features: torch.Tensor | None = None, progress=None) -> dict:
    """The task's test metric: accuracy for choice tasks, exact match of the final number for generation."""
    if not (isinstance(batch_size, int) and batch_size >= 1 and isinstance(max_length, int) and max_length >= 1):
        raise SoftPromptError(f"batch_size and max_length must be integers >= 1, got {batch_size!r} and {max_length!r}")
    examples = task.test
    encoded = encode(base, examples, max_length)
    if examples[0].is_choice:
        return {"accuracy": accuracy(base, prompt_fn, encoded, task, batch_size, features, progress)}
    correct = 0
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        batch_features = features[start:start + batch_size] if features is not None else None
        outputs = generate_ids(base, prompt_fn, [e.context for e in batch], task.max_new_tokens, features=batch_features)
        for ids, example in zip(outputs, examples[start:start + batch_size]):
            correct += final_number(base.tokenizer.decode(ids)) == final_number(example.completion)
        if progress is not None:
            progress.update(len(batch))
    return {"exact_match": correct / len(encoded)}


def load_prompt(path, model: FrozenModel | None = None) -> TunedPrompt:
    """Load a prompt file onto `model` (default: the base model named in the file), checking it fits."""
    tensors, metadata = read_tensors(path)
    stored = metadata["base_model"]
    base = model or load_model(stored["name"])
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


def zero_shot(base: FrozenModel, task: Task, batch_size: int = 16, max_length: int = 256) -> dict:
    """The bare frozen model's test metric on `task`."""
    return evaluate_prompt(base, no_prompt, task, batch_size, max_length)
