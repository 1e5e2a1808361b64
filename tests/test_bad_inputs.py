"""A table of bad inputs across the command line, the Python API, data files, prompt files and checkpoints.

Each case is refused with a clear message (exit code 2 from the CLI, a SoftPromptError from the API) and
leaves every file in its workspace as it was: the workspace (a trained run's prompt and checkpoint, a good
data file, and whatever bad file the case adds) is hashed before and after.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

from softprompt import SoftPromptError, TrainConfig, load_model, load_prompt, train
from softprompt.tuned import TunedPrompt
from softprompt.runtime.remote import SCORE_PATH, encode_prompts
from softprompt.serving.app import create_app
from softprompt.cli import main
from softprompt.storage import save_tensors
from softprompt.methods import all_methods, build_method
from softprompt.training.optimizers import OPTIMIZERS
from softprompt.backbones import FrozenModel
from softprompt.tasks import Example, Task, load_task
from softprompt.training.trainer import Trainer

REVIEWS = "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in [
    ("a gorgeous , witty film", "positive"), ("dull and lifeless", "negative"), ("a triumph", "positive"),
    ("a tedious mess", "negative"), ("warm , funny and wise", "positive"), ("painfully slow", "negative")])


@dataclass
class Workspace:
    dir: Path  # everything in it is hashed before and after the case
    model_dir: Path  # the tiny Llama (tests/conftest.py)
    base: FrozenModel
    trained: Path  # the folder the run was trained in (checkpoints record their data file's path)

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def prompt(self) -> Path:
        return self.run / "prompt.safetensors"

    @property
    def checkpoint(self) -> Path:
        return self.run / "checkpoint.pt"

    def config(self, **overrides) -> TrainConfig:
        values = dict(task=str(self.dir / "data.jsonl"), model=str(self.model_dir), output_dir=str(self.run),
                      batch_size=2, max_steps=2, zero_shot=False, method_options={"num_virtual_tokens": 3})
        return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir, tiny_base) -> Path:
    """A finished tiny run (prompt file + checkpoint) that each case gets a fresh copy of."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "data.jsonl").write_text(REVIEWS)
    workspace = Workspace(folder, tiny_model_dir, tiny_base, folder)
    train(workspace.config(), base=tiny_base)
    return folder


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny Llama with other weights: a different base model for the same prompt shapes."""
    folder = tmp_path_factory.mktemp("other-llama")
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(1.0)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    return folder


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# ---- ways to run a case -------------------------------------------------------------------------
def cli(*argv: str):
    """Run `softprompt ARGV` in-process ({dir}, {model}, {run}, {prompt}... filled from the workspace)."""
    def run(w: Workspace, capsys) -> str:
        names = {"dir": w.dir, "model": w.model_dir, "run": w.run, "prompt": w.prompt, "data": w.dir / "data.jsonl",
                 "trained_data": w.trained / "data.jsonl"}
        try:
            code = main([a.format(**names) for a in argv])
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
        err = capsys.readouterr().err
        assert code == 2, f"exit code {code}: {err}"
        return err
    return run


def api(action):
    """Call `action(workspace)`, which must raise a SoftPromptError."""
    def run(w: Workspace, capsys) -> str:
        with pytest.raises(SoftPromptError) as error:
            action(w)
        return str(error.value)
    return run


TRAIN = ("train", "--model", "{model}", "--output-dir", "{dir}/out", "--num-virtual-tokens", "3", "--max-steps", "1",
         "--batch-size", "2", "--zero-shot", "false")
RESUME = ("train", "--model", "{model}", "--task", "{trained_data}", "--output-dir", "{run}", "--num-virtual-tokens", "3",
          "--max-steps", "4", "--batch-size", "2", "--zero-shot", "false", "--resume", "true")


def write(name: str, content: str | bytes):
    def setup(w: Workspace) -> None:
        path = w.dir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


# ---- damaged or foreign prompt files and checkpoints -----------------------------------------------
def truncate(attribute: str, keep: int | None = None):
    def setup(w: Workspace) -> None:
        path = getattr(w, attribute)
        data = path.read_bytes()
        path.write_bytes(data[:keep if keep is not None else len(data) // 2])
    return setup


def flip_tensor_byte(w: Workspace) -> None:
    data = bytearray(w.prompt.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data, leaving the header valid
    w.prompt.write_bytes(bytes(data))


def edit_prompt_metadata(w: Workspace) -> None:
    """Change the label words in the header but keep it valid JSON of the same length."""
    data = w.prompt.read_bytes()
    assert data.count(b"positive") >= 1
    w.prompt.write_bytes(data.replace(b"positive", b"POSITIVE"))


def plain_safetensors(w: Workspace) -> None:
    save_file({"embeddings": torch.zeros(3, w.base.hidden_size)}, str(w.prompt))


def old_format(w: Workspace) -> None:
    header = {"softprompt": json.dumps({"format": "softprompt/0"})}
    save_file({"embeddings": torch.zeros(3, w.base.hidden_size)}, str(w.prompt), metadata=header)


def foreign_prompt(method: str, tensors):
    """A well-formed, checksummed prompt file that no real training run could have written."""
    def setup(w: Workspace) -> None:
        metadata = {"method": method, "config": {"num_virtual_tokens": 3},
                    "base_model": {"name": str(w.model_dir), "fingerprint": w.base.fingerprint}}
        save_tensors(w.prompt, tensors(w.base), metadata)
    return setup


def resave_checkpoint(change):
    """Load the checkpoint, change its contents, and save it back with the old checksum."""
    def setup(w: Workspace) -> None:
        saved = torch.load(w.checkpoint, weights_only=True)
        change(saved)
        torch.save(saved, w.checkpoint)
    return setup


def shift_embeddings(saved: dict) -> None:
    saved["state"]["method"]["embeddings"] += 1


def other_base(w: Workspace) -> FrozenModel:
    return FrozenModel("other-model", w.base.model, w.base.tokenizer, "LlamaForCausalLM:000000")


def make_dir(name: str):
    return lambda w: (w.dir / name).mkdir()


def examples(*choices_and_labels) -> list[Example]:
    return [Example(f"Review: {i}\nSentiment:", choices, label) for i, (choices, label) in enumerate(choices_and_labels)]


def nothing(w: Workspace) -> None:
    pass


def blackbox(prompts, status: int = 400, enabled: bool = True, max_body_bytes: int = 1_000_000):
    """POST `prompts(width)` with two inputs to the tiny model's black-box endpoint; it must answer `status`."""
    def run(w: Workspace, capsys) -> str:
        body = {"prompts": encode_prompts(prompts(w.base.hidden_size)), "inputs": ["Review: fine\nSentiment:"] * 2,
                "label_words": [" negative", " positive"]}
        with TestClient(create_app(w.base, w.dir, blackbox=enabled, max_body_bytes=max_body_bytes)) as client:
            response = client.post(SCORE_PATH, json=body)
        assert response.status_code == status, response.text
        return response.json()["error"]["message"]
    return run


