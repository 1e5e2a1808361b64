"""Forward-only optimizers (zo-sgd, cma-es, sharpzo) against AdamW on the SST-2 carve, prompt tuning 20 tokens.

The budget is forward passes: one AdamW step costs a forward and a backward pass, and a backward pass is counted
as two forward passes (its usual cost), so AdamW's 150 steps of batch 8 are 450 forward passes of a batch of 8;
every forward-only optimizer gets as many steps as fit in 450 (the trainer counts them: `forward_passes` in its
log). Parts, each writing under benchmarks/results/ (files already there are kept, so parts can be resumed):

    python benchmarks/forward_only.py --parts tune      # options tried on a dev carve of the train split
    python benchmarks/forward_only.py --parts start     # each --init's untrained prompt on the test carve
    python benchmarks/forward_only.py --parts cells     # seeds 0..2 of each optimizer from two starts: compare.py cells
    python benchmarks/forward_only.py --parts memory    # peak memory of one step of each optimizer vs AdamW
    python benchmarks/forward_only.py --parts remote    # cma-es through `softprompt serve --blackbox` vs locally
    python benchmarks/forward_only.py --parts report    # benchmarks/results/forward_only.md and .png
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softprompt import TrainConfig  # noqa: E402
from softprompt.storage import write_text_atomic  # noqa: E402

from compare import steps_within  # noqa: E402  (the budget rule compare.py's cells follow)

RESULTS = ROOT / "benchmarks" / "results" / "forward_only"
STEPS, BATCH, SEEDS = 150, 8, "0,1,2"  # AdamW's steps: the budget is their forward passes
OPTIMIZERS = ["zo-sgd", "cma-es", "sharpzo"]
# Tried on the dev carve (seed 0: 100 of the 600 training examples held out); the test carve is never read here.
TUNING = {"zo-sgd": [{"learning_rate": lr} for lr in (3e-3, 1e-2, 3e-2)],
          "cma-es": [{"population": n} for n in (10, 20)],
          "sharpzo": [{"learning_rate": lr} for lr in (1e-2, 5e-2)]}
# Where a run starts matters at this budget: the untrained prompt of each initialisation, scored on the same dev carve.
START_INITS = [{"init": "text"}, {"init": "vocab"}, {"init": "random"}]
CHOSEN_INIT = {"init": "vocab"}  # the best start on the dev carve; its cells run beside the default's (text)
MEMORY_RUNS = [("adamw", 0), ("zo-sgd", 0), ("cma-es", 0), ("cma-es", 1), ("sharpzo", 0)]  # (optimizer, candidates_per_pass)


def config(optimizer: str, options: dict, seed: int, **overrides) -> TrainConfig:
    """A run at the budget; `options` are the optimizer's own, or TrainConfig's learning_rate."""
    own = {k: v for k, v in options.items() if k != "learning_rate"}
    values = dict(task="sst2", method="prompt-tuning", optimizer=optimizer, optimizer_options=own, seed=seed, batch_size=BATCH,
                  learning_rate=options.get("learning_rate", 0.0), max_length=256, max_steps=steps_within(optimizer, own, STEPS),
                  zero_shot=False, checkpoint_every=10**9)
    return TrainConfig(**{**values, **overrides})


def tune(args) -> None:
    """Dev accuracy (each epoch's and the last) and the last steps' loss of each option in TUNING."""
    from softprompt.training.trainer import Trainer

    if not (args.results / "tuning" / "start.json").exists():  # where runs start: each initialisation's untrained prompt
        write_json(args.results / "tuning" / "start.json", start_scores(args.base))
    for optimizer, grid in TUNING.items():
        for options in grid:
            path = args.results / "tuning" / f"{optimizer}@{'-'.join(f'{k}={v}' for k, v in options.items())}.json"
            if path.exists() or (args.only and optimizer not in args.only.split(",")):
                continue
            start = time.time()
            with tempfile.TemporaryDirectory() as folder:
                trainer = Trainer(config(optimizer, options, 0, dev_size=100, output_dir=folder), base=args.base)
                trainer.train()
            steps = [r for r in trainer.history if "loss" in r]
            write_json(path, {"optimizer": optimizer, "options": options, "steps": len(steps),
                              "dev_accuracy": [r["dev_score"] for r in trainer.history if "dev_score" in r],
                              "last_20_steps_loss": sum(r["loss"] for r in steps[-20:]) / len(steps[-20:]),
                              "forward_passes": sum(r["forward_passes"] for r in steps), "wall_seconds": round(time.time() - start, 1)})


def start_scores(base) -> dict:
    """Dev accuracy of the bare model and of each START_INITS prompt untrained (seed 0's dev carve)."""
    from dataclasses import replace

    from softprompt.evaluation import evaluate
    from softprompt.runtime.scoring import no_prompt
    from softprompt.tasks import load_task
    from softprompt.training.trainer import Trainer, split_dev

    scores = {}
    for options in START_INITS:
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(config("zo-sgd", {}, 0, dev_size=100, output_dir=folder, method_options=options), base=base)
            scores[options["init"]] = trainer._dev_score()
    task = load_task("sst2")
    dev = split_dev(task, 100, 0)[1]  # the rows the trainer held out above
    return {"dev_accuracy": scores, "zero_shot_dev_accuracy": evaluate(base, no_prompt, replace(task, test=dev))["accuracy"]}


def start(args) -> None:
    """Where the optimizers start: each initialisation's untrained prompt on the test carve."""
    if not (args.results / "start.json").exists():
        from softprompt import load_model
        from softprompt.methods import build_method
        from softprompt.tasks import load_task
        from softprompt.tuned import TunedPrompt

        base, task, scores = load_model(args.model), load_task("sst2"), {}
        for options in START_INITS:
            method = build_method("prompt-tuning", base, options)
            method.initialize(base, task)  # the same for every seed
            scores[options["init"]] = TunedPrompt(base, method.eval(), {}).evaluate(task)["accuracy"]
        write_json(args.results / "start.json", {"accuracy": scores, "what": "prompt tuning's untrained 20-token prompt "
                                                 "of each --init on the sst2 test carve"})


def cells(args) -> None:
    """The seeds of each optimizer on sst2 from the default start and from CHOSEN_INIT, as benchmarks/compare.py cells."""
    start(args)
    command = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--tasks", "sst2", "--methods", "prompt-tuning",
               "--optimizers", ",".join(OPTIMIZERS), "--seeds", SEEDS, "--steps", str(STEPS), "--model", args.model]
    subprocess.run(command, check=True)
    subprocess.run([*command, *(f"--option={k}={v}" for k, v in CHOSEN_INIT.items())], check=True)


def memory(args) -> None:
    """Each run of MEMORY_RUNS in its own process, on the same batch (see measure_step)."""
    records = {}
    for optimizer, per_pass in MEMORY_RUNS:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed tensors go back to the system: RSS tracks live memory
        run = subprocess.run([sys.executable, __file__, "--measure-step", optimizer, str(per_pass), "--model", args.model],
                             capture_output=True, text=True, env=env, check=True)
        records[f"{optimizer}@candidates_per_pass={per_pass}"] = json.loads(run.stdout.strip().splitlines()[-1])
    write_json(args.results / "memory.json", {"command": "python benchmarks/forward_only.py --parts memory", "runs": records})


def measure_step(optimizer: str, per_pass: int, model: str) -> None:
    """Print the peak resident memory one training step adds to the process (the loaded model, the data and a first
    step already there), read from /proc: VmHWM (peak, reset first) minus VmRSS before the step."""
    from softprompt.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config(optimizer, {}, 0, output_dir=folder, model=model, candidates_per_pass=per_pass))
        batches = trainer._epoch_batches()
        trainer._step(batches[:1])  # first step: one-time allocations
        Path("/proc/self/clear_refs").write_text("5")
        before = proc_status("VmRSS")
        record = trainer._step(batches[1:2])
    print(json.dumps({"step_peak_mib": round(proc_status("VmHWM") - before, 1), "process_peak_mib": round(proc_status("VmHWM"), 1),
                      "resident_before_mib": round(before, 1), "forward_passes": record["forward_passes"], "seconds": round(record["seconds"], 1)}))


