from __future__ import annotations

import pytest

from softprompt.errors import SoftPromptError
from softprompt.evaluation import final_number
from softprompt.tasks import FileTaskOptions, TASKS, load_task


def test_sst2_carve_is_the_documented_600_272_split():
    task = load_task("sst2")
    assert (len(task.train), len(task.test)) == (600, 272)
    # numpy default_rng(0).permutation(872) puts validation row 597 first (same as datasets' shuffle(seed=0)).
    assert task.train[0].text.startswith("Review: the weight of the piece , the unerring professionalism")
    assert task.train[0].target == " positive" and task.label_words == (" negative", " positive")
    assert not {e.text for e in task.train} & {e.text for e in task.test}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_builtin_task_loads_with_valid_labels(name):
    task = load_task(name)
    assert task.train and task.test and task.split_note
    for example in task.train[:50] + task.test[:50]:
        assert example.text and example.target
        if example.is_choice:
            assert 0 <= example.label < len(example.choices)


def test_gsm8k_answers_compare_by_final_number():
    task = load_task("gsm8k")
    assert final_number(task.train[0].completion) is not None
    assert final_number("so she pays $1,250.\n#### 1250") == "1250"
    assert final_number("The answer is 42.") == "42"


def test_unknown_task_lists_the_choices():
    with pytest.raises(SoftPromptError, match="unknown task 'sst3'.*sst2"):
        load_task("sst3")


def test_jsonl_classification_file(reviews_file):
    task = load_task(str(reviews_file))
    assert len(task.train) + len(task.test) == 12 and len(task.test) == 2
    assert task.label_words == (" negative", " positive")
    assert task.train[0].text.endswith("\nAnswer:")


def test_csv_generation_file_with_custom_fields(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\nColour of the sky?,blue\n")
    task = load_task(str(path), FileTaskOptions(prompt_field="question", completion_field="answer"))
    assert not task.train[0].is_choice
    assert {e.completion for e in task.train + task.test} == {" 4", " Paris", " blue"}


@pytest.mark.parametrize("content, message", [
    ('{"text": "fine", "label": "positive"}\n{"text": "bad"}\n', "line 2: missing field 'label'"),
    ("", "empty"),
    ('{"text": "fine", "label": "positive"}\nnot json\n', "line 2: not valid JSON"),
    ('["a", "list"]\n', "line 1: expected a JSON object"),
])
def test_bad_data_files_are_refused_with_the_line(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(SoftPromptError, match=message):
        load_task(str(path))


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "caf\xe9", "label": "x"}\n')
    with pytest.raises(SoftPromptError, match="not UTF-8"):
        load_task(str(path))


def test_several_tasks_combine_and_a_repeated_one_is_refused():
    combined = load_task("cb,copa")
    assert [t.name for t in combined.subtasks()] == ["cb", "copa"]
    assert len(combined.train) == 36 + 60 and len(combined.test) == 20 + 40
    with pytest.raises(SoftPromptError, match="a task is listed twice in cb,cb"):
        load_task("cb,cb")


def test_label_words_are_the_choices_every_example_shares():
    assert load_task("cb").label_words == (" True", " False", " Neither")
    copa = load_task("copa")  # each example has its own two answers: there are no labels to offer
    assert len({e.choices for e in copa.train}) > 1 and copa.label_words == ()


def test_a_prompt_of_a_task_with_per_example_choices_refuses_to_classify(tiny_base, tmp_path):
    from softprompt.methods import build_method
    from softprompt.tuned import TunedPrompt

    prompt = TunedPrompt(tiny_base, build_method("prompt-tuning", tiny_base), {"label_words": list(load_task("copa").label_words)})
    with pytest.raises(SoftPromptError, match="answer choices differ per example"):
        prompt.classify(["The man broke his toe because"])


def test_the_tasks_with_test_carves_big_enough_to_decide():
    sizes = {name: (len(load_task(name).train), len(load_task(name).test)) for name in ("winogrande", "hellaswag", "sciq", "social-iqa")}
    assert sizes == {"winogrande": (267, 1000), "hellaswag": (2000, 1000), "sciq": (400, 600), "social-iqa": (954, 1000)}
    sciq = load_task("sciq")  # answers are shuffled per question (seeded), or the first would always be right
    assert len({e.label for e in sciq.test}) == 4 and all(e.choices[e.label] != e.choices[0] for e in sciq.test[:50] if e.label)
    assert load_task("hellaswag").length_normalized and load_task("winogrande").label_words == ()
