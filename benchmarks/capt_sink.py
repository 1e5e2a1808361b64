"""Where CaPT's capsule goes on a model with a first-token attention sink (issue 24): the untrained capsule
(task vectors p = 0, so the capsule is the pure mean of the input's states) placed at position 0 against the
same capsule after a BOS token, beside the bare model. SST-2 seeded carve, all 272 test rows, smollm2-135m.
Also the norm of the position-0 hidden state entering layer 20 (the sink's signature: a huge norm).

    python benchmarks/capt_sink.py --output benchmarks/results/capt_sink.txt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softprompt.backbones import load_model, prompted_forward  # noqa: E402
from softprompt.evaluation import evaluate, zero_shot  # noqa: E402
from softprompt.methods import build_method  # noqa: E402
from softprompt.runtime.batching import encode, make_inputs  # noqa: E402
from softprompt.runtime.scoring import no_prompt  # noqa: E402
from softprompt.tasks import load_task  # noqa: E402

LAYER = 20


def position_zero_norm(base, prompt_fn, task) -> float:
    """Mean norm of the state at position 0 entering layer LAYER, over the first 16 test rows (one at a time)."""
    norms = []
    handle = base.layers[LAYER].register_forward_pre_hook(lambda module, args, kwargs: norms.append(
        (kwargs.get("hidden_states", args[0] if args else None))[0, 0].norm().item()), with_kwargs=True)
    try:
        with torch.no_grad():
            for encoded in encode(base, task.test[:16], 256):
                inputs = make_inputs(base, [encoded.context])
                prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=1)
    finally:
        handle.remove()
    return sum(norms) / len(norms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    base, task = load_model("smollm2-135m"), load_task("sst2")
    lines = ["# python benchmarks/capt_sink.py (sst2: seeded carve of the 872-row validation split, 272 test rows; "
             "untrained capsule, p = 0)"]
    bare = zero_shot(base, task)["accuracy"]
    lines.append(f"bare model (zero-shot)          accuracy {bare:.1%}  |h0| entering layer {LAYER}: "
                 f"{position_zero_norm(base, no_prompt, task):,.0f}")
    for label, sink in (("capsule at position 0 (paper)", False), ("BOS sink, then the capsule", True)):
        method = build_method("capt", base, {"sink_token": sink}).eval()
        accuracy = evaluate(base, method, task)["accuracy"]
        lines.append(f"{label:31} accuracy {accuracy:.1%}  |h0| entering layer {LAYER}: {position_zero_norm(base, method, task):,.0f}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
