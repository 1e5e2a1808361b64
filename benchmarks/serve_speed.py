"""Serving speed on one frozen model, as ratios measured in one run (timings here are noisy: compare only
within a run). Prompts are 20-token prompt-tuning prompts built from different texts (speed does not
depend on what they learned).

    nice -n 5 .venv/bin/python benchmarks/serve_speed.py --out benchmarks/results/serve_speed.txt

On a machine shared with other jobs, use --threads 1: two OpenMP threads that are not scheduled together
stall at every barrier (measured here: 10x slower per forward at load average 10 on 2 cores).

(a) one request's latency through a prompt with the prompt KV cache, vs the bare model (no prompt);
(b) ours vs PEFT's PeftModel (PromptTuning, the same vectors): one forward scoring request, and generate;
(c) throughput of a batch whose 8 rows use 8 different prompts vs 8 rows of one prompt;
(d) a loopback load run through the real HTTP server: clients x requests, mixed prompts; failures,
    p50/p99 latency, throughput; and batched vs one-at-a-time (--max-batch-size 1) throughput;
(e) scoring the SST-2 test carve: ours (KV cache, no autograd) vs PEFT (pad to the longest, no autograd);
(f) a soak run, not in the default parts: the real server (`softprompt serve --api-key`) in its own process,
    --clients loops rotating /v1/classify, /v1/completions and /v1/chat/completions for --duration seconds
    after a --warmup of the same load, while a prober sends requests with a missing or wrong key; failed
    requests, p50/p99, the probes' answers, and the server's resident memory (/proc VmRSS) sampled
    throughout, growth measured from the end of the warm-up:

    nice -n 5 .venv/bin/python benchmarks/serve_speed.py --parts f --threads 1 --duration 60 --clients 64

(g) continuous batching vs the old static batcher (benchmarks/static_batching.py), not in the default parts:
    half the clients send --short-requests short /v1/classify requests each while the other half ask for
    --long-tokens tokens each; the short requests' p99 latency on each server; then completions alone,
    batched vs one-at-a-time:

    nice -n 5 .venv/bin/python benchmarks/serve_speed.py --parts g --threads 1 --clients 32 --long-tokens 64
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softprompt.evaluation import zero_shot  # noqa: E402

from softprompt.tuned import TunedPrompt  # noqa: E402
from softprompt.runtime.batching import encode  # noqa: E402
from softprompt.runtime.scoring import choice_scores, no_prompt  # noqa: E402
from softprompt.storage import write_text_atomic  # noqa: E402
from softprompt.runtime.generation import generate_ids  # noqa: E402
from softprompt.methods import build_method  # noqa: E402
from softprompt.backbones import load_model  # noqa: E402
from softprompt.serving.mixed import Row, next_token_logprobs  # noqa: E402
from softprompt.tasks import load_task  # noqa: E402
from serve_load import load_test, scheduling_test, soak_test  # noqa: E402

INIT_TEXTS = ["Classify the sentiment of the review.", "Is this movie review positive or negative?",
              "Decide whether the critic liked the film.", "Sentiment analysis of a short review:",
              "Read the review and answer with its polarity.", "Was the reviewer happy or unhappy?",
              "Label the opinion expressed in this text.", "Positive or negative: what does this review say?"]


def make_prompts(base, task, count: int) -> list[TunedPrompt]:
    prompts = []
    for text in INIT_TEXTS[:count]:
        method = build_method("prompt-tuning", base, {"num_virtual_tokens": 20, "init_text": text})
        method.initialize(base, task)
        prompts.append(TunedPrompt(base, method.eval(), {"task": task.name, "label_words": list(task.label_words)}))
    return prompts


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(functions: dict, repeats: int) -> dict:
    """Total seconds of each function, run in turn `repeats` times (after one untimed warm-up round) so
    machine noise hits all alike."""
    totals = dict.fromkeys(functions, 0.0)
    for round_ in range(repeats + 1):
        for name, fn in functions.items():
            seconds = timed(fn)
            totals[name] += seconds if round_ else 0.0
    return totals


def peft_model(name: str, prompt: TunedPrompt):
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(load_model(name).model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20))
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(prompt.method.embeddings)
    return model.eval()


def latency(base, prompt, peft, encoded, args, report):
    rows = encoded[: args.latency_rows]
    one = lambda fn: lambda: [fn(e) for e in rows]  # noqa: E731  one request at a time
    with torch.no_grad():
        totals = interleaved({
            "bare": one(lambda e: choice_scores(base, no_prompt, [e], False)),
            "cached": one(lambda e: choice_scores(base, prompt, [e], False)),
            "uncached": one(lambda e: choice_scores(base, prompt.method, [e], False)),
            "peft": one(lambda e: peft(input_ids=torch.tensor([e.context]), attention_mask=torch.ones(1, len(e.context), dtype=torch.long)).logits[:, -1]),
        }, args.repeats)
    per = {k: 1000 * v / (len(rows) * args.repeats) for k, v in totals.items()}
    report(f"(a) one scoring request, {len(rows)} SST-2 test rows x {args.repeats}: bare {per['bare']:.1f} ms, "
           f"prompt with KV cache {per['cached']:.1f} ms, without {per['uncached']:.1f} ms")
    report(f"    ratio cached / bare = {per['cached'] / per['bare']:.3f}   (target <= 1.05; uncached / bare = {per['uncached'] / per['bare']:.3f})")
    report(f"(b) vs PEFT, same request: PEFT forward {per['peft']:.1f} ms; ours / PEFT = {per['cached'] / per['peft']:.3f}")
    texts = [e.context for e in rows[: max(1, args.latency_rows // 4)]]
    with torch.no_grad():
        totals = interleaved({
            "ours": lambda: [generate_ids(base, prompt, [ids], args.new_tokens) for ids in texts],
            "peft": lambda: [peft.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
                             for ids in texts],
        }, args.repeats)
    produced = [len(generate_ids(base, prompt, [ids], args.new_tokens)[0]) for ids in texts]
    report(f"    generate {args.new_tokens} tokens, {len(texts)} requests (ours produced {statistics.mean(produced):.1f} tokens on average "
           f"before any end-of-sequence; PEFT forced to {args.new_tokens}): ours {1000 * totals['ours'] / len(texts) / args.repeats:.0f} ms, "
           f"PEFT {1000 * totals['peft'] / len(texts) / args.repeats:.0f} ms; ours / PEFT = {totals['ours'] / totals['peft']:.3f}")


def mixed_throughput(base, prompts, encoded, args, report):
    batches = [encoded[i:i + 8] for i in range(0, len(encoded) - 7, 8)][: args.mixed_batches]
    mixed = [[Row(e.context, prompts[i % len(prompts)]) for i, e in enumerate(batch)] for batch in batches]
    single = [[Row(e.context, prompts[0]) for e in batch] for batch in batches]
    totals = interleaved({"mixed": lambda: [next_token_logprobs(base, b) for b in mixed],
                          "single": lambda: [next_token_logprobs(base, b) for b in single]}, args.repeats)
    report(f"(c) {len(batches)} batches of 8 rows: 8 different prompts {totals['mixed']:.2f} s, one prompt {totals['single']:.2f} s; "
           f"throughput ratio mixed / single = {totals['single'] / totals['mixed']:.3f}   (target >= 0.9)")


def evaluation(base, prompt, peft, task, args, report):
    def ours():
        return prompt.evaluate(task, batch_size=16, max_length=256)["accuracy"]

    def bare():
        return zero_shot(base, task, batch_size=16, max_length=256)["accuracy"]

    def theirs():
        tokenizer = base.tokenizer
        label_ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in task.label_words]
        correct = 0
        with torch.no_grad():
            for start in range(0, len(task.test), 16):
                batch = task.test[start:start + 16]
                tokenizer.padding_side = "left"
                encoded = tokenizer([e.text for e in batch], return_tensors="pt", padding=True)
                logits = peft(**encoded).logits[:, -1, label_ids]
                correct += sum(int(p) == e.label for p, e in zip(logits.argmax(-1), batch))
        return correct / len(task.test)

    accuracies, seconds = {}, dict.fromkeys(("ours", "peft", "bare"), 0.0)
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("peft", theirs), ("bare", bare)):
            start = time.perf_counter()
            accuracies[name] = fn()
            seconds[name] += time.perf_counter() - start
    report(f"(e) scoring the {len(task.test)}-row {task.name} test carve x {args.repeats}: ours {seconds['ours']:.1f} s "
           f"(accuracy {accuracies['ours']:.1%}), PEFT {seconds['peft']:.1f} s ({accuracies['peft']:.1%}), "
           f"bare model {seconds['bare']:.1f} s ({accuracies['bare']:.1%})")
    report(f"    throughput ours / PEFT = {seconds['peft'] / seconds['ours']:.2f}   (target >= 1.5); ours / bare time = "
           f"{seconds['ours'] / seconds['bare']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--eval-rows", type=int, default=0, help="score only the first N test rows in (e) (0: all)")
    parser.add_argument("--latency-rows", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--mixed-batches", type=int, default=34)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=200, help="per client, batched server")
    parser.add_argument("--unbatched-requests", type=int, default=10, help="per client, one-at-a-time server (a rate: fewer suffice)")
    parser.add_argument("--workloads", default="completions,classify",
                        help="(d) load runs, comma-separated: completions, classify, or mixed (the two alternating)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the soak run (f)")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of the same load before the soak run (f) is measured")
    parser.add_argument("--long-tokens", type=int, default=64, help="tokens of each completion in (g)")
    parser.add_argument("--generations", type=int, default=1, help="completions each generating client asks for in (g)")
    parser.add_argument("--short-requests", type=int, default=8, help="classify requests each short-request client sends in (g)")
    parser.add_argument("--unbatched-clients", type=int, default=4, help="clients of the one-at-a-time server in (g) (a rate: fewer suffice)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="abcde", help="which measurements to run, e.g. 'd' for the load run alone; 'f' (the soak run) and 'g' (scheduling) only when named")
    parser.add_argument("--out", help="also write the report here, under the command that produced it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = [f"$ python benchmarks/serve_speed.py {' '.join(sys.argv[1:] if argv is None else argv)}"]

    def report(line: str):
        print(line, flush=True)
        lines.append(line)

    base, task = load_model(args.model), load_task(args.task)
    task = dataclasses.replace(task, test=task.test[: args.eval_rows or None])
    report(f"model {args.model}, task {task.name} [{task.split_note}], torch threads {args.threads}")
    prompts = make_prompts(base, task, 8)
    encoded = encode(base, task.test, 256)
    peft = peft_model(args.model, prompts[0]) if set(args.parts) & set("abe") else None
    if set(args.parts) & set("ab"):
        latency(base, prompts[0], peft, encoded, args, report)
    if "c" in args.parts:
        with torch.no_grad():
            mixed_throughput(base, prompts, encoded, args, report)
    if "e" in args.parts:
        evaluation(base, prompts[0], peft, task, args, report)
    if "d" in args.parts:
        load_test(prompts, task, args, report)
    if "f" in args.parts:
        soak_test(prompts, task, args, report)
    if "g" in args.parts:
        scheduling_test(prompts, task, args, report)
    if args.out:
        write_text_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
