"""Audio out: float samples -> 16-bit PCM, and one encoded file (WAV, FLAC, Ogg, MP3), for the command and the server.

No torch here: the command imports this before torch has loaded.
"""

import numpy as np


def pcm16(audio):
    """Float samples -> 16-bit little-endian PCM, for the .wav and .flac files and for --out -: x * 32768
    rounded down, as libsndfile converts floats, and clipped (beyond [-1, 1], int16 would wrap into loud clicks)."""
    return np.clip(np.floor(np.asarray(audio, np.float32) * 32768), -32768, 32767).astype("<i2")


def write_sound(file, audio, sample_rate, format, subtype):
    """`audio` encoded as `format`/`subtype` (soundfile's names) into `file`, a path or a binary file object."""
    import soundfile as sf

    sf.write(file, samples_for(subtype, audio), sample_rate, format=format, subtype=subtype)


def samples_for(subtype, audio):
    """What a file of `subtype` is given: pcm16's samples for 16-bit PCM; the floats themselves for the lossy
    ones (Vorbis, Opus, MP3), which encode them."""
    return pcm16(audio) if subtype == "PCM_16" else audio
