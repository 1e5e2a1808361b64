"""POST /v1/completions and /v1/chat/completions: each prompt x n choices become sequences of the running
batch; their deltas are gathered into one response or streamed as server-sent events."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from ..errors import SoftPromptError
from .context import Serving
from .responses import ChatShape, ChoiceState, CompletionShape
from .schemas import MAX_ROWS, ChatRequest, CompletionRequest, Sampling
from .sequences import SamplingParams, Sequence
from .text import TextStream


@dataclass
class Prompt:
    ids: list[int]
    text: str  # what echo returns and what an input-dependent prompt's features read


def completion_prompts(tokenizer, vocabulary: int, prompt) -> list[Prompt]:
    """A completions `prompt` (a string, strings, token ids, or lists of token ids) as prompts."""
    items = [prompt] if isinstance(prompt, str) or isinstance(prompt[0], int) else prompt
    prompts = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            prompts.append(Prompt(tokenizer(item)["input_ids"], item))
        elif max(item) >= vocabulary:
            raise SoftPromptError(f"prompt {index}: token ids must be below the vocabulary size {vocabulary}")
        else:
            prompts.append(Prompt(list(item), tokenizer.decode(item)))
    return prompts


def add_generation_routes(app: FastAPI, serving: Serving) -> None:
    tokenizer = serving.base.tokenizer

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        prompts = await asyncio.to_thread(completion_prompts, tokenizer, serving.vocabulary, body.prompt)
        wants_logprobs = body.logprobs is not None
        params = body.sampling_params(serving.vocabulary, body.max_tokens, body.logprobs, body.echo and wants_logprobs)
        shape = CompletionShape(tokenizer, wants_logprobs, [p.text for p in prompts] if body.echo else None)
        return await _generate(body, prompts, params, shape)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        max_tokens = body.checked_max_tokens()
        messages = [message.as_template_input() for message in body.messages]
        text = await asyncio.to_thread(tokenizer.apply_chat_template, messages, add_generation_prompt=True, tokenize=False)
        prompt = Prompt(tokenizer(text, add_special_tokens=False)["input_ids"], text)
        params = body.sampling_params(serving.vocabulary, max_tokens, (body.top_logprobs or 0) if body.logprobs else None)
        return await _generate(body, [prompt], params, ChatShape(tokenizer, body.logprobs))

    async def _generate(body: Sampling, prompts: list[Prompt], params: SamplingParams, shape):
        if len(prompts) * body.n > MAX_ROWS:
            raise SoftPromptError(f"{len(prompts)} prompts x n={body.n} is over the {MAX_ROWS} choices one request may ask for")
        rows = await asyncio.to_thread(lambda: [serving.row(body.model, p.text, p.ids, params.max_tokens) for p in prompts])
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def emit(delta):
            loop.call_soon_threadsafe(queue.put_nowait, delta)

        sequences = [Sequence(row, params, p * body.n + j, emit, TextStream(tokenizer, params.stop))
                     for p, row in enumerate(rows) for j in range(body.n)]
        states = {seq.index: ChoiceState(seq.index, seq.index // body.n) for seq in sequences}
        serving.scheduler.submit(*sequences)
        head = {"id": f"{'chatcmpl' if isinstance(shape, ChatShape) else 'cmpl'}-{uuid.uuid4().hex[:24]}",
                "created": int(time.time()), "model": body.model}
        prompt_tokens = sum(len(p.ids) for p in prompts)
        if body.stream:
            stream = _stream(queue, states, shape, head, prompt_tokens if body.stream_options.include_usage else None, sequences)
            return StreamingResponse(stream, media_type="text/event-stream")
        try:
            async for _ in _deltas(queue, states):
                pass
        finally:
            _cancel(sequences)
        return {**head, "object": shape.object, "choices": [shape.choice(states[i]) for i in sorted(states)],
                "usage": _usage(prompt_tokens, states)}

    async def _deltas(queue: asyncio.Queue, states: dict[int, ChoiceState]):
        """(choice, its new text) as deltas arrive, until every choice is done; an error or a timeout raises."""
        unfinished = len(states)
        while unfinished:
            delta = await asyncio.wait_for(queue.get(), serving.request_timeout_s)
            if delta.error is not None:
                raise delta.error
            state = states[delta.index]
            text = state.add(delta)
            unfinished -= delta.finish_reason is not None
            yield state, text

    async def _stream(queue, states: dict[int, ChoiceState], shape, head: dict, usage_after: int | None, sequences):
        """Server-sent events: a chunk per piece of new text (one choice each), then the usage if asked, then [DONE]."""
        def event(choices: list[dict], **extra) -> str:
            return f"data: {json.dumps({**head, 'object': shape.chunk_object, 'choices': choices, **extra})}\n\n"
        try:
            for state in states.values():
                if (opening := shape.opening(state)) is not None:
                    state.opened = True
                    yield event([opening])
            async for state, text in _deltas(queue, states):
                if shape.chunk_due(state, text):
                    yield event([shape.piece(state, text)])
                    state.opened, state.pending = True, []
            if usage_after is not None:
                yield event([], usage=_usage(usage_after, states))
        except Exception as error:  # noqa: BLE001 -- any failure still ends the stream with an error event and [DONE]
            timed_out = isinstance(error, asyncio.TimeoutError)
            message = (f"no token within the {serving.request_timeout_s:g} s limit" if timed_out
                       else f"generation failed: {str(error) or type(error).__name__}")
            yield f"data: {json.dumps({'error': {'message': message}})}\n\n"
        finally:
            _cancel(sequences)
        yield "data: [DONE]\n\n"


def _usage(prompt_tokens: int, states: dict[int, ChoiceState]) -> dict:
    completion_tokens = sum(state.generated for state in states.values())
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _cancel(sequences: list[Sequence]) -> None:
    """The request is over (answered, failed, timed out, or its client left): its unfinished choices leave the batch."""
    for seq in sequences:
        seq.cancelled = True
