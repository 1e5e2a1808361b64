"""When the model fails on one request: a stream still ends with an error event and [DONE], and the
requests that shared its batch are answered as if it had never been there."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from softprompt.serving import mixed, running_batch, scheduler
from softprompt.serving.app import create_app
from test_server import LABELS, TEXT, save_prompt

POISON = "Review: this one breaks the model\nSentiment:"


@pytest.fixture
def client(tiny_base, tiny_task, tmp_path):
    save_prompt(tiny_base, tiny_task, tmp_path, "sentiment", "prompt-tuning", num_virtual_tokens=4)
    with TestClient(create_app(tiny_base, tmp_path, max_batch_size=8, max_wait_ms=300), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_stream_whose_worker_raises_ends_with_an_error_event_and_done(client, monkeypatch):
    def failing_step(batch):  # the prefill gives the first token; the next step fails
        raise ValueError("the device fell over")
    monkeypatch.setattr(running_batch.RunningBatch, "step", failing_step)
    with client.stream("POST", "/v1/completions", json={"model": "sentiment", "prompt": TEXT, "max_tokens": 5, "stream": True}) as response:
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200
    assert "text" in json.loads(events[0])["choices"][0]  # the token sent before the failure
    assert json.loads(events[-2]) == {"error": {"message": "generation failed: the device fell over"}}
    assert events[-1] == "[DONE]"


def test_one_failing_row_fails_only_its_own_request(client, monkeypatch):
    real_row_injection, batch_sizes = mixed._row_injection, []
    poison_ids = client.app.state.store.base.tokenizer(POISON)["input_ids"]

    def fails_on_the_poisoned_row(base, row):
        if row.ids == poison_ids:
            raise RuntimeError("this row breaks the kernel")
        return real_row_injection(base, row)

    def counting(base, rows):
        batch_sizes.append(len(rows))
        return real_next_token_logprobs(base, rows)

    real_next_token_logprobs = scheduler.next_token_logprobs
    monkeypatch.setattr(mixed, "_row_injection", fails_on_the_poisoned_row)
    monkeypatch.setattr(scheduler, "next_token_logprobs", counting)
    texts = [TEXT, POISON, "Review: dull and lifeless\nSentiment:", "Review: a triumph\nSentiment:"]
    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(lambda text: client.post("/v1/classify", json={"model": "sentiment", "input": text}), texts))
    assert [a.status_code for a in answers] == [200, 500, 200, 200]
    assert batch_sizes[0] == 4, "the four requests must have shared a batch for this test to mean anything"
    alone = client.post("/v1/classify", json={"model": "sentiment", "input": texts[0]}).json()["data"][0]
    assert answers[0].json()["data"][0]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
    assert set(answers[0].json()["data"][0]["probabilities"]) == {label.strip() for label in LABELS}
