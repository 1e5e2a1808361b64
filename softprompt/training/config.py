"""The options of a training run (`softprompt train`, `softprompt.train()`), checked when set."""
from __future__ import annotations

import shlex
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from ..backbones.loading import DEFAULT_MODEL, DTYPES
from ..configs import at_least, check_types
from ..errors import SoftPromptError, unknown_choice
from ..methods import method_class
from ..tasks import FileTaskOptions
from .optimizer_api import SCHEDULE_OPTIONS
from .optimizers import OPTIMIZERS, optimizer_class

OBJECTIVES = ("choice", "lm")
SCHEDULES = ("linear", "constant")


@dataclass
class TrainConfig:
    task: str = "sst2"
    """A built-in task name or a .jsonl/.csv file."""
    method: str = "prompt-tuning"
    """A registered method (see `softprompt list`)."""
    preset: str = ""
    """A named configuration of the method (e.g. paper: the paper's own settings, see docs/methods/): it sets
    the method's options and training options that are not given explicitly."""
    model: str = DEFAULT_MODEL
    """An embedded model name, a local folder, or a hub id."""
    device: str = "auto"
    """Where the model runs: auto (CUDA if available, else Apple MPS, else CPU), cpu, cuda, cuda:N, mps."""
    dtype: str = "auto"
    """The frozen model's precision: auto (bfloat16 on a GPU that supports it, else float32), float32, bfloat16,
    float16. The trained parameters and the optimizer state stay float32 either way."""
    gradient_checkpointing: bool = False
    """Recompute the model's activations in the backward pass instead of storing them: less memory for big
    models and long inputs, about a third more compute; the gradients are the same."""
    output_dir: str = ""
    """Where the prompt, checkpoint, log and plot go; empty means runs/<task>-<method>."""
    epochs: int = 3
    """Passes over the training examples."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run all epochs)."""
    batch_size: int = 8
    gradient_accumulation: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size x this)."""
    learning_rate: float = 0.0
    """0 uses the default: the method's own under adamw, the optimizer's own under zo-sgd and sharpzo (see
    `softprompt list`); cma-es has none."""
    warmup_ratio: float = 0.1
    warmup_steps: int = 0
    """Warm-up length in steps; 0 uses warmup_ratio of the run's steps."""
    lr_schedule: str = "linear"
    """After the warm-up: linear (decay to 0 at the last step) or constant."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 256
    """Longest text in tokens (context + answer; the prompt comes on top); longer contexts lose their beginning."""
    dev_size: int = 0
    """Training examples held out to pick the best epoch (0: train on all, keep the last prompt). A dev
    set of a few dozen examples picks noise, so this only pays on larger training sets."""
    objective: str = "choice"
    """choice: cross-entropy over the answer choices (classification / multiple choice); lm: likelihood
    of the true answer's tokens. Generation tasks always use lm."""
    eval_batch_size: int = 16
    checkpoint_every: int = 50
    """Save a resumable checkpoint every N optimizer steps (and at every epoch end)."""
    resume: bool = False
    """Continue from output_dir's checkpoint."""
    zero_shot: bool = True
    """Also score the bare frozen model on the test set, for comparison."""
    seed: int = 0
    optimizer: str = "adamw"
    """How the parameters are updated: see `softprompt list` (adamw: back-propagation through the frozen model;
    zo-sgd, cma-es, sharpzo: forward passes only, see docs/forward-only.md)."""
    remote: str = ""
    """URL of a `softprompt serve --blackbox` server to tune against instead of loading the model's weights here
    (cma-es; input-level prompts; see docs/black-box.md). Empty: the model runs here."""
    log_with: str = ""
    """Also send the training curves to an experiment tracker through accelerate: tensorboard (event files
    under output_dir/logs; needs tensorboardX or tensorboard), wandb, mlflow... Empty: none."""
    method_options: dict = field(default_factory=dict)
    """The method's own options (see its config)."""
    candidates_per_pass: int = 0
    """Candidates a forward-only optimizer scores in one forward pass over candidates x batch rows (0: all it asks
    for at once, when the method's injections stack). Fewer bound the memory, which grows with the rows of a pass."""
    optimizer_options: dict = field(default_factory=dict)
    """The optimizer's own options (see `softprompt train --optimizer NAME --help`)."""
    file_options: dict = field(default_factory=dict)
    """Field names etc. for tasks read from files (see FileTaskOptions)."""

    def __post_init__(self):
        check_types(self)
        at_least(self, 1, "epochs", "batch_size", "gradient_accumulation", "max_length", "eval_batch_size", "checkpoint_every")
        at_least(self, 0, "max_steps", "warmup_steps", "candidates_per_pass", "dev_size", "seed", "learning_rate", "warmup_ratio",
                 "weight_decay", "max_grad_norm")
        if self.warmup_ratio >= 1 or self.max_grad_norm == 0:
            raise SoftPromptError(f"need warmup_ratio < 1 and max_grad_norm > 0, got {self.warmup_ratio!r} and {self.max_grad_norm!r}")
        if self.dtype not in ("auto", *DTYPES):
            raise unknown_choice("dtype", self.dtype, ["auto", *DTYPES])
        if self.lr_schedule not in SCHEDULES:
            raise unknown_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        if self.preset:
            self._fill_from_preset()
        if self.objective not in OBJECTIVES:
            raise unknown_choice("objective", self.objective, OBJECTIVES)
        optimizer_class(self.optimizer).options(self.optimizer_options)  # an unknown name or option is refused
        self._check_schedule_options()
        if self.remote:
            self._check_remote()

    def _check_schedule_options(self) -> None:
        """An update option the optimizer has no use for is refused, not silently dropped."""
        optimizer = optimizer_class(self.optimizer)
        unused = [name for name in SCHEDULE_OPTIONS if name not in optimizer.reads and getattr(self, name) != DEFAULTS[name]]
        if unused:
            source = f" (set by preset {self.preset!r})" if self.preset else ""
            raise SoftPromptError(f"optimizer {self.optimizer!r} does not use {', '.join(unused)}{source}: it reads "
                                  f"{', '.join(sorted(optimizer.reads)) or 'none of the schedule options'}; leave "
                                  f"{'them' if len(unused) > 1 else 'it'} out or pick another optimizer")

    def _check_remote(self) -> None:
        """A served model scores input-level prompts and gives no gradients: refuse what needs more, before connecting."""
        method = method_class(self.method)
        if method.injects != {"embeds"} or method.input_dependent:
            raise SoftPromptError(f"--remote takes methods whose prompt is input embeddings that do not depend on the input; "
                                  f"{self.method!r} injects {sorted(method.injects)}" + (" and reads the input" if method.input_dependent else ""))
        if optimizer_class(self.optimizer).needs_gradients:
            raise SoftPromptError(f"--remote: {self.optimizer!r} back-propagates through the model, which stays on the server; "
                                  f"use a forward-only optimizer ({', '.join(n for n, c in OPTIMIZERS.items() if not c.needs_gradients)})")
        if self.objective != "choice":
            raise SoftPromptError("--remote scores answer choices (the label words): it needs objective choice")

    def _fill_from_preset(self) -> None:
        """The preset's values wherever an option still has its default: explicit options win, so a preset is a
        starting point, not a lock."""
        presets = method_class(self.method).presets
        if self.preset not in presets:
            raise SoftPromptError(f"method {self.method!r} has no preset {self.preset!r}; its presets: {', '.join(presets) or 'none'}")
        for key, value in presets[self.preset].get("train", {}).items():
            if getattr(self, key) == DEFAULTS[key]:
                setattr(self, key, value)
        self.method_options = {**presets[self.preset].get("method_options", {}), **self.method_options}

    def resolved_output_dir(self) -> Path:
        tasks = "+".join(Path(name).stem for name in self.task.split(","))
        return Path(self.output_dir or f"runs/{tasks}-{self.method}")


DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
"""Each option's default: a preset fills, and an optimizer refuses, only what differs from it."""


def train_command(config: dict) -> str:
    """The `softprompt train` command line for a saved TrainConfig (as a dict): every non-default option."""
    words = ["softprompt", "train"]
    method_config = method_class(config["method"]).config_class
    optimizer_config = optimizer_class(config.get("optimizer", TrainConfig.optimizer)).config_class
    sources = [(TrainConfig, config), (method_config, config.get("method_options", {})),
               (optimizer_config, config.get("optimizer_options", {})), (FileTaskOptions, config.get("file_options", {}))]
    for cls, values in sources:
        for item in fields(cls):
            value = values.get(item.name, item.default)
            if item.name in values and (value != item.default or item.name in ("task", "method")) and not isinstance(value, dict):
                words += [f"--{item.name.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return shlex.join(words)
