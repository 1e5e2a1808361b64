"""A ViT prompt used as a text prompt is: trained, scored, classified and saved from the command line, classified from
Python, and served on /v1/classify with images as base64 PNG/JPEG (bad images get a clear 4xx)."""
from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import CLASSES, striped_image
from softprompt.cli import main
from softprompt.serving.app import create_app
from softprompt.tuned import TunedPrompt, load_prompt


@pytest.fixture(scope="module")
def stripes_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stripes")
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for seed in range(5):
            Image.fromarray(striped_image(label, seed)).save(root / name / f"{seed}.png")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_vit_dir, stripes_folder):
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--model", str(tiny_vit_dir), "--task", str(stripes_folder), "--method", "vpt-deep", "--max-steps", "3",
                 "--batch-size", "4", "--num-virtual-tokens", "2", "--init", "vipamin", "--output-dir", str(out)])
    assert code == 0
    return out


def png(array, format="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buffer, format=format)
    return buffer.getvalue()


def test_the_command_line_trains_scores_and_classifies_images(trained, tiny_vit_dir, stripes_folder, capsys):
    assert {"prompt.safetensors", "README.md", "curves.png", "metrics.jsonl"} <= {p.name for p in trained.iterdir()}
    card = (trained / "README.md").read_text()
    assert "vpt-deep" in card and 'prompt.classify(["photo.png"])' in card and "generate" not in card
    assert main(["eval", str(trained / "prompt.safetensors")]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1
    image = str(stripes_folder / "vertical" / "0.png")
    assert main(["classify", str(trained / "prompt.safetensors"), image]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["input"] == image and line["label"] in CLASSES and sum(line["probabilities"].values()) == pytest.approx(1)


def test_a_vit_prompt_refuses_what_it_cannot_do(trained, tiny_vit_dir, stripes_folder, capsys):
    assert main(["generate", str(trained / "prompt.safetensors"), "hello"]) == 2
    assert "it classifies, it does not generate text" in capsys.readouterr().err
    assert main(["export", str(trained / "prompt.safetensors"), "--format", "peft", "--output", str(trained / "x")]) == 2
    assert "runs on a ViT with its own classifier head" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_vit_dir), "--task", str(stripes_folder)]) == 2  # zero-shot: no head
    assert "has no answer of its own to score" in capsys.readouterr().err


def test_python_classifies_files_bytes_and_pil_images_alike(trained, tiny_vit, stripes_folder):
    prompt = load_prompt(trained / "prompt.safetensors", tiny_vit)
    path = stripes_folder / "diagonal" / "1.png"
    by_path, by_bytes, by_image = prompt.classify([str(path), path.read_bytes(), Image.open(path)])
    assert by_path["label"] == by_bytes["label"] == by_image["label"] and set(by_path["probabilities"]) == set(CLASSES)
    for other in (by_bytes, by_image):  # the same pixels, in other rows of one batch
        assert other["probabilities"] == pytest.approx(by_path["probabilities"], abs=1e-6)


def test_the_server_classifies_base64_images_as_python_does(trained, tiny_vit, tiny_image_task, vision_trained_like, tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "stripes.safetensors").write_bytes((trained / "prompt.safetensors").read_bytes())
    TunedPrompt(tiny_vit, vision_trained_like("lora"), {"task": "stripes", "label_words": list(CLASSES)}).save(prompts / "lora.safetensors")
    image = striped_image(1, 7)
    expected = load_prompt(prompts / "stripes.safetensors", tiny_vit).classify([png(image)])[0]
    encoded = base64.b64encode(png(image)).decode()
    with TestClient(create_app(tiny_vit, prompts)) as client:
        assert client.get("/health").json()["prompts"] == 2
        served = client.post("/v1/classify", json={"model": "stripes", "image": [encoded, "data:image/jpeg;base64," +
                                                                                 base64.b64encode(png(image, "JPEG")).decode()]}).json()
        assert served["data"][0]["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
        assert served["data"][1]["label"] in CLASSES
        assert client.post("/v1/classify", json={"model": "lora", "image": encoded}).status_code == 200  # weights may change here
        errors = {
            400: client.post("/v1/classify", json={"model": "stripes", "image": "not base64!"}),
            415: client.post("/v1/classify", json={"model": "stripes", "image": base64.b64encode(png(image, "GIF")).decode()}),
            404: client.post("/v1/classify", json={"model": "nope", "image": encoded}),
            422: client.post("/v1/classify", json={"model": "stripes"}),
            413: client.post("/v1/classify", content=b"x" * 16_000_001, headers={"content-type": "application/json"}),
        }
        too_many = client.post("/v1/classify", json={"model": "stripes", "image": [encoded] * 33})
    for status, response in errors.items():
        assert response.status_code == status, response.text
    assert "image 0: not valid base64" in errors[400].json()["error"]["message"]
    assert "is GIF; send PNG or JPEG" in errors[415].json()["error"]["message"]
    assert too_many.status_code == 400 and "give 1 to 32 images" in too_many.json()["error"]["message"]
