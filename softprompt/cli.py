"""softprompt train | eval | generate | classify | serve | export | import | list"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .backbones.loading import DEFAULT_MODEL, EMBEDDED_MODELS, IMAGE_SIZES
from .configs import add_options, checked, given, read_yaml
from .errors import SoftPromptError
from .methods import BASELINES, METHODS, VISION_BASELINES, VISION_METHODS, all_methods, method_class
from .tasks import IMAGE_TASK_DESCRIPTION, IMAGE_TASKS, TASKS, FileTaskOptions
from .training import TrainConfig
from .training.optimizers import OPTIMIZERS, optimizer_class


def train_config(argv: list[str]) -> TrainConfig:
    """The TrainConfig that `softprompt train ARGV` runs: the --config file, overridden by the command line."""
    # The method's and the optimizer's own options depend on which (from the command line or the config file): find them first.
    probe = argparse.ArgumentParser(add_help=False)
    for name in ("--method", "--optimizer", "--config"):
        probe.add_argument(name)
    known = probe.parse_known_args(argv)[0]
    from_file = checked(TrainConfig, read_yaml(known.config), f"config file {known.config}") if known.config else {}
    method = known.method or from_file.get("method", TrainConfig.method)
    optimizer = known.optimizer or from_file.get("optimizer", TrainConfig.optimizer)
    config_class, optimizer_config = method_class(method).config_class, optimizer_class(optimizer).config_class
    parser = argparse.ArgumentParser(prog="softprompt train", description="Train a soft prompt on a frozen model.")
    parser.add_argument("--config", metavar="YAML", help="read options from this file (a saved train_config.yaml); "
                        "options typed on the command line override it")
    add_options(parser.add_argument_group("training"), TrainConfig)
    # --learning-rate is TrainConfig's (it overrides every parameter group), not the method's
    add_options(parser.add_argument_group(f"{method} options"), config_class, skip=("learning_rate",))
    add_options(parser.add_argument_group(f"{optimizer} options"), optimizer_config)
    add_options(parser.add_argument_group("tasks from files"), FileTaskOptions)
    args = parser.parse_args(argv)
    where = f"config file {known.config}"
    options = {key: checked(cls, from_file.get(key, {}), f"{where}, {key}") for key, cls in
               (("method_options", config_class), ("optimizer_options", optimizer_config), ("file_options", FileTaskOptions))}
    scalars = {k: v for k, v in from_file.items() if k not in options}
    return TrainConfig(**{**scalars, **given(args, TrainConfig)},
                       method_options={**options["method_options"], **given(args, config_class, skip=("learning_rate",))},
                       optimizer_options={**options["optimizer_options"], **given(args, optimizer_config)},
                       file_options={**options["file_options"], **given(args, FileTaskOptions)})


def _train(argv: list[str]) -> None:
    config = train_config(argv)
    from .training import train

    result = train(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    for name, prompt in result.prompts.items():
        _report(prompt.info["metrics"], name if len(result.prompts) > 1 else "", prompt.info["split"])
    saved = ", ".join(str(p) for p in sorted(result.output_dir.rglob("prompt.safetensors")))
    print(f"saved {saved} (+ README.md, metrics.jsonl, curves.png, train_config.yaml, checkpoint.pt)")


def _add_placement(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="auto", help="the model's precision: auto (bfloat16 on a capable GPU, else "
                        "float32), float32, bfloat16 or float16")


def _report(metrics: dict, task: str, split: str) -> None:
    for name in ("accuracy", "exact_match"):
        if name in metrics:
            baseline = metrics.get(f"zero_shot_{name}")
            before = f"zero-shot {baseline:.1%} -> " if baseline is not None else ""
            print(f"{task + ' ' if task else ''}test {name}: {before}tuned {metrics[name]:.1%}   [{split}]")


def _eval(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="softprompt eval", description="Score a prompt (or the bare model) on a task's test set.")
    parser.add_argument("prompt", nargs="?", help="a prompt file; omit to score the bare model (zero-shot)")
    parser.add_argument("--task", help="task to score on (default: the prompt's own task)")
    parser.add_argument("--model", default=None, help=f"base model (default: the prompt's, else {DEFAULT_MODEL})")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    _add_placement(parser)
    args = parser.parse_args(argv)
    from .backbones import load_model
    from .evaluation import zero_shot
    from .tasks import load_task
    from .tuned import load_prompt

    if not args.prompt and not args.task:
        raise SoftPromptError("--task is required when scoring the bare model")
    base = load_model(args.model, args.device, args.dtype) if args.model else None
    prompt = load_prompt(args.prompt, base, args.device, args.dtype) if args.prompt else None
    base = prompt.base if prompt else base or load_model(DEFAULT_MODEL, args.device, args.dtype)
    if not (args.task or prompt.info.get("task")):
        raise SoftPromptError(f"{args.prompt} records no task (an imported adapter?): pass --task")
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
    _add_placement(parser)
    args = parser.parse_args(argv)
    from .runtime.generation import check_generation_options
    from .tuned import load_prompt

    check_generation_options(args.max_new_tokens, args.temperature)  # before the slow load of the model

    prompt = load_prompt(args.prompt, device=args.device, dtype=args.dtype)
    for output in prompt.generate(args.text, args.max_new_tokens, args.temperature):
        print(output)


def _classify(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="softprompt classify", description="Label inputs with a trained prompt: one JSON "
                                     "line per input with its label and every label's probability.")
    parser.add_argument("prompt", help="a prompt file trained on a classification task")
    parser.add_argument("inputs", nargs="+", help="texts formatted as in training; image files for a prompt on a ViT")
    _add_placement(parser)
    args = parser.parse_args(argv)
    from .tuned import load_prompt

    prompt = load_prompt(args.prompt, device=args.device, dtype=args.dtype)
    for item, result in zip(args.inputs, prompt.classify(args.inputs)):
        print(json.dumps({"input": item, **result}))


def _serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="softprompt serve", description="Serve every prompt file in a directory over HTTP "
                                     "(OpenAI-compatible completions and chat, /v1/classify, /metrics), with continuous batching "
                                     "of mixed prompts.")
    parser.add_argument("--prompts-dir", required=True, help="directory of *.safetensors prompt files (new files are picked up live)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the frozen base model every prompt must fit (default {DEFAULT_MODEL})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=32, help="choices generated together (the running batch); "
                        "also scoring requests answered per step")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="when idle, how long a first request waits for others "
                        "to share its first forward pass")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a request is answered 504 "
                        "(when generating: seconds without a new token)")
    parser.add_argument("--api-key", action="append", metavar="KEY", help="require 'Authorization: Bearer KEY' on every "
                        "request but /health (repeat for several keys)")
    parser.add_argument("--api-key-file", metavar="FILE", help="keys, one a line (# comments allowed): kept out of the process list")
    parser.add_argument("--blackbox", action="store_true", help="also score client-supplied prompt embeddings "
                        "(/v1/blackbox/*, for `softprompt train --remote`; see docs/black-box.md)")
    _add_placement(parser)
    args = parser.parse_args(argv)
    if args.max_batch_size < 1 or args.max_wait_ms < 0 or args.request_timeout <= 0 or not 0 < args.port < 65536:
        raise SoftPromptError("--max-batch-size must be >= 1, --max-wait-ms >= 0, --request-timeout > 0 and --port in 1..65535")
    if not Path(args.prompts_dir).is_dir():
        raise SoftPromptError(f"--prompts-dir {args.prompts_dir!r} is not a directory")
    from .serving.access import read_api_keys

    keys = read_api_keys(args.api_key, args.api_key_file)
    import uvicorn

    from .backbones import load_model
    from .serving.app import create_app

    app = create_app(load_model(args.model, args.device, args.dtype), args.prompts_dir, args.max_batch_size, args.max_wait_ms,
                     args.request_timeout, api_keys=keys, blackbox=args.blackbox)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _export(argv: list[str]) -> None:
    from .formats import EXPORT_FORMATS, export_prompt

    parser = argparse.ArgumentParser(prog="softprompt export", description="Write a prompt file in another library's format.")
    parser.add_argument("prompt", help="a prompt file")
    parser.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    parser.add_argument("--output", required=True, help="where to write (for peft: a folder)")
    args = parser.parse_args(argv)
    from .tuned import load_prompt

    export_prompt(load_prompt(args.prompt), args.format, args.output)
    print(f"wrote {args.output} ({args.format})")


def _import(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="softprompt import", description="Read a PEFT prompt-learning adapter folder into a prompt file.")
    parser.add_argument("folder", help="a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("--output", required=True, help="the prompt file to write")
    parser.add_argument("--model", default=None, help=f"base model the adapter was made for (default: the one recorded in it, else {DEFAULT_MODEL})")
    parser.add_argument("--task", default=None, help="record this task (and its label words) in the prompt file")
    args = parser.parse_args(argv)
    from .backbones import load_model
    from .formats.peft import import_peft, read_peft_folder
    from .tasks import load_task

    recorded = read_peft_folder(args.folder)[2].get("base_model", {}).get("name")
    prompt = import_peft(args.folder, load_model(args.model or recorded or DEFAULT_MODEL))
    if args.task:
        task = load_task(args.task)
        prompt.info.update(task=args.task, label_words=list(task.label_words), length_normalized=task.length_normalized)
    prompt.save(args.output)
    print(f"wrote {args.output} ({prompt.method.name}, {prompt.info['imported_from']})")


def _list(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="softprompt list", description="Show methods, models and tasks.").parse_args(argv)
    width = max(map(len, [*all_methods(), *TASKS, *IMAGE_TASKS]))
    sections = [("methods:", METHODS), ("baselines (--method; they change the model instead of prompting it):", BASELINES),
                ("vision methods (on a ViT: --model dinov2-s or dinov2-s-112; lora runs there too):", VISION_METHODS),
                ("vision baselines:", VISION_BASELINES)]
    for title, registry in sections:
        print(title)
        for name, cls in registry.items():
            print(f"  {name:{width}} {cls.description}\n  {'':{width}} paper: {cls.paper}")
    print("optimizers (--optimizer):")
    for name, cls in OPTIMIZERS.items():
        print(f"  {name:{width}} {cls.description}")
    print("models (embedded; also any local folder or hub id):")
    for name in EMBEDDED_MODELS:
        size = f"  (vision, {IMAGE_SIZES[name]} px images)" if name in IMAGE_SIZES else ""
        print(f"  {name}{'  (default)' if name == DEFAULT_MODEL else ''}{size}")
    print("tasks (built-in; also any .jsonl/.csv file, or a folder with one sub-folder of images per class):")
    for name, spec in TASKS.items():
        print(f"  {name:{width}} {spec.description}")
    for name in IMAGE_TASKS:
        print(f"  {name:{width}} {IMAGE_TASK_DESCRIPTION} {IMAGE_TASKS[name]} train images per class.")


COMMANDS = {"train": _train, "eval": _eval, "generate": _generate, "classify": _classify, "serve": _serve, "export": _export,
            "import": _import, "list": _list}


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