def with_value(value: float):
    def prompts(width: int) -> torch.Tensor:
        tensor = torch.zeros(2, 3, width)
        tensor[1, 2, 0] = value
        return tensor
    return prompts


GOOD = ((" negative", " positive"), 1)
CASES = [
    # --- the command line: names, types and ranges (refused before any model loads) ---
    ("cli unknown command", nothing, cli("fly"), r"usage: softprompt \{train\|eval\|generate\|classify\|serve\|export\|import\|list\}"),
    ("cli unknown task", nothing, cli("train", "--task", "sst3"), r"unknown task 'sst3'; choose one of: .*sst2"),
    ("cli unknown method", nothing, cli("train", "--method", "magic"),
     rf"unknown method 'magic'; choose one of: {', '.join(sorted(all_methods()))}$"),
    ("cli unknown optimizer", nothing, cli("train", "--optimizer", "lbfgs"), rf"unknown optimizer 'lbfgs'; choose one of: {', '.join(sorted(OPTIMIZERS))}$"),
    ("cli unknown model", nothing, cli("train", "--model", "no-such-model"), r"unknown model 'no-such-model'; choose one of: .*smollm2-135m"),
    ("cli eval needs a task", nothing, cli("eval"), r"--task is required"),
    ("cli wrong type", nothing, cli("train", "--batch-size", "eight"), r"argument --batch-size: invalid int value: 'eight'"),
    ("cli zero batch size", nothing, cli("train", "--batch-size", "0"), r"batch_size must be a finite number >= 1, got 0"),
    ("cli negative batch size", nothing, cli("train", "--batch-size", "-4"), r"batch_size must be a finite number >= 1, got -4"),
    ("cli negative learning rate", nothing, cli("train", "--learning-rate", "-0.1"), r"learning_rate must be a finite number >= 0, got -0.1"),
    ("cli nan learning rate", nothing, cli("train", "--learning-rate", "nan"), r"learning_rate must be a finite number >= 0, got nan"),
    ("cli zero epochs", nothing, cli("train", "--epochs", "0"), r"epochs must be a finite number >= 1, got 0"),
    ("cli warmup ratio above 1", nothing, cli("train", "--warmup-ratio", "1.5"), r"need warmup_ratio < 1"),
    ("cli not a boolean", nothing, cli("train", "--zero-shot", "maybe"), r"expected true or false, got 'maybe'"),
    ("cli zero max new tokens", nothing, cli("generate", "{prompt}", "hi", "--max-new-tokens", "0"), r"max_new_tokens must be an integer >= 1"),
    ("cli negative temperature", nothing, cli("generate", "{prompt}", "hi", "--temperature", "-1"), r"temperature a finite number >= 0, got 64 and -1.0"),
    # --- the command line: options that need the model or the data ---
    ("cli unknown init", nothing, cli(*TRAIN, "--task", "{data}", "--init", "bogus"), r"unknown init 'bogus'; choose one of: random, text, vocab"),
    ("cli zero virtual tokens", nothing, cli(*TRAIN, "--task", "{data}", "--num-virtual-tokens", "0"),
     r"num_virtual_tokens must be between 1 and the model's context length 256, got 0"),
    ("cli huge virtual tokens", nothing, cli(*TRAIN, "--task", "{data}", "--num-virtual-tokens", "1000000000"),
     r"num_virtual_tokens must be between 1 and the model's context length 256, got 1000000000"),
    ("cli dev set as large as the data", nothing, cli(*TRAIN, "--task", "{data}", "--dev-size", "100"), r"dev_size 100 leaves no training examples"),
    ("cli output dir is a file", nothing, cli(*TRAIN, "--task", "{data}", "--output-dir", "{data}"), r"output_dir '.*data.jsonl' is a file, not a folder"),
    ("cli resume without checkpoint", nothing, cli(*TRAIN, "--task", "{data}", "--resume", "true"), r"--resume: no checkpoint at .*out/checkpoint.pt"),
    ("cli eval zero batch size", nothing, cli("eval", "{prompt}", "--task", "{data}", "--batch-size", "0"),
     r"batch_size and max_length must be integers >= 1, got 0 and 256"),
    # --- data files ---
    ("data missing field", write("bad.jsonl", '{"text": "good", "label": "positive"}\n{"label": "negative"}\n'),
     cli(*TRAIN, "--task", "{dir}/bad.jsonl"), r"bad.jsonl line 2: missing field 'text' \(fields present: label\)"),
    ("data empty", write("bad.jsonl", "\n"), cli(*TRAIN, "--task", "{dir}/bad.jsonl"), r"bad.jsonl: the dataset is empty"),
    ("data not UTF-8", write("bad.jsonl", '{"text": "caf\xe9", "label": "positive"}\n'.encode("latin-1")),
     cli(*TRAIN, "--task", "{dir}/bad.jsonl"), r"bad.jsonl: not UTF-8 text \(invalid continuation byte at byte 13\)"),
    ("data invalid JSON", write("bad.jsonl", '{"text": "good", "label": "positive"}\n{"text": "bad", \n'),
     cli(*TRAIN, "--task", "{dir}/bad.jsonl"), r"bad.jsonl line 2: not valid JSON"),
    ("data line not an object", write("bad.jsonl", '["good", "positive"]\n'), cli(*TRAIN, "--task", "{dir}/bad.jsonl"),
     r"bad.jsonl line 1: expected a JSON object, got list"),
    ("data file missing", nothing, cli(*TRAIN, "--task", "{dir}/nope.jsonl"), r"data file '.*nope.jsonl' does not exist"),
    ("data file is a directory", make_dir("folder.jsonl"), cli(*TRAIN, "--task", "{dir}/folder.jsonl"),
     r"data file '.*folder.jsonl' is a directory, not a file"),
    ("data one label only", write("bad.jsonl", "".join(json.dumps({"text": t, "label": "positive"}) + "\n" for t in "abcde")),
     cli(*TRAIN, "--task", "{dir}/bad.jsonl"), r"a single answer choice ' positive' leaves nothing to decide"),
    ("data csv without the text column", write("bad.csv", "review,label\ngreat,positive\nawful,negative\n"),
     cli(*TRAIN, "--task", "{dir}/bad.csv"), r"bad.csv line 2: missing field 'text' \(fields present: review, label\)"),
    ("data template with an unknown field", nothing, cli(*TRAIN, "--task", "{data}", "--template", "{{text}} {{label}}"),  # {{ }}: cli() fills {names}
     r"template '\{text\} \{label\}' names unknown field\(s\) \['label'\]: only \{text\} is filled in"),
    ("data template without the text", nothing, cli(*TRAIN, "--task", "{data}", "--template", "hello"),
     r"template 'hello' has no \{text\} field: every example would read the same input"),
    ("data template with an unclosed brace", nothing, cli(*TRAIN, "--task", "{data}", "--template", "{{text"),
     r"template '\{text' is not a valid format string"),
    ("cli file options on a built-in task", nothing, cli("train", "--task", "sst2", "--template", "Q: {{text}}"),
     r"template: options of tasks read from .jsonl/.csv files; 'sst2' is built in and has its own format"),
    ("data wrong field name", nothing, cli(*TRAIN, "--task", "{data}", "--text-field", "review"), r"data.jsonl line 1: missing field 'review'"),
    ("data test file with other labels", write("test.jsonl", '{"text": "x", "label": "meh"}\n{"text": "y", "label": "ok"}\n'),
     cli(*TRAIN, "--task", "{data}", "--test-file", "{dir}/test.jsonl"), r"test.jsonl: labels \(' meh', ' ok'\) differ"),
    ("data answer longer than the context", write("gen.jsonl", "".join(json.dumps({"prompt": f"Q{i}:", "completion": "many words " * 20}) + "\n"
                                                                        for i in range(5))),
     cli(*TRAIN, "--task", "{dir}/gen.jsonl", "--max-length", "8"), r"the answer alone exceeds max_length 8"),
    ("data unsupported file type", write("data.txt", "great,positive\n"), cli(*TRAIN, "--task", "{dir}/data.txt"),
     r"unknown task '.*data.txt'; choose one of: .*<file.jsonl>"),
    # --- prompt files ---
    ("prompt missing", nothing, api(lambda w: load_prompt(w.dir / "nope.safetensors", w.base)), r"prompt file '.*nope.safetensors' does not exist"),
    ("prompt is a directory", nothing, cli("eval", "{run}", "--task", "{data}"), r"prompt file '.*run' is a directory, not a file"),
    ("prompt path of the wrong type", nothing, api(lambda w: load_prompt(123, w.base)), r"prompt file must be a file path, got 123"),
    ("prompt truncated", truncate("prompt", -40), api(lambda w: load_prompt(w.prompt, w.base)),
     r"prompt file .*prompt.safetensors is truncated or corrupted"),
    ("prompt of zero bytes", truncate("prompt", 0), cli("eval", "{prompt}", "--task", "sst2"), r"prompt.safetensors is truncated or corrupted"),
    ("prompt tensor altered", flip_tensor_byte, api(lambda w: load_prompt(w.prompt, w.base)),
     r"prompt file .*prompt.safetensors was altered: its tensors or metadata do not match the checksum"),
    ("prompt metadata altered", edit_prompt_metadata, cli("eval", "{prompt}", "--model", "{model}"), r"prompt.safetensors was altered"),
    ("prompt not written by softprompt", plain_safetensors, api(lambda w: load_prompt(w.prompt, w.base)), r"has no valid softprompt metadata"),
    ("prompt of an older format", old_format, api(lambda w: load_prompt(w.prompt, w.base)),
     r"has format 'softprompt/0'; this version reads 'softprompt/1'"),
    ("prompt of an unknown method", foreign_prompt("magic", lambda b: {"embeddings": torch.zeros(3, b.hidden_size)}),
     api(lambda w: load_prompt(w.prompt, w.base)), r"prompt file .*prompt.safetensors: unknown method 'magic'"),
    ("prompt of the wrong shape", foreign_prompt("prompt-tuning", lambda b: {"embeddings": torch.zeros(3, 5)}),
     api(lambda w: load_prompt(w.prompt, w.base)), r"tensors \{'embeddings': \(3, 5\)\} do not match what 'prompt-tuning' builds: \{'embeddings': \(3, 64\)\}"),
    ("prompt for another model (API)", nothing, api(lambda w: load_prompt(w.prompt, other_base(w))),
     r"trained on base model '.*' \(LlamaForCausalLM:\w+\), not on the loaded model 'other-model'"),
    # --- checkpoints (softprompt train --resume) ---
    ("checkpoint truncated", truncate("checkpoint"), cli(*RESUME), r"checkpoint .*checkpoint.pt is truncated or corrupted"),
    ("checkpoint altered", resave_checkpoint(shift_embeddings), cli(*RESUME),
     r"checkpoint .*checkpoint.pt was altered: its contents do not match the checksum"),
    ("checkpoint of another format", resave_checkpoint(lambda saved: saved.pop("format")), cli(*RESUME),
     r"checkpoint .*checkpoint.pt is not a softprompt checkpoint of format 'softprompt-checkpoint/2'"),
    ("checkpoint of another run", nothing, cli(*RESUME, "--seed", "1"), r"--resume: checkpoint .* was made with seed=0, not 1"),
    # --- the Python API ---
    ("api unknown option", nothing, api(lambda w: train(batchsize=8)), r"train\(\) has no option\(s\) \['batchsize'\]; it has: .*'batch_size'"),
    ("api wrong type", nothing, api(lambda w: train(batch_size="8")), r"batch_size must be int, got str '8'"),
    ("api boolean as a string", nothing, api(lambda w: w.config(resume="yes")), r"resume must be bool, got str 'yes'"),
    ("api method option of the wrong type", nothing,
     api(lambda w: build_method("prompt-tuning", w.base, {"num_virtual_tokens": "4"})), r"num_virtual_tokens must be int, got str '4'"),
    ("api unknown method option", nothing, api(lambda w: build_method("prompt-tuning", w.base, {"tokens": 4})),
     r"method 'prompt-tuning' has no option\(s\) \['tokens'\]"),
    ("api zero method learning rate", nothing, api(lambda w: build_method("dept", w.base, {"embedding_learning_rate": 0})),
     r"embedding_learning_rate must be > 0"),
    ("api unknown file option", nothing, api(lambda w: Trainer(w.config(file_options={"text_feld": "x"}), w.base)),
     r"file_options has no option\(s\) \['text_feld'\]"),
    ("api unknown objective", nothing, api(lambda w: train(w.config(objective="mse"), base=w.base)),
     r"unknown objective 'mse'; choose one of: choice, lm"),
    ("api duplicate label words", nothing, api(lambda w: Task("t", examples(((" yes", " yes"), 0)), examples(GOOD), "d")),
     r"task 't', train example 0: answer choices \(' yes', ' yes'\) must be distinct and non-empty"),
    ("api empty label word", nothing, api(lambda w: Task("t", examples(GOOD), examples(((" yes", ""), 0)), "d")),
     r"task 't', test example 0: answer choices \(' yes', ''\) must be distinct and non-empty"),
    ("api label out of range", nothing, api(lambda w: Task("t", examples(GOOD, ((" no", " yes"), 2)), examples(GOOD), "d")),
     r"train example 1: label 2 is not the index of one of its 2 choices"),
    ("api completion that tokenizes to nothing", nothing,
     api(lambda w: Trainer(w.config(), w.base, Task("t", [Example("Q:", completion="")], [Example("Q:", completion=" 1")], "d"))),
     r"example 0: an answer tokenizes to nothing"),
    ("api texts not a list", nothing, api(lambda w: load_prompt(w.prompt, w.base).classify("a warm film")),
     r"expected a non-empty list of texts, got str 'a warm film'"),
    ("api empty text", nothing, api(lambda w: load_prompt(w.prompt, w.base).classify(["fine", " "])), r"text 1 must be a non-empty string, got ' '"),
    ("api input longer than the context", nothing, api(lambda w: load_prompt(w.prompt, w.base).generate(["word " * 300])),
     r"input 0 has \d+ tokens: with max_new_tokens 64 it exceeds the model's context length 256"),
    ("api classify without label words", nothing, api(lambda w: TunedPrompt(w.base, load_prompt(w.prompt, w.base).method, {}).classify(["x"])),
     r"this prompt has no label words to classify with: it was trained on a generation task or on one whose answer choices differ per example"),
    ("api empty model name", nothing, api(lambda w: load_model("")), r"model must be a model name, a folder or a hub id, got ''"),
    # --- forward-only optimizers and tuning through a server (--remote, softprompt serve --blackbox) ---
    ("api unknown optimizer option", nothing, api(lambda w: w.config(optimizer="cma-es", optimizer_options={"eps": 0.1})),
     r"optimizer 'cma-es' has no option\(s\) \['eps'\]; it has: \['intrinsic_dim', 'population', 'spread'\]"),
    ("cli population of one", nothing, cli("train", "--optimizer", "cma-es", "--population", "1"),
     r"need intrinsic_dim >= 1, population >= 2 and spread > 0, got 500, 1 and 1.0"),
    ("cli zero perturbation", nothing, cli("train", "--optimizer", "zo-sgd", "--eps", "0"), r"zo-sgd needs eps > 0 and perturbations >= 1"),
    ("cli learning rate for cma-es", nothing, cli("train", "--optimizer", "cma-es", "--learning-rate", "0.1"),
     r"optimizer 'cma-es' does not use learning_rate: it reads none of the schedule options; leave it out or pick another optimizer"),
    ("cli remote with adamw", nothing, cli("train", "--remote", "http://127.0.0.1:9"),
     r"--remote: 'adamw' back-propagates through the model, which stays on the server; use a forward-only optimizer \(zo-sgd, cma-es, sharpzo\)"),
    ("cli remote with a method it cannot serve", nothing, cli("train", "--remote", "http://127.0.0.1:9", "--optimizer", "cma-es", "--method", "idpg"),
     r"--remote takes methods whose prompt is input embeddings that do not depend on the input; 'idpg' injects \['embeds'\] and reads the input"),
    ("cli remote not a URL", nothing, cli(*TRAIN, "--task", "{data}", "--optimizer", "cma-es", "--remote", "localhost:8000"),
     r"remote must be an http:// or https:// URL, got 'localhost:8000'"),
    ("cli remote server unreachable", nothing, cli(*TRAIN, "--task", "{data}", "--optimizer", "cma-es", "--remote", "http://127.0.0.1:9"),
     r"cannot reach http://127.0.0.1:9/v1/blackbox/info"),
    ("blackbox prompts of the wrong width", nothing, blackbox(lambda width: torch.zeros(2, 3, width + 1)),
     r"prompts must be \(candidates, m, 64\): this model's embeddings have width 64; got shape \(2, 3, 65\)"),
    ("blackbox prompts with too many rows", nothing, blackbox(lambda width: torch.zeros(1, 257, width)),
     r"prompts: 1 to 64 candidates of at most 256 rows each, got 1 of 257"),
    ("blackbox NaN in a prompt", nothing, blackbox(with_value(float("nan"))), r"prompts hold 1 NaN and 0 infinite values"),
    ("blackbox inf in a prompt", nothing, blackbox(with_value(float("inf"))), r"prompts hold 0 NaN and 1 infinite values"),
    ("blackbox body over the limit", nothing, blackbox(lambda width: torch.zeros(8, 16, width), 413, max_body_bytes=20_000),
     r"request body over the 20000-byte limit"),
    ("blackbox endpoint off", nothing, blackbox(lambda width: torch.zeros(2, 3, width), 403, enabled=False),
     r"the black-box endpoint is off: start the server with --blackbox"),
]


