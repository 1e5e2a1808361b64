"""Patches per second of softprompt's vision path against a plain PyTorch loop with PEFT's LoRA, on the same batches.

Both train LoRA (r 8 on q_proj, v_proj) plus a linear head on DINOv2 ViT-S's CLS state, batch 8 of Fashion-MNIST
images, AdamW; ours is one step of softprompt's Trainer (`Trainer._step`: decoding, pixels, the prompted pass
with hook-applied LoRA, the loss, backward, clipping, the scheduler), theirs the textbook loop on a PeftModel.
Steps alternate between the two, so load on the machine slows both alike; each side's median step counts.
Evaluation: softprompt's `evaluate` against a plain no-grad loop, on the same test images, alternating by chunk of
32 (the median chunk counts: a load spike on a shared machine once made one chunk take minutes).

    python benchmarks/vision_speed.py --sizes 112,224 --steps 8 --eval-images 96 --threads 1 --output benchmarks/results/vision_speed.txt
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import softprompt  # noqa: E402
from softprompt.backbones import load_model  # noqa: E402
from softprompt.evaluation import evaluate  # noqa: E402
from softprompt.storage import write_text_atomic  # noqa: E402
from softprompt.tasks import Task, load_task  # noqa: E402
from softprompt.training.trainer import Trainer  # noqa: E402
from softprompt.tuned import TunedPrompt  # noqa: E402

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def plain_pixels(arrays: list[np.ndarray], size: int) -> torch.Tensor:
    """The textbook preprocessing: grey to RGB, bicubic resize, ImageNet normalisation."""
    from PIL import Image

    rgb = [np.asarray(Image.fromarray(a).convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255 for a in arrays]
    return torch.from_numpy(((np.stack(rgb) - MEAN) / STD).astype(np.float32)).permute(0, 3, 1, 2)


def plain_model(base):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base.model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    head = torch.nn.Linear(base.hidden_size, 10)
    optimizer = torch.optim.AdamW([*filter(lambda p: p.requires_grad, model.parameters()), *head.parameters()], lr=1e-3)
    return model, head, optimizer


def plain_step(model, head, optimizer, arrays, labels, size) -> None:
    logits = head(model(pixel_values=plain_pixels(arrays, size)).pooler_output)
    torch.nn.functional.cross_entropy(logits, torch.tensor(labels)).backward()
    optimizer.step()
    optimizer.zero_grad()


def measure(size: int, name: str, args, task: Task) -> dict:
    base = load_model(name)
    patches = 1 + base.num_patches
    config = softprompt.TrainConfig(task="fashion-mnist-10", method="lora", model=name, max_steps=args.steps + 2, batch_size=8,
                                    output_dir="/tmp/vision-speed", checkpoint_every=10**9)
    trainer = Trainer(config, base, task)
    batches = trainer._epoch_batches()
    part = trainer.parts[0]
    model, head, optimizer = plain_model(load_model(name))  # its own copy: PEFT wraps the modules it is given
    model.train()
    ours, theirs = [], []
    for step in range(args.steps + 2):  # the first two of each warm up
        indices = batches[step % len(batches)][1]
        start = time.perf_counter()
        trainer._step([batches[step % len(batches)]])
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        plain_step(model, head, optimizer, [part.train_set[i].source for i in indices], [part.train_set[i].label for i in indices], size)
        theirs.append(time.perf_counter() - start)
    train = {"ours": 8 * patches / statistics.median(ours[2:]), "plain": 8 * patches / statistics.median(theirs[2:])}
    prompt, evaluated = TunedPrompt(base, trainer.method, {}), {"ours": [], "plain": []}
    model.eval()
    for start_row in range(0, args.eval_images, 32):
        chunk = Task(task.name, task.train, task.test[start_row:start_row + 32], task.description)
        start = time.perf_counter()
        evaluate(base, prompt, chunk, batch_size=32)
        evaluated["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            head(model(pixel_values=plain_pixels([e.image for e in chunk.test], size)).pooler_output).argmax(-1)
        evaluated["plain"].append(time.perf_counter() - start)
    scored = {k: 32 * patches / statistics.median(seconds) for k, seconds in evaluated.items()}  # the median chunk of 32
    return {"size": size, "patches": patches, "train": train, "eval": scored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="112,224")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--eval-images", type=int, default=96, help="a multiple of 32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = load_task("fashion-mnist-10")
    names = {112: "dinov2-s-112", 224: "dinov2-s"}
    lines = [f"$ python benchmarks/vision_speed.py {' '.join(sys.argv[1:])}",
             f"softprompt vs plain PyTorch + PEFT LoRA (r 8, q_proj/v_proj) + linear head, batch 8, {args.threads} threads, "
             f"median of {args.steps} steps after 2 warm-up; eval: median chunk of 32 of {args.eval_images} test images",
             "size  tokens  train patches/s ours / plain = ratio   eval patches/s ours / plain = ratio"]
    print("\n".join(lines), flush=True)
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure(size, names[size], args, task)
        lines.append(f"{size:4d}  {r['patches']:6d}  {r['train']['ours']:8.0f} / {r['train']['plain']:8.0f} = "
                     f"{r['train']['ours'] / r['train']['plain']:.2f}         {r['eval']['ours']:8.0f} / {r['eval']['plain']:8.0f} = "
                     f"{r['eval']['ours'] / r['eval']['plain']:.2f}")
        print(lines[-1], flush=True)
    if args.output:
        write_text_atomic(args.output, "\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
