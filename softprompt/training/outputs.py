"""The end of a run: keep the best prompt, score it (and the bare model) on each task's test set, and write
the prompt files, model cards, resolved config, log and curves."""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..configs import to_yaml
from ..errors import SoftPromptError
from ..evaluation import evaluate
from ..formats.card import model_card
from ..runtime.scoring import no_prompt
from ..storage import write_text_atomic
from ..tuned import TunedPrompt
from . import checkpoints
from .config import train_command
from .plots import plot_curves
from .trainer import TaskData, Trainer

PROMPT = "prompt.safetensors"


@dataclass
class TrainResult:
    prompts: dict[str, TunedPrompt]
    """One trained prompt per task (several when trained on several tasks at once)."""
    output_dir: Path

    @property
    def prompt(self) -> TunedPrompt:
        """The trained prompt of a single-task run."""
        if len(self.prompts) > 1:
            raise SoftPromptError(f"this run trained {len(self.prompts)} tasks: use result.prompts[name], name in {list(self.prompts)}")
        return next(iter(self.prompts.values()))

    @property
    def metrics(self) -> dict:
        """Test metrics of a single-task run."""
        return self.prompt.info["metrics"]


def finish(trainer: Trainer) -> TrainResult:
    """Score and save: prompt.safetensors, or <task>/prompt.safetensors for each task of a multi-task run."""
    config = trainer.config
    trainer.method.load_state_dict(trainer.best_state)
    trainer.method.eval()
    shared = {"trainable_parameters": sum(p.numel() for p in trainer.method.parameters()), "steps": trainer.step}
    train_steps = [r for r in trainer.history if "loss" in r]
    if train_steps:
        shared["seconds_per_step"] = statistics.median(r["seconds"] for r in train_steps)
    prompts = {}
    for part in trainer.parts:
        metrics = {**_test_metrics(trainer, part), **shared}
        task = part.task
        prompts[task.name] = TunedPrompt(trainer.base, part.method, {
            "task": task.name if len(trainer.parts) > 1 else config.task, "split": task.split_note,
            "label_words": list(task.label_words), "length_normalized": task.length_normalized,
            "max_length": config.max_length, "metrics": metrics, "train_config": asdict(config)})
        trainer.history.append({"test": metrics, "task": task.name})
        prefix = f"test/{task.name}/" if len(trainer.parts) > 1 else "test/"
        trainer.accelerator.log({prefix + k: v for k, v in metrics.items()}, step=trainer.step)
    for tracker in trainer.accelerator.trackers:  # not end_training(): that also tears down the process group
        tracker.finish()
    if trainer.accelerator.is_main_process:
        _write_outputs(trainer, prompts)
    return TrainResult(prompts, trainer.output_dir)


def prompt_path(trainer: Trainer, task_name: str) -> Path:
    return trainer.output_dir / PROMPT if len(trainer.parts) == 1 else trainer.output_dir / task_name / PROMPT


def _test_metrics(trainer: Trainer, part: TaskData) -> dict:
    config, task = trainer.config, part.task
    quiet = not trainer.accelerator.is_main_process
    with tqdm(total=len(task.test), desc=f"test {task.name}", unit="ex", disable=quiet) as bar:
        # through TunedPrompt: a task-level prompt is scored from its cached keys/values
        scored = TunedPrompt(trainer.base, part.method, {})
        metrics = evaluate(trainer.base, scored, task, config.eval_batch_size, config.max_length, trainer.features(task.test), bar,
                           per_example=True)  # each test row's outcome: what a paired comparison of two runs needs
    if config.zero_shot and trainer.kind.zero_shot:  # a ViT alone has no answer to score
        with tqdm(total=len(task.test), desc=f"zero-shot {task.name}", unit="ex", disable=quiet) as bar:
            bare = evaluate(trainer.base, no_prompt, task, config.eval_batch_size, config.max_length, None, bar, per_example=True)
        metrics.update({f"zero_shot_{k}": v for k, v in bare.items()})
    return metrics


def _write_outputs(trainer: Trainer, prompts: dict[str, TunedPrompt]) -> None:
    config = trainer.config
    for name, prompt in prompts.items():
        path = prompt_path(trainer, name)
        prompt.save(path)
        write_text_atomic(path.parent / "README.md", model_card(prompt, str(path), train_command(asdict(config))))
    write_text_atomic(trainer.output_dir / "train_config.json", json.dumps(asdict(config), indent=2))
    write_text_atomic(trainer.output_dir / "train_config.yaml", to_yaml(config))  # what `train --config` reads
    checkpoints.write_log(trainer)
    plot_curves(trainer.history, trainer.output_dir / "curves.png", f"{config.method} on {trainer.task.name}")
