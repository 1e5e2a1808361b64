"""The HTTP server: OpenAI-compatible completions and chat (with SSE streaming), classification, models
and health, over one frozen model and a directory of prompt files. It never asks which method a prompt uses."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..backbones import FrozenModel
from ..errors import SoftPromptError
from .mixed import Row
from .scheduler import Batcher
from .store import PromptStore, UnknownModel

MAX_TEXT_CHARS = 100_000
MAX_NEW_TOKENS = 1024


class ModelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields (top_p, n...) we do not use
    model: str = Field(min_length=1, max_length=200, description="a prompt file's name in the prompts directory, or the base model's name")


class Sampling(ModelRequest):
    max_tokens: int = Field(16, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 decodes greedily")
    stream: bool = False


class CompletionRequest(Sampling):
    prompt: str = Field(max_length=MAX_TEXT_CHARS)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_TEXT_CHARS)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1, max_length=256)


class ClassifyRequest(ModelRequest):
    input: str | list[str] = Field(description="one text or up to 64, formatted as in training")


def create_app(base: FrozenModel, prompts_dir, max_batch_size: int = 32, max_wait_ms: float = 5.0,
               request_timeout_s: float = 60.0, max_body_bytes: int = 1_000_000) -> FastAPI:
    if base.kind == "vision":  # a ViT classifies images: its own small app
        from .images import create_image_app

        return create_image_app(base, prompts_dir, request_timeout_s)
    store = PromptStore(prompts_dir, base)
    batcher = Batcher(base, max_batch_size, max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="softprompt", lifespan=lifespan)
    app.state.store, app.state.batcher = store, batcher

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if int(request.headers.get("content-length") or 0) > max_body_bytes:
            return _error(413, f"request body over the {max_body_bytes}-byte limit")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        # Name the field and the rule, never echo the input: it may hold text no response can encode (a lone surrogate).
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _error(422, problems.encode("utf-8", "backslashreplace").decode("utf-8"))

    @app.exception_handler(SoftPromptError)
    async def bad_request(request: Request, error: SoftPromptError):
        return _error(404 if isinstance(error, UnknownModel) else 400, str(error))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": base.name, "prompts": len(store.names()), "batches_run": batcher.batches_run}

    @app.get("/v1/models")
    async def models():
        names = [*store.names(), base.name]
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "softprompt"} for n in names]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        ids = base.tokenizer(body.prompt)["input_ids"]
        return await _generate(body, ids, body.prompt, "text_completion")

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        text = base.tokenizer.apply_chat_template([m.model_dump() for m in body.messages], add_generation_prompt=True, tokenize=False)
        ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
        return await _generate(body, ids, text, "chat.completion")

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest):
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not 1 <= len(texts) <= 64:
            raise SoftPromptError(f"input: give 1 to 64 texts, not {len(texts)}")
        tuned = await asyncio.to_thread(store.get, body.model)  # loading a file must not block the event loop
        if tuned is None:
            raise SoftPromptError(f"model {body.model!r} is the bare base model, which has no label words: classify needs a prompt trained on a classification task")
        try:
            labels = tuned.label_words()
        except SoftPromptError as error:
            raise SoftPromptError(f"model {body.model!r}: {error}") from error
        choices = [base.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
        room = max(len(c) for c in choices)
        rows = await asyncio.to_thread(lambda: [_row(store, tuned, body.model, text, base.tokenizer(text)["input_ids"], room) for text in texts])
        normalized = tuned.info.get("length_normalized", False)
        scores = await asyncio.wait_for(asyncio.gather(*(batcher.score(row, choices, normalized) for row in rows)), request_timeout_s)
        data = []
        for index, probabilities in enumerate(torch.softmax(torch.stack(scores), -1)):
            data.append({"index": index, "label": labels[int(probabilities.argmax())].strip(),
                         "probabilities": {label.strip(): float(p) for label, p in zip(labels, probabilities)}})
        return {"object": "list", "model": body.model, "data": data}

    async def _generate(body: Sampling, ids: list[int], text: str, kind: str):
        row = await asyncio.to_thread(lambda: _row(store, store.get(body.model), body.model, text, ids, body.max_tokens))
        job = await batcher.generate(row, body.max_tokens, body.temperature)
        head = {"id": f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex[:24]}",
                "created": int(time.time()), "model": body.model}
        if body.stream:
            return StreamingResponse(_stream(job, head, kind), media_type="text/event-stream")
        tokens, reason = [], "length"
        async for event, value in _events(job):
            if event == "token":
                tokens.append(value)
            else:
                reason = value
        text_out = base.tokenizer.decode(tokens, skip_special_tokens=True)
        choice = {"index": 0, "finish_reason": reason}
        choice.update({"message": {"role": "assistant", "content": text_out}} if kind.startswith("chat") else {"text": text_out})
        usage = {"prompt_tokens": len(ids), "completion_tokens": len(tokens), "total_tokens": len(ids) + len(tokens)}
        return {**head, "object": kind, "choices": [choice], "usage": usage}

    async def _events(job):
        """The job's ("token", id) events, then one ("end", finish_reason); errors and timeouts raise."""
        while True:
            event, value = await asyncio.wait_for(job.tokens.get(), request_timeout_s)
            if event == "error":
                raise value
            yield event, value
            if event == "end":
                return

    async def _stream(job, head: dict, kind: str):
        """Server-sent events: one chunk per piece of new text, a last chunk with the finish reason, [DONE]."""
        chat, tokens, sent = kind.startswith("chat"), [], ""
        def chunk(piece: str | None, reason: str | None) -> str:
            body = {"delta": {"content": piece} if piece is not None else {}} if chat else {"text": piece or ""}
            payload = {**head, "object": "chat.completion.chunk" if chat else "text_completion",
                       "choices": [{"index": 0, **body, "finish_reason": reason}]}
            return f"data: {json.dumps(payload)}\n\n"
        try:
            async for event, value in _events(job):
                if event == "end":
                    yield chunk(None, value)
                    break
                tokens.append(value)
                text = base.tokenizer.decode(tokens, skip_special_tokens=True)
                if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                    yield chunk(text[len(sent):], None)
                    sent = text
        except Exception as error:  # noqa: BLE001 -- any failure still ends the stream with an error event and [DONE]
            timed_out = isinstance(error, asyncio.TimeoutError)
            message = f"no token within the {request_timeout_s:g} s limit" if timed_out else f"generation failed: {str(error) or type(error).__name__}"
            yield f"data: {json.dumps({'error': {'message': message}})}\n\n"
        yield "data: [DONE]\n\n"

    @app.exception_handler(asyncio.TimeoutError)
    async def timed_out(request: Request, error):
        return _error(504, f"the request took longer than the server's {request_timeout_s:g} s limit")

    return app


def _row(store: PromptStore, tuned, name: str, text: str, ids: list[int], room: int) -> Row:
    """The request as a batch row, refusing an input that would not fit the model's context."""
    prompt_tokens = store.prompt_length(name)
    limit = store.base.max_length
    if len(ids) + prompt_tokens + room > limit:
        raise SoftPromptError(f"input is {len(ids)} tokens; with the prompt's {prompt_tokens} and {room} to generate or score "
                              f"it exceeds the model's context of {limit} tokens")
    return Row(ids, tuned, tuned.features([text]) if tuned is not None else None)


def _error(status: int, message: str) -> JSONResponse:
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # names may hold unencodable text
    return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)