@pytest.mark.parametrize("setup, action, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly_and_changes_no_file(tmp_path, trained_run, tiny_model_dir, tiny_base, capsys, setup, action, message):
    shutil.copytree(trained_run, tmp_path, dirs_exist_ok=True)
    workspace = Workspace(tmp_path, tiny_model_dir, tiny_base, trained_run)
    setup(workspace)
    before = snapshot(tmp_path)
    error = action(workspace, capsys)
    assert re.search(message, error), error
    assert snapshot(tmp_path) == before


def test_the_table_is_large_and_its_cases_distinct():
    assert len(CASES) >= 25 and len({case[0] for case in CASES}) == len(CASES)
    assert len({case[-1] for case in CASES}) == len(CASES)


def test_prompt_for_another_model_is_refused_on_the_command_line(tmp_path, trained_run, other_model_dir, capsys):
    before = snapshot(trained_run)
    code = main(["eval", str(trained_run / "run" / "prompt.safetensors"), "--model", str(other_model_dir), "--task", str(trained_run / "data.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "trained on base model" in err and f"not on the loaded model '{other_model_dir}'" in err
    assert snapshot(trained_run) == before


PLAIN = REVIEWS.replace(" , ", " ; ")  # no commas inside CSV fields


@pytest.mark.parametrize("name, content", [
    ("bom.jsonl", "\ufeff" + PLAIN.replace("\n", "\r\n")),
    ("bom.csv", "\ufefftext,label\r\n" + "".join("{text},{label}\r\n".format(**json.loads(line)) for line in PLAIN.splitlines())),
])
def test_byte_order_mark_and_crlf_line_ends_are_read_like_plain_files(tmp_path, name, content):
    """Not bad input: files as Windows editors write them. They load, to the same task as a plain file."""
    plain = tmp_path / "plain.jsonl"
    plain.write_text(PLAIN)
    tricky = tmp_path / name
    tricky.write_bytes(content.encode())
    assert load_task(str(tricky)).train == load_task(str(plain)).train
