"""The HTTP API, FastAPI: OpenAI's POST /v1/audio/speech, the voices, the models, /health and the page at /.

    GET  /                     the page (page.html): type, pick a voice, clone one, listen as it streams
    GET  /health               200 {"status": "ok"} once the model is loaded; 503 {"status": "loading"} before
    GET  /v1/models            OpenAI's model list: this server's model, under its own name and OpenAI's
    POST /v1/audio/speech      OpenAI's request (speech.py) -> audio, whole or streamed (formats.py)
    GET  /v1/voices            {"presets": {"English": [names]}, "cloned": [{"id", "name"}], "openai": {name: preset},
                               "random": the name for no voice prompt}
    POST /v1/voices            multipart `file` (a recording) and optional `name` -> {"id", "name"}
    DELETE /v1/voices/{id}     -> {"id", "object": "voice", "deleted": true}

Every error is OpenAI's JSON ({"error": {"message", "type", "param", "code"}}). /v1/ needs the API key when
one is set (Authorization: Bearer KEY). Bodies are bounded before they are read whole (413).
"""

import asyncio
import base64
import hmac
import json
import os
import secrets
import tempfile
from contextlib import asynccontextmanager
from dataclasses import replace

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..audio import AudioError, load_clip
from ..layout import SAMPLE_RATE
from ..longform import SILENCE, count_tokens, needs_segments, split_text
from ..settings import MAX_SEED, check_seed, defaults
from ..tokenizer import TextError
from ..voices import AUDIO_FILES, LANGUAGES, by_language, close_names
from .formats import Streamer, encode, media_type, offered
from .speech import OPENAI_VOICES, RANDOM_VOICE, ApiError, parse_speech
from .worker import Job, QueueFull

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
MAX_JSON = 1 << 20  # bytes of a JSON body: 4096 characters of text, escaped, fit many times over
MAX_UPLOAD = 25 << 20  # bytes of a recording to clone: minutes of CD-quality WAV (only the last 30 s are used)
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # names OpenAI code sends: all are this model


def error_response(e):
    return JSONResponse(e.body(), e.status, headers=e.headers)


