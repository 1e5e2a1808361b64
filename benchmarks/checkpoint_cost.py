"""What a verified checkpoint costs: write_checkpoint + read_checkpoint (atomic rename, sha256 of the
contents, weights_only load, checksum check) against a bare torch.save + torch.load of the same state,
measured in the same run. States are those of a training run with P trainable parameters and AdamW.

    python benchmarks/checkpoint_cost.py --out benchmarks/results/checkpoint_cost.txt
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from softprompt.storage import read_checkpoint, write_checkpoint  # noqa: E402

# prompt-tuning on smollm2-135m (20 x 576), and a method a hundred times larger.
SIZES = {"prompt-tuning on smollm2 (20 x 576)": 20 * 576, "a 1.15M-parameter method": 100 * 20 * 576}


def training_state(parameters: int) -> dict:
    weight = torch.nn.Parameter(torch.randn(parameters))
    optimizer = torch.optim.AdamW([weight])
    weight.grad = torch.randn(parameters)
    optimizer.step()
    return {"method": {"weight": weight.detach()}, "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
            "position": [100, 2, 7], "history": "[]"}


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [f"python benchmarks/checkpoint_cost.py --repeats {args.repeats}" + (f" --out {args.out}" if args.out else ""),
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} write+read round trips", ""]
    with tempfile.TemporaryDirectory() as folder:
        plain, verified = Path(folder) / "plain.pt", Path(folder) / "verified.pt"
        for name, parameters in SIZES.items():
            state = training_state(parameters)
            bare = median_seconds(lambda: (torch.save(state, plain), torch.load(plain, weights_only=True)), args.repeats)
            checked = median_seconds(lambda: (write_checkpoint(verified, state), read_checkpoint(verified)), args.repeats)
            lines.append(f"{name}: {verified.stat().st_size / 1e6:.2f} MB; verified / bare = {checked / bare:.2f}x "
                         f"({checked * 1e3:.1f} ms vs {bare * 1e3:.1f} ms)")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
