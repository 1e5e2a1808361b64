"""The HTTP server for a ViT: health, the prompts, and POST /v1/classify with images sent as base64 PNG or JPEG.
`create_app` (app.py) hands over to it when the frozen model is a ViT. Requests run one at a time (each batches its
own images): a prompt here may change the model's weights (LoRA), so prompts do not share forward passes."""
from __future__ import annotations

import asyncio
import base64
import binascii
import threading

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..backbones import FrozenViT
from ..errors import SoftPromptError
from ..tasks.images import ImageTooLarge, UnsupportedImage, open_image
from .store import PromptStore, UnknownModel

MAX_IMAGES = 32
MAX_BODY_BYTES = 16_000_000
FORMATS = ("PNG", "JPEG")


class ImageClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=200, description="a prompt file's name in the prompts directory")
    image: str | list[str] = Field(description=f"one image or up to {MAX_IMAGES}: base64 of a PNG or JPEG file (a data: URL is fine)")


def decode(index: int, text: str):
    """The index-th image of a request as an RGB PIL image; a SoftPromptError (400; UnsupportedImage for a format other
    than PNG/JPEG, ImageTooLarge over the pixel limit) names which image is wrong and how."""
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SoftPromptError(f"image {index}: not valid base64 ({error})") from error
    try:
        return open_image(data, FORMATS)
    except SoftPromptError as error:
        raise type(error)(f"image {index}: {error}") from error


def create_image_app(base: FrozenViT, prompts_dir, request_timeout_s: float = 60.0, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    store = PromptStore(prompts_dir, base, shares_batches=False)
    one_at_a_time = threading.Lock()  # one pass uses every core; two at once only slow each other down
    app = FastAPI(title="softprompt (images)")
    app.state.store = store

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        if int(request.headers.get("content-length") or 0) > max_body_bytes:
            return _error(413, f"request body over the {max_body_bytes}-byte limit")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        return _error(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))

    @app.exception_handler(SoftPromptError)
    async def bad_request(request: Request, error: SoftPromptError):
        statuses = {UnknownModel: 404, UnsupportedImage: 415, ImageTooLarge: 413}
        return _error(statuses.get(type(error), 400), str(error))

    @app.exception_handler(asyncio.TimeoutError)
    async def timed_out(request: Request, error):
        return _error(504, f"the request took longer than the server's {request_timeout_s:g} s limit")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": base.name, "prompts": len(store.names())}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "softprompt"} for n in store.names()]}

    @app.post("/v1/classify")
    async def classify(body: ImageClassifyRequest):
        sources = [body.image] if isinstance(body.image, str) else body.image
        if not 1 <= len(sources) <= MAX_IMAGES:
            raise SoftPromptError(f"image: give 1 to {MAX_IMAGES} images, not {len(sources)}")
        images = await asyncio.to_thread(lambda: [decode(i, s) for i, s in enumerate(sources)])
        tuned = await asyncio.to_thread(store.get, body.model)
        if tuned is None:
            raise SoftPromptError(f"model {body.model!r} is the bare ViT, which has no classes: name a prompt file")

        def run():
            with one_at_a_time:
                return tuned.classify(images)
        results = await asyncio.wait_for(asyncio.to_thread(run), request_timeout_s)
        return {"object": "list", "model": body.model, "data": [{"index": i, **r} for i, r in enumerate(results)]}

    return app


def _error(status: int, message: str) -> JSONResponse:
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)