class BodyLimit:
    """ASGI middleware: a body over its path's limit is a 413, said by Content-Length before it is read, or
    raised by the read that crosses the limit (a chunked body has no Content-Length)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = MAX_UPLOAD if scope["path"] == "/v1/voices" else MAX_JSON
        too_large = ApiError(413, f"the body is over {limit >> 20} MB, the most this server reads", None, "too_large")
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await error_response(too_large)(scope, receive, send)
        seen = 0

        async def bounded():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large
            return message

        await self.app(scope, bounded, send)


def create_app(worker, store, model_name, api_key=None, clone_options=None):
    """The app around a started Worker (worker.py) and a VoiceStore (store.py)."""
    formats = offered()
    default_format = "mp3" if "mp3" in formats else "wav"  # OpenAI's default, where libsndfile writes it

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.stop()  # uvicorn has finished the requests in flight

    app = FastAPI(title="nanobark", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit)
    app.add_exception_handler(ApiError, lambda request, e: error_response(e))

    @app.exception_handler(HTTPException)
    async def http_error(request, e):  # no such route (404), wrong method (405)
        return error_response(
            ApiError(e.status_code, str(e.detail), None, "not_found" if e.status_code == 404 else None)
        )

    @app.exception_handler(Exception)
    async def server_error(request, e):  # a generation that failed (logged by the worker), or a bug
        return error_response(ApiError(500, f"{type(e).__name__}: {e}", None, "server_error"))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e):
        return error_response(ApiError(400, str(e.errors()[0].get("msg", e)), None, "invalid_value"))

    def check_key(request: Request):
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "missing or wrong API key: send `Authorization: Bearer KEY`", None, "invalid_api_key")

    def model():
        """The loaded Bark, or a 503 while it loads (or if it failed to)."""
        if worker.error is not None:
            raise ApiError(503, f"the model failed to load: {worker.error}", None, "model_failed")
        if not worker.ready.is_set():
            raise ApiError(
                503, "the model is still loading; retry in a few seconds", None, "loading", {"Retry-After": "5"}
            )
        return worker.bark

    def preset_names(bark):
        return bark.presets.names() if bark.presets is not None else []

    def resolve_voice(bark, name):
        """A cloned voice's id, an OpenAI name or a preset -> the voice dict; "random" -> None (no voice prompt:
        a speaker of the seed's choosing, as the command without --voice); else a 400 with close names."""
        if name == RANDOM_VOICE:
            return None
        preset = OPENAI_VOICES.get(name, name)
        if store.has(preset):
            return store.load(preset)
        names = preset_names(bark)
        if preset in names:
            try:
                return bark.load_voice(preset)
            except ConnectionError as e:  # a preset not downloaded yet, and the Hub out of reach
                raise ApiError(503, str(e), "voice", "voice_unavailable") from None
        known = names + list(OPENAI_VOICES) + [v["id"] for v in store.list()] + [RANDOM_VOICE]
        hint = close_names(name, known)
        raise ApiError(400, f"unknown voice {name!r}; {hint} (GET /v1/voices lists them)", "voice", "voice_not_found")

    def plan(bark, s, loop):
        """A checked Speech -> (Job, samples of silence after each segment but the last, text tokens).
        A text over one generation's 256 tokens is spoken in segments, as the command does."""
        voice = resolve_voice(bark, s.voice)
        n_tokens = count_tokens(s.text, bark.tokenizer)
        long = s.long or needs_segments(n_tokens)
        try:
            texts = split_text(s.text, bark.tokenizer) if long else [s.text]
        except TextError as e:
            raise ApiError(400, str(e), "input") from None
        seed = s.seed if s.seed is not None else secrets.randbelow(MAX_SEED - len(texts) + 2)
        try:
            check_seed(seed, n=len(texts))  # segment i uses seed + i
        except ValueError as e:
            raise ApiError(400, str(e), "seed") from None
        settings = replace(defaults(long), **s.overrides)
        gap = round((SILENCE if s.silence is None else s.silence) * SAMPLE_RATE) if long else 0
        return Job(texts, voice, settings, seed, loop), gap, n_tokens

    def with_gap(job, i, audio, gap):
        last = i == len(job.texts) - 1
        return audio if last or not gap else np.concatenate([audio, np.zeros(gap, np.float32)])

    async def whole(job, gap, request):
        """All the segments' audio joined; if the client leaves first, the job is cancelled -> None."""

        async def gather():
            return np.concatenate([with_gap(job, i, a, gap) async for i, a in job.segments()])

        async def left():
            while not await request.is_disconnected():
                await asyncio.sleep(0.25)

        work, watch = asyncio.ensure_future(gather()), asyncio.ensure_future(left())
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if not work.done():
            work.cancel()
            worker.cancel(job)
            return None
        return work.result()

    async def streamed(job, gap, fmt):
        """The response's bytes, a piece per segment as it is decoded; a client that leaves cancels the job."""
        encoder, finished = Streamer(fmt), False
        try:
            async for i, audio in job.segments():
                yield encoder.write(with_gap(job, i, audio, gap))
            yield encoder.close()
            finished = True
        finally:
            if not finished:
                worker.cancel(job)

    async def events(chunks, n_tokens):
        """OpenAI's server-sent events: speech.audio.delta with base64 audio, then speech.audio.done."""
        async for data in chunks:
            if data:
                delta = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                yield f"data: {json.dumps(delta)}\n\n"
        usage = {"input_tokens": n_tokens, "output_tokens": 0, "total_tokens": n_tokens}
        yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n"

    # -------------------------------------------------------------- routes

    @app.get("/", response_class=HTMLResponse)
    def page():
        if not os.path.isfile(PAGE):  # a checkout without the page: the API works all the same
            return "<!doctype html><title>nanobark</title><p>nanobark: the API is at POST /v1/audio/speech</p>"
        with open(PAGE, encoding="utf-8") as f:
            return f.read()

    @app.get("/health")
    def health():
        if worker.ready.is_set() and worker.error is None:
            return {"status": "ok", "model": model_name}
        return JSONResponse({"status": "failed" if worker.error else "loading", "model": model_name}, 503)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @v1.get("/models")
    def models():
        names = dict.fromkeys((model_name,) + OPENAI_MODELS)
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "nanobark"} for n in names],
        }

    @v1.post("/audio/speech")
    async def speech(request: Request):
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON: {e}", None, "invalid_json") from None
        s = parse_speech(body, formats, default_format)
        bark = model()
        job, gap, n_tokens = await run_in_threadpool(plan, bark, s, asyncio.get_running_loop())
        try:
            worker.submit(job)
        except QueueFull as e:
            raise ApiError(429, str(e), None, "queue_full", {"Retry-After": str(e.retry_after)}) from None
        headers = {"X-Nanobark-Seed": str(job.seed)}  # what makes an unseeded request again
        if s.stream is None:
            audio = await whole(job, gap, request)
            if audio is None:
                return Response(status_code=499)  # nobody is there to read it
            data = await run_in_threadpool(encode, audio, s.format)
            return Response(data, media_type=media_type(s.format), headers=headers)
        chunks = streamed(job, gap, s.format)
        if s.stream == "sse":
            return StreamingResponse(events(chunks, n_tokens), media_type="text/event-stream", headers=headers)
        return StreamingResponse(chunks, media_type=media_type(s.format), headers=headers)

    @v1.get("/voices")
    def list_voices():
        names = preset_names(model())
        openai = {alias: preset for alias, preset in OPENAI_VOICES.items() if preset in names}
        presets = {LANGUAGES.get(code, "Other"): group for code, group in by_language(names).items()}
        return {"presets": presets, "cloned": store.list(), "openai": openai, "random": RANDOM_VOICE}

    @v1.post("/voices")
    async def add_voice(request: Request):
        model()
        form = await request.form(max_files=1, max_fields=1)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "send the recording as a multipart file field named `file`", "file", "missing_file")
        stem, ext = os.path.splitext(os.path.basename(upload.filename or ""))
        data = await upload.read()
        clip = await run_in_threadpool(read_clip, data, ext, upload.filename)
        try:  # the recording was checked (read_clip); what fails now is the recording's codes, or the server
            voice = await asyncio.wrap_future(worker.call(lambda bark: bark.clone_voice(clip, **(clone_options or {}))))
        except AudioError as e:  # e.g. codes all 0: a recording the encoder cannot take
            raise ApiError(400, f"cannot use this recording: {e}", "file", "bad_audio") from None
        except Exception as e:
            raise ApiError(500, f"cloning failed: {e}", None, "cloning_failed") from None
        return await run_in_threadpool(store.add, voice, form.get("name") or stem)

    @v1.delete("/voices/{voice_id}")
    def delete_voice(voice_id: str):
        if not store.delete(voice_id):
            raise ApiError(
                404, f"no cloned voice {voice_id!r} (GET /v1/voices lists them)", "voice_id", "voice_not_found"
            )
        return {"id": voice_id, "object": "voice", "deleted": True}

    app.include_router(v1)
    return app


def read_clip(data, ext, filename=None):
    """An uploaded recording's bytes -> the (24 kHz, 16 kHz) clip load_clip makes, or a 400 saying why not
    (naming the upload, never the server's temporary file)."""
    suffix = ext.lower() if ext.lower() in AUDIO_FILES else ".wav"
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        try:
            return load_clip(f.name)
        except (ValueError, RuntimeError) as e:  # AudioError, or libsndfile's "not a known format"
            message = str(e).replace(f.name, repr(filename or "the upload"))
            raise ApiError(400, f"cannot use this recording: {message}", "file", "bad_audio") from None
