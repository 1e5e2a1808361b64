"""Tuning through `softprompt serve --blackbox` on the tiny model: the endpoint scores what the library scores, a
remote cma-es run loads no weights and equals the local run with the same seed, requests respect the server's
body limit, and generated requests never get a server error."""
from __future__ import annotations

import json
import threading
import time

import pytest
import schemathesis
import torch
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from softprompt.backbones import Injection
from softprompt.errors import SoftPromptError
from softprompt.runtime import remote
from softprompt.runtime.batching import Encoded
from softprompt.runtime.remote import INFO_PATH, SCORE_PATH, connect, encode_prompts
from softprompt.runtime.scoring import choice_scores
from softprompt.serving.app import create_app
from softprompt.training import TrainConfig, train
from softprompt.training import trainer as trainer_module

TEXTS = ["Review: a gorgeous , witty film\nSentiment:", "Review: dull\nSentiment:"]
LABELS = [" negative", " positive"]


@pytest.fixture(scope="module")
def server(tiny_base, tmp_path_factory):
    """The app under uvicorn on loopback, black-box on, with a body limit small enough to need several requests."""
    app = create_app(tiny_base, tmp_path_factory.mktemp("prompts"), blackbox=True, max_body_bytes=20_000)
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{running.servers[0].sockets[0].getsockname()[1]}"
    running.should_exit = True
    thread.join()


def test_the_endpoint_scores_what_the_library_scores(tiny_base):
    prompts = torch.randn(3, 4, tiny_base.hidden_size) * tiny_base.embedding_std
    with TestClient(create_app(tiny_base, ".", blackbox=True)) as client:
        info = client.get(INFO_PATH).json()
        as_tensors = client.post(SCORE_PATH, json={"prompts": encode_prompts(prompts), "inputs": TEXTS, "label_words": LABELS})
        as_lists = client.post(SCORE_PATH, json={"prompts": prompts.tolist(), "inputs": TEXTS, "label_words": LABELS})
    assert info["hidden_size"] == tiny_base.hidden_size and info["vocab_size"] == len(tiny_base.tokenizer)
    assert as_tensors.status_code == 200 and as_tensors.json()["logprobs"] == as_lists.json()["logprobs"]
    labels = [tiny_base.tokenizer(w, add_special_tokens=False)["input_ids"] for w in LABELS]
    for k, prompt in enumerate(prompts):
        examples = [Encoded(tiny_base.tokenizer(t)["input_ids"], labels[0], labels, 0, i) for i, t in enumerate(TEXTS)]
        with torch.no_grad():
            alone = choice_scores(tiny_base, lambda inputs, p=prompt: Injection(embeds=p.expand(inputs.batch_size, -1, -1)), examples, False)
        torch.testing.assert_close(torch.tensor(as_tensors.json()["logprobs"][k]), alone, atol=1e-5, rtol=0)


def test_a_remote_cma_es_run_equals_the_local_one_and_loads_no_weights(tmp_path, tiny_base, tiny_model_dir, reviews_file, server, monkeypatch):
    common = dict(task=str(reviews_file), model=str(tiny_model_dir), optimizer="cma-es", batch_size=4, max_steps=3,
                  optimizer_options={"intrinsic_dim": 8, "population": 6}, method_options={"num_virtual_tokens": 3, "init": "random"})
    local = train(TrainConfig(**common, output_dir=str(tmp_path / "local")), base=tiny_base)
    requests = []
    real_request = remote.request
    monkeypatch.setattr(remote, "request", lambda *a, **k: requests.append(a[0]) or real_request(*a, **k))
    monkeypatch.setattr(trainer_module, "load_model", lambda name: pytest.fail("a remote run loaded the model"))
    served = train(TrainConfig(**common, output_dir=str(tmp_path / "remote"), remote=server))
    losses = [[json.loads(line)["loss"] for line in (tmp_path / where / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
              for where in ("local", "remote")]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(served.prompt.method.embeddings, local.prompt.method.embeddings, atol=1e-4, rtol=0)
    assert served.metrics["accuracy"] == local.metrics["accuracy"]
    assert served.metrics["zero_shot_accuracy"] == local.metrics["zero_shot_accuracy"]
    assert requests.count(server + SCORE_PATH) > 3  # 6 candidates of 3 x 64 floats do not fit one 20 kB body


def test_a_remote_run_refuses_another_model_and_what_a_served_model_cannot_do(server):
    with pytest.raises(SoftPromptError, match="serves .*, not 'smollm2-135m': pass --model"):
        connect(server, "smollm2-135m")
    with pytest.raises(SoftPromptError, match="--remote takes methods whose prompt is input embeddings"):
        TrainConfig(method="prefix-tuning", optimizer="cma-es", remote=server)
    with pytest.raises(SoftPromptError, match="'adamw' back-propagates through the model"):
        TrainConfig(remote=server)


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server + "/openapi.json")


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_generated_requests_never_get_a_server_error(api_schema, mode):
    operation = api_schema[SCORE_PATH]["POST"]

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        case.call_and_validate(checks=[not_a_server_error])

    check()
