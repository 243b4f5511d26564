"""Response formats: OpenAI's names -> soundfile's, their media types, and the encoders, whole or streamed.

A whole response is the file `nanobark TEXT --out x.wav` writes, byte for byte (same encoder, same samples).
A streamed one is sent as each segment is decoded, so it cannot say its length up front:

- pcm: raw 16-bit little-endian mono at 24 kHz; streamed or not, the same bytes.
- wav: the same 44-byte header with its two sizes set to 0xFFFFFFFF ("until the end", as OpenAI streams
  WAV), then the same samples as the whole file.
- flac, mp3: libsndfile's encoder, its bytes sent as they come; what it rewrites at the end (FLAC's total
  length and MD5, MP3's Xing header) was already sent, so those fields stay "unknown". Players do not mind.
- opus: libsndfile holds the Ogg pages until the end, so a streamed opus arrives in one piece, last.
"""

import io
import struct

import numpy as np
import soundfile as sf

from ..audio_out import pcm16, samples_for, write_sound
from ..layout import SAMPLE_RATE

# OpenAI's name: (soundfile's format, subtype, media type); pcm has no container. aac: libsndfile has no encoder.
FORMATS = {
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "pcm": (None, None, "audio/pcm"),
}
UNKNOWN_SIZE = 0xFFFFFFFF


def offered():
    """The formats the installed libsndfile writes (soundfile >= 0.12 bundles one with MP3 and Opus)."""
    return [name for name, (fmt, subtype, _) in FORMATS.items() if fmt is None or subtype in sf.available_subtypes(fmt)]


def media_type(name):
    return FORMATS[name][2]


def encode(audio, name):
    """float32 audio at 24 kHz -> the bytes of one whole file of format `name`."""
    fmt, subtype, _ = FORMATS[name]
    if fmt is None:
        return pcm16(audio).tobytes()
    out = io.BytesIO()
    write_sound(out, audio, SAMPLE_RATE, fmt, subtype)
    return out.getvalue()


def wav_stream_header():
    """A 16-bit mono 24 kHz WAV header whose RIFF and data sizes say "unknown": 0xFFFFFFFF."""
    fmt = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)  # PCM, mono, rate, bytes/s, align, bits
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", UNKNOWN_SIZE))
    )


class Streamer:
    """One streamed response's encoder: write(segment audio) -> the bytes to send now; close() -> the rest."""

    def __init__(self, name):
        self.fmt, self.subtype, _ = FORMATS[name]
        self.header = wav_stream_header() if name == "wav" else b""
        self.raw = name in ("wav", "pcm")  # the samples themselves, no encoder
        if not self.raw:
            self.buffer, self.sent = io.BytesIO(), 0
            self.file = sf.SoundFile(self.buffer, "w", SAMPLE_RATE, 1, format=self.fmt, subtype=self.subtype)

    def write(self, audio):
        if self.raw:
            out, self.header = self.header + pcm16(audio).tobytes(), b""
            return out
        self.file.write(samples_for(self.subtype, np.asarray(audio, np.float32)))
        return self._new_bytes()

    def close(self):
        if self.raw:
            return self.header  # nothing written: a header alone
        self.file.close()
        return self._new_bytes()

    def _new_bytes(self):
        data = self.buffer.getvalue()
        out, self.sent = data[self.sent :], len(data)
        return out
