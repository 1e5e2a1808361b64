"""The HTTP server: OpenAI-compatible completions and chat (generation_routes), classification, models,
health and Prometheus metrics, over one frozen model and a directory of prompt files, with optional API
keys. It never asks which method a prompt uses."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..backbones import FrozenModel
from ..errors import SoftPromptError
from ..runtime.prefix_cache import PREFIX_CACHE
from .access import ApiKeys
from .blackbox import mount_blackbox
from .context import Serving
from .generation_routes import add_generation_routes
from .metrics import Metrics
from .scheduler import Scheduler
from .schemas import ClassifyRequest, unsupported_parameter
from .sequences import ScoreJob
from .store import PromptStore, UnknownModel

ENDPOINTS = frozenset({"/v1/completions", "/v1/chat/completions", "/v1/classify", "/v1/models", "/health", "/metrics"})


def create_app(base: FrozenModel, prompts_dir, max_batch_size: int = 32, max_wait_ms: float = 5.0,
               request_timeout_s: float = 60.0, max_body_bytes: int = 1_000_000, api_keys: list[str] | None = None,
               blackbox: bool = False, scheduler_class: type[Scheduler] = Scheduler) -> FastAPI:
    """The app; `scheduler_class` lets a benchmark put a baseline scheduling policy in its place."""
    if base.kind == "vision":  # a ViT classifies images: its own small app
        from .images import create_image_app

        return create_image_app(base, prompts_dir, request_timeout_s)
    metrics = Metrics()
    scheduler = scheduler_class(base, max_batch_size, max_wait_ms, metrics)
    metrics.watch(scheduler, PREFIX_CACHE)
    serving = Serving(base, PromptStore(prompts_dir, base), scheduler, metrics, request_timeout_s)
    keys = ApiKeys(api_keys or [])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        scheduler.start()
        yield
        scheduler.stop()

    app = FastAPI(title="softprompt", lifespan=lifespan)
    app.state.store, app.state.scheduler = serving.store, scheduler
    mount_blackbox(app, base, blackbox, max_body_bytes)

    @app.middleware("http")
    async def gate(request: Request, call_next):
        """Key, then size, then the request; every answer counted and timed to its last byte."""
        started, path = time.perf_counter(), request.url.path
        if not keys.allow(path, request.headers.get("authorization")):
            response = _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"})
        elif int(request.headers.get("content-length") or 0) > max_body_bytes:
            response = _error(413, f"request body over the {max_body_bytes}-byte limit")
        else:
            response = await call_next(request)
        return _observed(response, metrics, path if path in ENDPOINTS else "other", started)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        unsupported = [unsupported_parameter(e["loc"]) for e in error.errors() if e["type"] == "extra_forbidden"]
        if unsupported:
            return _error(400, "; ".join(unsupported))
        # Name the field and the rule, never echo the input: it may hold text no response can encode (a lone surrogate).
        return _error(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))

    @app.exception_handler(SoftPromptError)
    async def bad_request(request: Request, error: SoftPromptError):
        return _error(404 if isinstance(error, UnknownModel) else 400, str(error))

    @app.exception_handler(asyncio.TimeoutError)
    async def timed_out(request: Request, error):
        return _error(504, f"the request took longer than the server's {request_timeout_s:g} s limit")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": base.name, "prompts": len(serving.store.names()), "batches_run": scheduler.batches_run}

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        names = [*serving.store.names(), base.name]
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "softprompt"} for n in names]}

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest):
        return await _classify(serving, body)

    add_generation_routes(app, serving)
    return app


async def _classify(serving: Serving, body: ClassifyRequest) -> dict:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not 1 <= len(texts) <= 64:
        raise SoftPromptError(f"input: give 1 to 64 texts, not {len(texts)}")
    tuned = await asyncio.to_thread(serving.store.get, body.model)  # loading a file must not block the event loop
    if tuned is None:
        raise SoftPromptError(f"model {body.model!r} is the bare base model, which has no label words: classify needs a prompt trained on a classification task")
    try:
        labels = tuned.label_words()
    except SoftPromptError as error:
        raise SoftPromptError(f"model {body.model!r}: {error}") from error
    tokenizer = serving.base.tokenizer
    choices = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    room = max(len(c) for c in choices)
    rows = await asyncio.to_thread(lambda: [serving.row(body.model, text, tokenizer(text)["input_ids"], room) for text in texts])
    normalized = tuned.info.get("length_normalized", False)
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in rows]
    serving.scheduler.submit(*(ScoreJob(row, choices, normalized, _settler(loop, future, future.set_result),
                                        _settler(loop, future, future.set_exception), future.done) for row, future in zip(rows, futures)))
    scores = await asyncio.wait_for(asyncio.gather(*futures), serving.request_timeout_s)
    data = []
    for index, probabilities in enumerate(torch.softmax(torch.stack(scores), -1)):
        data.append({"index": index, "label": labels[int(probabilities.argmax())].strip(),
                     "probabilities": {label.strip(): float(p) for label, p in zip(labels, probabilities)}})
    return {"object": "list", "model": body.model, "data": data}


def _settler(loop: asyncio.AbstractEventLoop, future: asyncio.Future, settle):
    """A function the scheduler thread calls to settle `future` on its loop (a no-op once nobody waits)."""
    def settle_once(value) -> None:
        if not future.done():
            settle(value)

    def from_thread(value) -> None:
        try:
            loop.call_soon_threadsafe(settle_once, value)
        except RuntimeError:  # the loop is closed: the request is long gone
            pass
    return from_thread


def _observed(response: Response, metrics: Metrics, endpoint: str, started: float) -> Response:
    """Count the response and time it when its last byte is sent (a stream ends long after its headers)."""
    def record() -> None:
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    body = getattr(response, "body_iterator", None)
    if body is None:
        record()
        return response

    async def timed():
        try:
            async for chunk in body:
                yield chunk
        finally:
            record()
    response.body_iterator = timed()
    return response


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # names may hold unencodable text
    return JSONResponse({"error": {"message": message, "code": status}}, status_code=status, headers=headers)