def proc_status(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB -> MiB


def remote(args) -> None:
    """cma-es seed 0 at the budget, locally and through `softprompt serve --blackbox` in its own process on loopback.
    A client has no embedding table, so both start from --init random (what `--remote` allows)."""
    from softprompt import train

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "softprompt.cli", "serve", "--blackbox", "--prompts-dir", folder,
                                   "--model", args.model, "--host", "127.0.0.1", "--port", str(port)])
        try:
            wait_for(f"http://127.0.0.1:{port}/v1/blackbox/info", server)
            for where, overrides in (("local", {}), ("remote", {"remote": f"http://127.0.0.1:{port}"})):
                start, out = time.time(), Path(folder) / where
                result = train(config("cma-es", {}, 0, output_dir=str(out), model=args.model,
                                      method_options={"init": "random"}, **overrides))
                log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                results[where] = {"accuracy": result.metrics["accuracy"], "losses": [r["loss"] for r in log if "loss" in r],
                                  "prompt": result.prompt.method.embeddings.tolist(), "wall_seconds": round(time.time() - start, 1)}
        finally:
            server.terminate()
            server.wait(timeout=60)
    local, served = results["local"], results["remote"]
    write_json(args.results / "remote.json", {
        "command": "python benchmarks/forward_only.py --parts remote", "accuracy": {k: v["accuracy"] for k, v in results.items()},
        "max_abs_step_loss_difference": max(abs(a - b) for a, b in zip(local["losses"], served["losses"])),
        "max_abs_prompt_difference": max(abs(a - b) for ra, rb in zip(local["prompt"], served["prompt"]) for a, b in zip(ra, rb)),
        "steps": len(local["losses"]), "wall_seconds": {k: v["wall_seconds"] for k, v in results.items()}})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    from softprompt.runtime.remote import request

    deadline = time.monotonic() + timeout
    while True:
        try:
            request(url)
            return
        except Exception:  # noqa: BLE001 -- not up yet
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(1)


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2))
    print(f"wrote {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="tune,cells,memory,remote,report")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the parts write (the report: beside it)")
    parser.add_argument("--only", default="", help="tune only these optimizers (comma-separated)")
    parser.add_argument("--measure-step", nargs=2, metavar=("OPTIMIZER", "CANDIDATES_PER_PASS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_step:
        measure_step(args.measure_step[0], int(args.measure_step[1]), args.model)
        return
    parts = args.parts.split(",")
    if "tune" in parts:
        from softprompt.backbones import load_model

        args.base = load_model(args.model)
        tune(args)
    for name, part in (("start", start), ("cells", cells), ("memory", memory), ("remote", remote)):
        if name in parts:
            part(args)
    if "report" in parts:
        from forward_only_report import write_report

        write_report(args.results, ROOT / "benchmarks" / "results" / "compare" / "sst2", CHOSEN_INIT)


if __name__ == "__main__":
    main()
