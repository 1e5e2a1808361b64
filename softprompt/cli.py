"""softprompt train | eval | generate | list"""
from __future__ import annotations

import argparse
import json
import sys

from .configs import add_options, given
from .errors import SoftPromptError
from .methods import METHODS, method_class
from .models import DEFAULT_MODEL, EMBEDDED_MODELS
from .tasks import TASKS, FileTaskOptions
from .train import TrainConfig


def _train(argv: list[str]) -> None:
    # The method's own options depend on --method, so parse that first, then the full set.
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--method", default=TrainConfig.method)
    method = probe.parse_known_args(argv)[0].method
    config_class = method_class(method).config_class
    parser = argparse.ArgumentParser(prog="softprompt train", description="Train a soft prompt on a frozen model.")
    add_options(parser.add_argument_group("training"), TrainConfig)
    add_options(parser.add_argument_group(f"{method} options"), config_class, skip=("learning_rate",))
    add_options(parser.add_argument_group("tasks from files"), FileTaskOptions)
    args = parser.parse_args(argv)
    config = TrainConfig(**given(args, TrainConfig), method_options=given(args, config_class),
                         file_options=given(args, FileTaskOptions))
    from .train import train

    result = train(config)
    _report(result.metrics, result.prompt.info["split"])
    print(f"saved {result.output_dir / 'prompt.safetensors'} (+ metrics.jsonl, curves.png, checkpoint.pt)")


def _report(metrics: dict, split: str) -> None:
    for name in ("accuracy", "exact_match"):
        if name in metrics:
            baseline = metrics.get(f"zero_shot_{name}")
            before = f"zero-shot {baseline:.1%} -> " if baseline is not None else ""
            print(f"test {name}: {before}tuned {metrics[name]:.1%}   [{split}]")


def _eval(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="softprompt eval", description="Score a prompt (or the bare model) on a task's test set.")
    parser.add_argument("prompt", nargs="?", help="a prompt file; omit to score the bare model (zero-shot)")
    parser.add_argument("--task", help="task to score on (default: the prompt's own task)")
    parser.add_argument("--model", default=None, help=f"base model (default: the prompt's, else {DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args(argv)
    from .api import load_prompt, zero_shot
    from .models import load_model
    from .tasks import load_task

    if not args.prompt and not args.task:
        raise SoftPromptError("--task is required when scoring the bare model")
    base = load_model(args.model) if args.model else None
    prompt = load_prompt(args.prompt, base) if args.prompt else None
    base = prompt.base if prompt else base or load_model(DEFAULT_MODEL)
    task = load_task(args.task or prompt.info["task"])
    if prompt:
        metrics = prompt.evaluate(task, args.batch_size, args.max_length)
    else:
        metrics = zero_shot(base, task, args.batch_size, args.max_length)
    print(json.dumps({"task": task.name, "prompt": args.prompt, "split": task.split_note, **metrics}))


def _generate(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="softprompt generate", description="Generate text through a trained prompt.")
    parser.add_argument("prompt", help="a prompt file")
    parser.add_argument("text", nargs="+", help="input text(s), formatted as in training")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily")
    args = parser.parse_args(argv)
    from .api import load_prompt
    from .generate import check_generation_options

    check_generation_options(args.max_new_tokens, args.temperature)  # before the slow load of the model

    prompt = load_prompt(args.prompt)
    for output in prompt.generate(args.text, args.max_new_tokens, args.temperature):
        print(output)


def _list(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="softprompt list", description="Show methods, models and tasks.").parse_args(argv)
    print("methods:")
    for name, cls in METHODS.items():
        print(f"  {name:16} {cls.description}\n  {'':16} paper: {cls.paper}")
    print("models (embedded; also any local folder or hub id):")
    for name in EMBEDDED_MODELS:
        print(f"  {name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    print("tasks (built-in; also any .jsonl/.csv file):")
    for name, spec in TASKS.items():
        print(f"  {name:16} {spec.description}")


COMMANDS = {"train": _train, "eval": _eval, "generate": _generate, "list": _list}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: softprompt {{{'|'.join(COMMANDS)}}} [options]   (softprompt COMMAND --help)", file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[0]](argv[1:])
    except SoftPromptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
