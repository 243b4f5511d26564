"""A `nanobark serve` subprocess and a client for it: shared by test_serve.py and test_serve_page.py."""

import http.client
import json
import os
import re

from helpers import HANG, python, wait_for

KEY = "test-key"
# three sentences that the tiny model's tokenizer packs into three segments (37, 43 and 46 tokens)
THREE = (
    "The dog ran to the park today and then it ran back home again. The cat slept in the sun all day long "
    "and did not wake up once. The bird sang a song at night and all the other birds sang with it."
)

# over 256 tokens: 15 segments; a request that is still being made when the test acts on it (a fast machine
# makes short segments faster than a client reads the first one)
LONG = " ".join([THREE] * 5)


class Served:
    """A running server: its URL, an openai client for it, and raw requests for what the client cannot send."""

    def __init__(self, port, key=KEY, log=None):
        self.port, self.key, self.log_path = port, key, log
        import openai  # the test extra; the tests that start a server skip without it

        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key or "none", max_retries=0)

    def log(self):
        with open(self.log_path, encoding="utf-8") as f:
            return f.read()

    def request(self, method, path, body=b"", headers=None, key=True):
        """-> (status, headers dict, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HANG)
        headers = {"Content-Type": "application/json", **(headers or {})}
        if key and self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        conn.close()
        return out

    def speak(self, **fields):
        """POST /v1/audio/speech with these JSON fields -> (status, headers, body)."""
        return self.request("POST", "/v1/audio/speech", json.dumps(fields).encode())


def start(converted, folder, *flags):
    """`nanobark serve` as a subprocess -> (Popen, Served), once its model is loaded."""
    log = os.path.join(folder, "server.log")
    err = open(log, "w")
    voices = os.path.join(folder, "voices")
    p = python(
        "-m", "nanobark", "serve", "--model", converted, "--port", "0", "--voices-dir", voices, *flags, stderr=err
    )
    err.close()
    wait_for(lambda: "ready at" in open(log).read() or p.poll() is not None)
    found = re.search(r"ready at http://127\.0\.0\.1:(\d+)", open(log).read())
    assert found, open(log).read()
    return p, Served(int(found[1]), KEY if "--api-key" in flags else None, log)
