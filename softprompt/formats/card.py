"""A model card (README.md) for a saved prompt: what it is, how well it did, how it was made and loaded."""
from __future__ import annotations

from ..tuned import TunedPrompt
from .peft import peft_exportable


def model_card(prompt: TunedPrompt, prompt_file: str, command: str = "") -> str:
    """The card; `command` is the `softprompt train` command line that re-creates the run, if any."""
    info, method = prompt.info, prompt.method
    metrics = info.get("metrics", {})
    parameters = sum(p.numel() for p in method.parameters())
    rows = [("base model", f"`{prompt.base.name}` (fingerprint `{prompt.base.fingerprint}`)"),
            ("method", f"`{method.name}`: {method.description}. {method.paper}"),
            ("task", f"`{info.get('task', '?')}` ({info.get('split', 'split not recorded')})"),
            ("trainable parameters", f"{parameters:,}"),
            *_metric_rows(metrics)]
    lines = ["---", "library_name: softprompt", f"tags: [soft-prompt, {method.name}]", "---", "",
             f"# A `{method.name}` soft prompt for `{info.get('task', '?')}`", "",
             "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), ""]
    if command:
        lines += ["## How it was made", "", "```bash", command, "```", ""]
    lines += ["## Load it with softprompt", "", "```python", "import softprompt", "",
              f'prompt = softprompt.load_prompt("{prompt_file}")   # refuses any other base model']
    if prompt.base.kind == "vision":
        return "\n".join(lines + ['print(prompt.classify(["photo.png"]))   # image files, bytes or PIL images', "```", "",
                                   "It holds its classifier head too; PEFT's prompt formats are for causal language models.", ""])
    if info.get("label_words"):
        lines += ['print(prompt.classify(["<an input formatted as in training>"]))']
    lines += ['print(prompt.generate(["<an input formatted as in training>"], max_new_tokens=8))', "```", ""]
    if peft_exportable(type(method)):
        lines += ["## Load it with Hugging Face PEFT", "", "```bash",
                  f"softprompt export {prompt_file} --format peft --output peft-adapter", "```", "", "```python",
                  "from peft import PeftModel", "from transformers import AutoModelForCausalLM", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{prompt.base.model.name_or_path}")',
                  'model = PeftModel.from_pretrained(model, "peft-adapter")', "```", ""]
    else:
        lines += [f"`{method.name}` computes its prompt from each input, so it has no PEFT equivalent.", ""]
    return "\n".join(lines)


def _metric_rows(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    for name in ("accuracy", "exact_match"):
        if name in metrics:
            baseline = metrics.get(f"zero_shot_{name}")
            rows.append((f"test {name.replace('_', ' ')}", f"{metrics[name]:.1%}" + (
                f" (frozen model zero-shot: {baseline:.1%})" if baseline is not None else "")))
    if "steps" in metrics:
        rows.append(("optimizer steps", str(metrics["steps"])))
    if metrics.get("seconds_per_step"):
        rows.append(("seconds per step (median)", f"{metrics['seconds_per_step']:.2f}"))
    return rows
