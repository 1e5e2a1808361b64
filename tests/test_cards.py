"""The README.md written beside each trained prompt: the facts it states, and a command that re-creates the run."""
from __future__ import annotations

import shlex
from dataclasses import asdict

from softprompt.tuned import TunedPrompt
from softprompt.formats.card import model_card
from softprompt.training.config import train_command
from softprompt.cli import train_config
from softprompt.methods import build_method
from softprompt.training import TrainConfig, train


def test_a_trained_prompt_gets_a_card_with_its_facts_and_both_ways_to_load_it(tmp_path, tiny_base, reviews_file):
    config = TrainConfig(task=str(reviews_file), model=tiny_base.name, output_dir=str(tmp_path / "run"), max_steps=1,
                         batch_size=4, method_options={"num_virtual_tokens": 3})
    result = train(config, base=tiny_base)
    card = (tmp_path / "run" / "README.md").read_text()
    metrics = result.metrics
    assert f"| base model | `{tiny_base.name}` (fingerprint `{tiny_base.fingerprint}`) |" in card
    assert "| method | `prompt-tuning`: m trainable input embeddings" in card and "Lester" in card
    assert f"| trainable parameters | {3 * tiny_base.hidden_size:,} |" in card
    assert f"| test accuracy | {metrics['accuracy']:.1%} (frozen model zero-shot: {metrics['zero_shot_accuracy']:.1%}) |" in card
    assert f'softprompt.load_prompt("{tmp_path / "run" / "prompt.safetensors"}")' in card
    assert "PeftModel.from_pretrained(model, \"peft-adapter\")" in card
    command = card.split("```bash\n")[1].split("\n```")[0]
    assert command.startswith("softprompt train --task ")
    assert train_config(shlex.split(command)[2:]) == config


def test_the_command_names_every_non_default_option_and_reads_back(tmp_path):
    config = TrainConfig(task="my data.jsonl", method="p-tuning", epochs=1, zero_shot=False, learning_rate=0.5,
                         method_options={"encoder": "lstm", "num_virtual_tokens": 4}, file_options={"template": "{text} =>"})
    command = train_command(asdict(config))
    assert command == ("softprompt train --task 'my data.jsonl' --method p-tuning --epochs 1 --learning-rate 0.5 "
                       "--zero-shot false --num-virtual-tokens 4 --encoder lstm --template '{text} =>'")
    assert train_config(shlex.split(command)[2:]) == config


def test_an_input_dependent_method_says_it_has_no_peft_form(tiny_base):
    card = model_card(TunedPrompt(tiny_base, build_method("dept", tiny_base, {}), {"task": "sst2"}), "p.safetensors")
    assert "`dept` computes its prompt from each input, so it has no PEFT equivalent." in card
    assert "PeftModel" not in card and "How it was made" not in card
