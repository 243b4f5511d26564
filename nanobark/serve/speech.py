"""What a speech request may say: OpenAI's fields and nanobark's own (`extra_body`), each checked -> a Speech.

    {"model": "tts-1", "input": "Hello!", "voice": "alloy", "response_format": "wav", "seed": 1}

A bad field is an ApiError: status 400 and OpenAI's error shape, naming the field. The checks of nanobark's
fields are the library's own (Settings, check_seed, check_silence), so a request is refused for exactly
what the command refuses.
"""

from dataclasses import dataclass, fields
from typing import Optional

from ..longform import check_silence
from ..settings import Settings, check_seed
from ..tokenizer import match_slow_cleanup

MAX_INPUT = 4096  # characters: OpenAI's limit on `input`
# OpenAI's voice names, so that code written for OpenAI runs as it is. Bark's English presets have one
# woman's voice (9); the others are men's voices of different pitch and pace.
OPENAI_VOICES = {
    "alloy": "v2/en_speaker_6",
    "ash": "v2/en_speaker_1",
    "ballad": "v2/en_speaker_2",
    "coral": "v2/en_speaker_9",
    "echo": "v2/en_speaker_3",
    "fable": "v2/en_speaker_5",
    "onyx": "v2/en_speaker_0",
    "nova": "v2/en_speaker_9",
    "sage": "v2/en_speaker_4",
    "shimmer": "v2/en_speaker_9",
    "verse": "v2/en_speaker_7",
    "marin": "v2/en_speaker_9",
    "cedar": "v2/en_speaker_8",
}
RANDOM_VOICE = "random"  # no voice prompt: the speaker is the seed's choice, as without the command's --voice
OPENAI_FIELDS = ("model", "input", "voice", "response_format", "speed", "stream_format", "instructions")
SETTINGS_FIELDS = tuple(f.name for f in fields(Settings))  # text_temp, waveform_temp, fine_temp, top_k, ...
NANOBARK_FIELDS = ("seed", "silence", "long") + SETTINGS_FIELDS
STREAM_FORMATS = ("audio", "sse")


class ApiError(Exception):
    """An error as OpenAI sends it: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    TYPES = {401: "authentication_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}

    def __init__(self, status, message, param=None, code=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def body(self):
        kind = self.TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def bad(message, param, code="invalid_value"):
    return ApiError(400, message, param, code)


@dataclass(frozen=True)
class Speech:
    text: str
    voice: str  # as sent: a preset, a cloned voice's id, or an OpenAI name
    format: str
    stream: Optional[str]  # None: one whole file; "audio": bytes as each segment is decoded; "sse": events
    overrides: dict  # Settings fields the request set
    seed: Optional[int]
    silence: Optional[float]  # seconds between segments; None: long form's default
    long: bool  # speak in segments even when the text fits one generation (the command's --long)


def parse_speech(body, formats, default_format):
    """The JSON body (a dict) -> Speech, or an ApiError naming the first bad field. `formats`: those offered."""
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object with `input` and `voice`", None, "invalid_json")
    unknown = [k for k in body if k not in OPENAI_FIELDS + NANOBARK_FIELDS]
    if unknown:
        fields_ = ", ".join(OPENAI_FIELDS + NANOBARK_FIELDS)
        raise bad(f"unknown field {unknown[0]!r}; the fields are: {fields_}", unknown[0], "unknown_field")
    text = _text(body.get("input"))
    voice = body.get("voice")
    if isinstance(voice, dict):  # OpenAI's custom voice: {"id": "voice_1234"}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise bad("`voice` is required: a preset (v2/en_speaker_6), a cloned voice's id, or an OpenAI name", "voice")
    fmt = body.get("response_format", default_format)
    if fmt not in formats:
        raise bad(
            f"response_format {fmt!r} is not offered; this server writes: {', '.join(formats)}", "response_format"
        )
    stream = body.get("stream_format")
    if stream is not None and stream not in STREAM_FORMATS:
        raise bad(f"stream_format must be 'audio' or 'sse', got {stream!r}", "stream_format")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or speed != 1:
        raise bad(
            f"speed {speed!r} is not supported: Bark speaks at its own pace and nanobark does not resample "
            "(which would change the pitch); send 1.0 or leave it out",
            "speed",
            "unsupported_value",
        )
    for name in ("model", "instructions"):  # any model name is this server's model; Bark takes no instructions
        if body.get(name) is not None and not isinstance(body[name], str):
            raise bad(f"`{name}` must be a string", name)
    overrides = {k: body[k] for k in SETTINGS_FIELDS if k in body}
    return Speech(text, voice, fmt, stream, overrides, *_nanobark_fields(body, overrides))


def _text(text):
    if not isinstance(text, str):
        raise bad("`input` is required: the text to speak, a string", "input")
    if len(text) > MAX_INPUT:
        raise bad(f"`input` is {len(text):,} characters, over the {MAX_INPUT:,} allowed; split it", "input", "too_long")
    if not match_slow_cleanup(text).strip():  # what the tokenizer keeps: nothing but spaces
        raise bad("`input` has nothing to say: it is empty, or only spaces and control characters", "input", "empty")
    return text


def _nanobark_fields(body, overrides):
    """The Settings fields, checked by Settings' own checks; seed, silence, long -> checked values."""
    for f in fields(Settings):
        if f.name in overrides:
            try:
                f.metadata["check"](overrides[f.name], name=f.name)  # the message names the field
            except (ValueError, TypeError) as e:
                raise bad(str(e), f.name) from None
    checks = {"seed": check_seed, "silence": check_silence}
    values = []
    for name in ("seed", "silence"):
        try:
            values.append(checks[name](body.get(name), name=name) if body.get(name) is not None else None)
        except ValueError as e:
            raise bad(str(e), name) from None
    long = body.get("long", False)
    if not isinstance(long, bool):
        raise bad(f"long must be true or false, got {long!r}", "long")
    return (*values, long)
