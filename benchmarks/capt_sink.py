"""Where CaPT's capsule goes on a model with a first-token attention sink (issue 24): the untrained capsule
(task vectors p = 0, so the capsule is the pure mean of the input's states) placed at position 0 against the
same capsule after a BOS token, beside the bare model, on every test row of a task's seeded carve (SST-2 unless
--task says otherwise), smollm2-135m.
Also the norm of the position-0 hidden state entering layer 20 (the sink's signature: a huge norm), and, to find
what does the harm, the same slot filled otherwise: a zero vector at every layer, or the mean written at the
input only (a plain extra token, left to the model from there). "positive": the share of rows answered positive
(a run at chance that answers one label for every row has a bias to unlearn, not lost information; SST-2 only).
--only runs some of the rows, by key: bare, paper, bos, zero-every, mean-input, zero-input.

    python benchmarks/capt_sink.py --output benchmarks/results/capt_sink.txt
    python benchmarks/capt_sink.py --task piqa --only paper --output benchmarks/results/capt_sink_piqa.txt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softprompt.backbones import Injection, load_model, masked_mean, prompted_forward  # noqa: E402
from softprompt.evaluation import evaluate  # noqa: E402
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


def slot_at_input(fill: str):
    """A prompt function with CaPT's one slot before the text, written once at the input (then left to the model)
    with the input's mean embedding ("mean") or a zero vector ("zero")."""
    def prompt_fn(inputs):
        def rewrite(layer: int, hidden: torch.Tensor) -> torch.Tensor:
            if layer:
                return hidden
            text = hidden[:, 1:]
            state = masked_mean(text, inputs.context) if fill == "mean" else text.new_zeros(len(text), text.shape[-1])
            return torch.cat([state.unsqueeze(1).to(hidden.dtype), text], dim=1)
        return Injection(embeds=inputs.input_embeds.new_zeros(inputs.batch_size, 1, inputs.input_embeds.shape[-1]), before_layer=rewrite)
    return prompt_fn


def positive_share(task, correct: list[str]) -> str:
    """The share of rows answered positive, on a positive/negative task ("" elsewhere)."""
    words = [word.strip() for word in task.label_words or []]
    if sorted(words) != ["negative", "positive"]:
        return ""
    answered = [e.label if right == "1" else 1 - e.label for e, right in zip(task.test, correct)]  # two labels
    return f"  positive {answered.count(words.index('positive')) / len(answered):.0%}"


def row(label: str, base, prompt_fn, task) -> str:
    result = evaluate(base, prompt_fn, task, per_example=True)
    return (f"{label:42} accuracy {result['accuracy']:.1%}{positive_share(task, result['correct'])}  "
            f"|h0| entering layer {LAYER}: {position_zero_norm(base, prompt_fn, task):,.0f}")


# Each row's key: its label and how to build its prompt function from the model.
ROWS = {
    "bare": ("bare model (zero-shot)", lambda base: no_prompt),
    "paper": ("capsule at position 0 (paper)", lambda base: build_method("capt", base, {"sink_token": False}).eval()),
    "bos": ("BOS sink, then the capsule", lambda base: build_method("capt", base, {"sink_token": True}).eval()),
    # untrained, the gated capsule's mean enters with gate 0: the slot holds a zero vector at every layer
    "zero-every": ("slot: zero vector at every layer", lambda base: build_method("capt", base, {"mean_gate": True}).eval()),
    "mean-input": ("slot: the mean at the input only", lambda base: slot_at_input("mean")),
    "zero-input": ("slot: zero vector at the input only", lambda base: slot_at_input("zero")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--only", default="", help="comma-separated row keys (default: every row)")
    args = parser.parse_args()
    keys = args.only.split(",") if args.only else list(ROWS)
    if unknown := [key for key in keys if key not in ROWS]:  # before the model loads
        raise SystemExit(f"--only: unknown row {', '.join(unknown)}; the rows: {', '.join(ROWS)}")
    base, task = load_model("smollm2-135m"), load_task(args.task)
    only = f" --task {args.task}" * (args.task != "sst2") + f" --only {args.only}" * bool(args.only)
    lines = [f"# python benchmarks/capt_sink.py{only} ({task.split_note}; untrained capsule, p = 0)"]
    lines += [row(ROWS[key][0], base, ROWS[key][1](base), task) for key in keys]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
