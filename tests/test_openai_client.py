"""The server under uvicorn on loopback, driven by the official `openai` client with an API key: every
parameter round-trips (streaming too), every refused one gets its 400, a missing or wrong key its 401."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import openai
import pytest
import torch
import uvicorn

from softprompt.runtime.generation import generate_ids
from softprompt.runtime.scoring import no_prompt
from softprompt.serving.app import create_app
from test_server import TEXT, save_prompt

KEY = "sk-test-7f3a"


@pytest.fixture(scope="module")
def server(tiny_base, tiny_task, tmp_path_factory):
    folder = tmp_path_factory.mktemp("client-prompts")
    prompts = {"sentiment": save_prompt(tiny_base, tiny_task, folder, "sentiment", "prompt-tuning", num_virtual_tokens=4),
               "prefix": save_prompt(tiny_base, tiny_task, folder, "prefix", "prefix-tuning", num_virtual_tokens=4)}
    app = create_app(tiny_base, folder, max_batch_size=8, max_wait_ms=5, api_keys=[KEY, "second-key"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", prompts
    server.should_exit = True
    thread.join()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)


def greedy(tiny_base, prompt, text, n):
    return generate_ids(tiny_base, prompt.method, [tiny_base.tokenizer(text)["input_ids"]], n)[0]


def test_a_string_prompt_gives_the_library_text_and_usage(client, server, tiny_base):
    answer = client.completions.create(model="sentiment", prompt=TEXT, max_tokens=6, user="someone")
    expected = greedy(tiny_base, server[1]["sentiment"], TEXT, 6)
    assert answer.choices[0].text == tiny_base.tokenizer.decode(expected) and answer.choices[0].finish_reason == "length"
    prompt_tokens = len(tiny_base.tokenizer(TEXT)["input_ids"])
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (prompt_tokens, 6, prompt_tokens + 6)


def test_strings_token_ids_and_lists_of_them_with_n(client, tiny_base):
    texts = [TEXT, "Once upon a time"]
    ids = [tiny_base.tokenizer(t)["input_ids"] for t in texts]
    by_text = client.completions.create(model="prefix", prompt=texts, max_tokens=4, n=2)
    by_ids = client.completions.create(model="prefix", prompt=ids, max_tokens=4, n=2)
    one_ids = client.completions.create(model="prefix", prompt=ids[1], max_tokens=4)
    assert [c.index for c in by_text.choices] == [0, 1, 2, 3]
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    assert by_text.choices[0].text == by_text.choices[1].text != by_text.choices[2].text == one_ids.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids[0]) + len(ids[1]) and by_ids.usage.completion_tokens == 16


def boundary_stop(tiny_base, tokens: list[int]) -> tuple[str, int]:
    """A stop string that begins in one generated token and ends in the next, first found there; and how many
    tokens it takes to complete it."""
    text = tiny_base.tokenizer.decode(tokens)
    for count in range(2, len(tokens)):
        cut, end = (len(tiny_base.tokenizer.decode(tokens[:k])) for k in (count - 1, count))
        for left, right in ((2, 2), (1, 2), (2, 1), (1, 1)):
            stop = text[cut - left:cut + right]
            if cut >= left and end >= cut + right and text.find(stop) == cut - left and "\ufffd" not in stop:
                return stop, count
    raise AssertionError("no stop string spans two tokens")


@pytest.mark.parametrize("model", ["sentiment", "prefix"])
def test_a_stop_string_across_tokens_cuts_the_text_also_when_streaming(client, server, tiny_base, model):
    tokens = greedy(tiny_base, server[1][model], TEXT, 16)
    stop, needed = boundary_stop(tiny_base, tokens)
    full = tiny_base.tokenizer.decode(tokens)
    expected = full[:full.find(stop)]
    answer = client.completions.create(model=model, prompt=TEXT, max_tokens=16, stop=[stop, "never-appears"])
    assert answer.choices[0].text == expected and answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens == needed
    chunks = list(client.completions.create(model=model, prompt=TEXT, max_tokens=16, stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected and chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_are_the_models_and_echo_returns_the_prompt_with_its_own(client, tiny_base):
    ids = tiny_base.tokenizer(TEXT)["input_ids"]
    answer = client.completions.create(model=tiny_base.name, prompt=TEXT, max_tokens=5, logprobs=3, echo=True).choices[0]
    assert answer.text.startswith(TEXT)
    logprobs = answer.logprobs
    assert len(logprobs.tokens) == len(ids) + 5 and logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    generated = generate_ids(tiny_base, no_prompt, [ids], 5)[0]
    with torch.no_grad():
        expected = torch.log_softmax(tiny_base.model(input_ids=torch.tensor([ids + generated])).logits[0, :-1].float(), -1)
    expected = expected.gather(-1, torch.tensor(ids[1:] + generated).unsqueeze(-1)).squeeze(-1)
    assert logprobs.token_logprobs[1:] == pytest.approx(expected.tolist(), abs=1e-4)
    assert "".join(logprobs.tokens) == answer.text and logprobs.text_offset[len(ids)] == len(TEXT)
    for token, value, top in zip(logprobs.tokens[len(ids):], logprobs.token_logprobs[len(ids):], logprobs.top_logprobs[len(ids):]):
        assert len(top) == 3 and top[token] == pytest.approx(value) and max(top.values()) == pytest.approx(value)  # greedy: the top one


def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_text(client):
    plain = client.completions.create(model="sentiment", prompt=TEXT, max_tokens=8).choices[0].text
    for limit in ({"top_k": 1}, {"top_p": 1e-6}):
        body = {"top_p": limit["top_p"]} if "top_p" in limit else {}
        sampled = client.completions.create(model="sentiment", prompt=TEXT, max_tokens=8, temperature=1.5, **body,
                                            extra_body={k: v for k, v in limit.items() if k != "top_p"})
        assert sampled.choices[0].text == plain


def test_a_seed_gives_the_same_text_and_another_seed_another(client):
    def sample(seed):
        return client.completions.create(model="prefix", prompt="Once upon a time", max_tokens=10, temperature=1.0, seed=seed).choices[0].text
    assert sample(11) == sample(11) != sample(12)


def test_penalties_stop_the_greedy_repetition(client, tiny_base):
    def tokens(**penalty):
        answer = client.completions.create(model=tiny_base.name, prompt=TEXT, max_tokens=8, logprobs=0, **penalty)
        return answer.choices[0].logprobs.tokens
    assert len(set(tokens())) < 8  # the tiny random model repeats itself
    assert len(set(tokens(presence_penalty=2.0))) == 8 and len(set(tokens(frequency_penalty=2.0))) == 8


def test_min_tokens_holds_back_the_end_of_sequence(client, tiny_base):
    eos = str(tiny_base.tokenizer.eos_token_id)
    forced = client.completions.create(model="sentiment", prompt=TEXT, max_tokens=10, logit_bias={eos: 100})
    assert forced.choices[0].finish_reason == "stop" and forced.choices[0].text == "" and forced.usage.completion_tokens == 1
    held = client.completions.create(model="sentiment", prompt=TEXT, max_tokens=10, logit_bias={eos: 100}, extra_body={"min_tokens": 3})
    assert held.choices[0].finish_reason == "stop" and held.usage.completion_tokens == 4 and held.choices[0].text


def test_chat_with_logprobs_stop_n_and_max_completion_tokens(client, tiny_base):
    messages = [{"role": "user", "content": "Hello"}]
    answer = client.chat.completions.create(model="sentiment", messages=messages, max_completion_tokens=5, n=2, logprobs=True,
                                            top_logprobs=2, response_format={"type": "text"})
    assert len(answer.choices) == 2 and answer.usage.completion_tokens == 10
    content = answer.choices[0].logprobs.content
    assert len(content) == 5 and all(len(entry.top_logprobs) == 2 for entry in content)
    assert "".join(entry.token for entry in content) == answer.choices[0].message.content
    assert content[0].top_logprobs[0].logprob == pytest.approx(content[0].logprob)  # greedy picks the likeliest
    whole = answer.choices[0].message.content
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]
    stopped = client.chat.completions.create(model="sentiment", messages=messages, max_tokens=5, stop=stop)
    assert stopped.choices[0].message.content == whole[:whole.find(stop)] and stopped.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="sentiment", messages=messages, max_tokens=5, stop=stop, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices == []
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == whole[:whole.find(stop)]
    assert chunks[-1].usage.completion_tokens == stopped.usage.completion_tokens


@pytest.mark.parametrize("endpoint, options, named", [
    ("completions", {"best_of": 2}, "best_of"), ("completions", {"suffix": "end"}, "suffix"),
    ("completions", {"extra_body": {"guided_json": {}}}, "guided_json"),
    ("chat", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("chat", {"response_format": {"type": "json_object"}}, "response_format"),
    ("chat", {"reasoning_effort": "low"}, "reasoning_effort"), ("chat", {"top_logprobs": 2}, "top_logprobs"),
])
def test_a_parameter_that_is_not_implemented_is_refused_by_name(client, endpoint, options, named):
    with pytest.raises(openai.BadRequestError) as refused:
        if endpoint == "completions":
            client.completions.create(model="sentiment", prompt=TEXT, **options)
        else:
            client.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": "Hi"}], **options)
    assert refused.value.status_code == 400 and named in refused.value.message


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", f"Bearer {KEY}x", f"Basic {KEY}", KEY])
def test_a_missing_or_wrong_key_gets_401_and_no_output(server, authorization):
    import httpx2

    headers = {"Authorization": authorization} if authorization is not None else {}
    for path, body in (("/v1/completions", {"model": "sentiment", "prompt": TEXT}), ("/v1/classify", {"model": "sentiment", "input": TEXT})):
        answer = httpx2.post(f"{server[0]}{path}", json=body, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert set(answer.json()) == {"error"}
    assert httpx2.get(f"{server[0]}/metrics", headers=headers).status_code == 401
    assert httpx2.get(f"{server[0]}/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server[0]}/v1", api_key="sk-wrong", max_retries=0).models.list()


def test_the_second_key_works_and_curl_gets_a_completion(server):
    answer = subprocess.run(["curl", "-s", "-H", "Authorization: Bearer second-key", "-H", "content-type: application/json",
                             "-d", json.dumps({"model": "sentiment", "prompt": TEXT, "max_tokens": 3}), f"{server[0]}/v1/completions"],
                            capture_output=True, text=True, timeout=60, check=True)
    body = json.loads(answer.stdout)
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 3


def test_metrics_count_requests_tokens_batches_and_prompt_cache_hits(server, client):
    import httpx2

    def scrape() -> dict:
        text = httpx2.get(f"{server[0]}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}
    client.completions.create(model="sentiment", prompt=TEXT, max_tokens=1)  # the prompt's keys/values are in the cache now
    before = scrape()
    for _ in range(3):
        client.completions.create(model="sentiment", prompt=TEXT, max_tokens=4)
    after = scrape()

    def grew(name):
        return after[name] - before.get(name, 0.0)
    assert grew('softprompt_requests_total{endpoint="/v1/completions",status="200"}') == 3
    assert grew("softprompt_generated_tokens_total") == 12
    assert grew("softprompt_time_to_first_token_seconds_count") == 3
    assert grew('softprompt_batch_size_count{kind="prefill"}') == 3 and grew('softprompt_batch_size_count{kind="decode"}') == 9
    assert grew("softprompt_prefix_cache_hits_total") == 3 and grew("softprompt_prefix_cache_misses_total") == 0
    assert grew('softprompt_request_latency_seconds_count{endpoint="/v1/completions"}') == 3
    assert after["softprompt_queue_length"] == 0 and after["softprompt_running_sequences"] == 0


def test_a_client_that_leaves_a_stream_frees_its_row(server, client):
    """Closing a stream early cancels the choice: it leaves the running batch instead of decoding 200 tokens."""
    import httpx2

    def generated() -> float:
        text = httpx2.get(f"{server[0]}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        return float(next(line.split()[1] for line in text.splitlines() if line.startswith("softprompt_generated_tokens_total")))
    before = generated()
    stream = client.completions.create(model="sentiment", prompt=TEXT, max_tokens=200, stream=True)
    next(iter(stream))
    stream.close()
    for _ in range(100):  # the row leaves when its choice is cancelled, or after its 200th token
        if "softprompt_running_sequences 0.0" in httpx2.get(f"{server[0]}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text:
            break
        time.sleep(0.1)
    assert generated() - before < 20  # 2 here; 200 when a left stream kept decoding


def test_an_api_key_file_holds_one_key_a_line(tmp_path):
    from softprompt.errors import SoftPromptError
    from softprompt.serving.access import read_api_keys

    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nsk-one\n\n  sk-two  \n")
    assert read_api_keys(["sk-cli"], str(keys)) == ["sk-cli", "sk-one", "sk-two"]
    keys.write_text("# nothing yet\n")
    with pytest.raises(SoftPromptError, match="holds no key"):
        read_api_keys(None, str(keys))
    with pytest.raises(SoftPromptError, match="No such file"):
        read_api_keys(None, str(tmp_path / "missing.txt"))
    with pytest.raises(SoftPromptError, match="printable"):
        read_api_keys(["two words"], None)
