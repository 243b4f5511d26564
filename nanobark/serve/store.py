"""The cloned voices, one folder (--voices-dir): VOICE_ID.npz (the voice, as `nanobark clone` writes it) and
VOICE_ID.json ({"name"}: what the person called it).

Ids are made here (voice_ + 16 hex digits), never taken from a client as a path: a request can only name
a voice this store listed. Both files are written atomically, the .npz first, so a voice is listed (its
.json there) only once it is whole; deleting removes the .json first.
"""

import json
import os
import re
import secrets
import unicodedata

from ..files import read_json, remove_temp_files, write_atomic
from ..voices import load_voice, save_voice

VOICE_ID = re.compile(r"voice_[0-9a-f]{16}")
MAX_NAME = 64  # characters of a voice's name


def clean_name(name, default):
    """A name fit for a list: control characters dropped, spaces joined, at most MAX_NAME characters."""
    name = "".join(c for c in str(name or "") if not unicodedata.category(c).startswith("C"))
    return " ".join(name.split())[:MAX_NAME] or default


class VoiceStore:
    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        remove_temp_files(folder)  # what a killed server left half-written
        self.folder = folder

    def _path(self, voice_id, ext):
        return os.path.join(self.folder, voice_id + ext)

    def has(self, voice_id):
        return bool(VOICE_ID.fullmatch(voice_id)) and os.path.isfile(self._path(voice_id, ".json"))

    def list(self):
        """[{"id", "name"}] of every voice, oldest first."""
        ids = [n[: -len(".json")] for n in os.listdir(self.folder) if n.endswith(".json")]
        ids = [i for i in ids if self.has(i)]
        ids.sort(key=lambda i: os.path.getmtime(self._path(i, ".json")))
        return [{"id": i, "name": read_json(self._path(i, ".json"), "voice name")["name"]} for i in ids]

    def load(self, voice_id):
        """The voice dict of a listed id (validated, as any voice file)."""
        return load_voice(self._path(voice_id, ".npz"))

    def add(self, voice, name):
        """Store a voice dict under a new id -> {"id", "name"}."""
        voice_id = "voice_" + secrets.token_hex(8)
        save_voice(self._path(voice_id, ".npz"), voice["semantic_prompt"], voice["coarse_prompt"], voice["fine_prompt"])
        entry = {"id": voice_id, "name": clean_name(name, voice_id)}

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"name": entry["name"]}, f)

        write_atomic(self._path(voice_id, ".json"), write)
        return entry

    def delete(self, voice_id):
        """Remove a voice -> whether there was one."""
        if not self.has(voice_id):
            return False
        for ext in (".json", ".npz"):
            try:
                os.remove(self._path(voice_id, ext))
            except FileNotFoundError:  # deleted at the same time by another request
                pass
        return True
