"""`train --config run.yaml`: the file is the TrainConfig serialised, the command line overrides it, and
bad files are refused with a message that names the key."""
from __future__ import annotations

import re

import pytest
import yaml

from softprompt.cli import main, train_config
from softprompt.configs import to_yaml
from softprompt.errors import SoftPromptError
from softprompt.training import TrainConfig


def write(path, values) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_file_values_apply_and_the_command_line_overrides_them(tmp_path):
    path = write(tmp_path / "run.yaml", {"task": "rte", "method": "p-tuning", "max_steps": 5, "learning_rate": 1,
                                         "method_options": {"num_virtual_tokens": 7, "encoder": "lstm"}})
    config = train_config(["--config", path, "--max-steps", "9", "--encoder", "mlp", "--template", "{text} ->"])
    assert (config.task, config.method, config.max_steps, config.learning_rate) == ("rte", "p-tuning", 9, 1.0)
    assert config.method_options == {"num_virtual_tokens": 7, "encoder": "mlp"}
    assert config.file_options == {"template": "{text} ->"}


def test_key_value_options_take_their_fields_types_and_bad_ones_are_named():
    from softprompt.configs import parse_options
    from softprompt.methods.prompt_tuning import PromptTuningConfig

    assert parse_options(PromptTuningConfig, ["num_virtual_tokens=4", "init_text=1", "learning_rate=3e-2"], "here") == {
        "num_virtual_tokens": 4, "init_text": "1", "learning_rate": 0.03}  # "1" stays text for a str field
    for pairs, message in ((["num_virtual_tokens=four"], "here: num_virtual_tokens must be int, got 'four'"),
                           (["learning_rate"], "here: expected KEY=VALUE, got 'learning_rate'"),
                           (["num_tokens=4"], "here: unknown option(s) ['num_tokens']")):
        with pytest.raises(SoftPromptError, match=re.escape(message)):
            parse_options(PromptTuningConfig, pairs, "here")


def test_a_saved_config_reads_back_to_the_same_config(tmp_path):
    original = TrainConfig(task="boolq", method="prefix-tuning", epochs=1, dev_size=30, zero_shot=False,
                           method_options={"num_virtual_tokens": 4, "projection_hidden_size": 16},
                           file_options={"text_field": "review"})
    (tmp_path / "train_config.yaml").write_text(to_yaml(original))
    assert train_config(["--config", str(tmp_path / "train_config.yaml")]) == original


def test_the_method_named_in_the_file_decides_which_options_exist(tmp_path):
    path = write(tmp_path / "run.yaml", {"method": "prefix-tuning"})
    assert train_config(["--config", path, "--projection-hidden-size", "8"]).method_options == {"projection_hidden_size": 8}


@pytest.mark.parametrize("values, message", [
    ({"max_step": 3}, r"unknown option\(s\) \['max_step'\]; valid options: .*max_steps"),
    ({"max_steps": "ten"}, "max_steps must be int, got str 'ten'"),
    ({"zero_shot": 1}, "zero_shot must be bool, got int 1"),
    ({"epochs": True}, "epochs must be int, got bool True"),
    ({"method_options": {"num_virtual_token": 3}}, r"method_options: unknown option\(s\) \['num_virtual_token'\]"),
    ({"file_options": {"template": 3}}, "file_options: template must be str"),
    (["task", "sst2"], "expected a mapping of option: value, got list"),
])
def test_bad_config_files_are_refused_naming_the_problem(tmp_path, values, message):
    with pytest.raises(SoftPromptError, match=message):
        train_config(["--config", write(tmp_path / "run.yaml", values)])


def test_cli_reports_a_bad_config_and_writes_nothing(capsys, tmp_path):
    (tmp_path / "broken.yaml").write_text("task: [sst2\n")
    out_dir = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "broken.yaml"), "--output-dir", str(out_dir)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out_dir.exists()


def test_a_preset_fills_what_was_not_given_and_explicit_options_win():
    from softprompt.training import TrainConfig

    paper = TrainConfig(method="pt-moe", preset="paper", batch_size=16)
    assert (paper.learning_rate, paper.lr_schedule, paper.warmup_steps, paper.max_steps, paper.batch_size) == (2e-5, "constant", 500, 1500, 16)
    assert paper.method_options == {"num_virtual_tokens": 40, "num_experts": 2, "rank": 36, "router_noise": 0.01}
    mine = TrainConfig(method="lopa", preset="paper", method_options={"dropout": 0.3})
    assert mine.method_options == {"instance_encoder": "base-last", "encoder_hidden_size": 0, "dropout": 0.3}
    assert TrainConfig(method="capt", preset="paper").method_options == {"sink_token": False, "mean_includes_capsule": False,
                                                                        "mean_gate": False}


def test_an_unknown_preset_names_the_ones_there_are():
    import pytest

    from softprompt.errors import SoftPromptError
    from softprompt.training import TrainConfig

    with pytest.raises(SoftPromptError, match="method 'lopa' has no preset 'fast'; its presets: paper"):
        TrainConfig(method="lopa", preset="fast")
    with pytest.raises(SoftPromptError, match="method 'prompt-tuning' has no preset 'paper'; its presets: none"):
        TrainConfig(preset="paper")
