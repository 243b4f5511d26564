"""`nanobark serve`: OpenAI's speech API over the tiny random model, driven by the official `openai` client.

The end-to-end tests start the command as a subprocess on 127.0.0.1 (port 0: the system picks one, the log
says which). The fast ones run the same app in this process (uvicorn on a thread), where a test can hold the
model's loading or fill the queue. Texts are short and --max-duration small: CI has two cores.
"""

import base64
import contextlib
import io
import json
import os
import re
import signal
import struct
import tempfile
import threading

import numpy as np
import pytest
import soundfile as sf

openai = pytest.importorskip("openai", reason="the serve tests need the test extra (openai, fastapi, uvicorn)")
uvicorn = pytest.importorskip("uvicorn")

from helpers import HANG, run, speech, wait_for  # noqa: E402
from nanobark import Bark  # noqa: E402
from nanobark.cli.serve import listen  # noqa: E402
from nanobark.serve.app import create_app  # noqa: E402
from nanobark.serve.store import VoiceStore  # noqa: E402
from nanobark.serve.worker import Job, QueueFull, Worker  # noqa: E402
from serving import KEY, LONG, THREE, Served, start  # noqa: E402

FAST = {"max_duration": 0.2}  # seconds of speech per segment at most: the tiny model's runs stay short


@pytest.fixture(scope="module")
def server(converted, tmp_path_factory):
    """One `nanobark serve` for the module: batches of up to 8, waiting 300 ms for company."""
    folder = str(tmp_path_factory.mktemp("serve"))
    p, served = start(converted, folder, "--api-key", KEY, "--max-batch", "8", "--max-wait-ms", "300")
    yield served
    p.send_signal(signal.SIGTERM)
    p.wait(HANG)


@contextlib.contextmanager
def in_process(load, folder, key=KEY, clone_options=None):
    """The app on a uvicorn thread in this process, its Worker loading with load() -> Served."""
    worker = Worker(load)
    app = create_app(worker, VoiceStore(os.path.join(folder, "voices")), "tiny", key, clone_options)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    worker.start()
    thread.start()
    wait_for(lambda: server.started)
    try:
        yield Served(sock.getsockname()[1], key)
    finally:
        server.should_exit = True
        thread.join(HANG)


@pytest.fixture(scope="module")
def local(bark, tmp_path_factory, one_thread):
    with in_process(lambda: bark, str(tmp_path_factory.mktemp("local"))) as served:
        yield served


def cli_wav(converted, tmp_path, text, *flags):
    """What `nanobark TEXT --out x.wav` writes for the same seed and settings (a subprocess, like the server)."""
    out = tmp_path / "cli.wav"
    r = run("-m", "nanobark", text, "--model", converted, "--out", out, "--quiet", *flags)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def streaming(served, text, **extra):
    """A request for `text` streamed as pcm (the client's context manager); extra: nanobark's fields."""
    return served.client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=text,
        response_format="pcm",
        stream_format="audio",
        extra_body={**FAST, **extra},
    )


def openai_error(body):
    """OpenAI's error shape, checked -> its "error" object."""
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    return error


def pcm_of_wav(data):
    return sf.read(io.BytesIO(data), dtype="int16")[0]


# ---------------------------------------------------------------- the openai client, end to end


@pytest.mark.slow
def test_create_returns_the_clis_wav_and_streams_give_the_same_audio(server, converted, tmp_path):
    speech_ = server.client.audio.speech
    wav = speech_.create(
        model="tts-1", voice="alloy", input="Hello there", response_format="wav", extra_body={"seed": 1, **FAST}
    ).content
    assert wav[:4] == b"RIFF" and wav == cli_wav(
        converted, tmp_path, "Hello there", "--voice", "v2/en_speaker_6", "--seed", "1", "--max-duration", "0.2"
    )

    # a three-segment text, with `long` (the command's --long): whole, then streamed, then as events
    three = dict(model="tts-1", voice="v2/en_speaker_6", input=THREE, extra_body={"seed": 5, "long": True, **FAST})
    whole = speech_.create(response_format="wav", **three).content
    assert whole == cli_wav(
        converted, tmp_path, THREE, "--long", "--voice", "v2/en_speaker_6", "--seed", "5", "--max-duration", "0.2"
    )
    pcm = speech_.create(response_format="pcm", **three).content
    assert pcm == pcm_of_wav(whole).tobytes()

    with speech_.with_streaming_response.create(response_format="pcm", stream_format="audio", **three) as r:
        chunks = [c for c in r.iter_bytes() if c]
    assert len(chunks) > 1 and b"".join(chunks) == pcm  # the first segment came before the others were made

    with speech_.with_streaming_response.create(response_format="wav", stream_format="audio", **three) as r:
        streamed = r.read()
    assert streamed[:44] == whole[:4] + b"\xff\xff\xff\xff" + whole[8:40] + b"\xff\xff\xff\xff"  # sizes: unknown
    assert streamed[44:] == whole[44:]

    with speech_.with_streaming_response.create(response_format="pcm", stream_format="sse", **three) as r:
        events = [json.loads(line[len("data: ") :]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 3 + ["speech.audio.done"]
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == pcm


@pytest.mark.slow
def test_eight_concurrent_seeded_requests_are_batched_and_each_is_what_it_is_alone(server):
    texts = ["Hello there", "Good morning", "How are you", "Fine thanks", "See you", "Bye now", "Yes", "No way"]

    def ask(i):
        return server.client.audio.speech.create(
            model="tts-1", voice="alloy", input=texts[i], response_format="pcm", extra_body={"seed": 100 + i, **FAST}
        ).content

    out, start_together = [None] * 8, threading.Barrier(8)

    def client(i):
        start_together.wait()
        out[i] = ask(i)

    before = len(server.log())
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    sizes = [int(n) for n in re.findall(r"batch of (\d+) segment", server.log()[before:])]
    assert sum(sizes) == 8 and max(sizes) > 1, sizes
    for i in range(8):
        assert out[i] and out[i] == ask(i), i  # alone now: the same bytes


@pytest.mark.slow
def test_a_full_queue_a_client_that_leaves_and_sigterm(converted, tmp_path):
    """--max-queue 1: a second request is 429 with Retry-After; a client that leaves mid-stream frees its place
    at the next segment (what was not made is never made); SIGTERM lets the request in flight finish, exit 0."""
    p, served = start(converted, str(tmp_path), "--max-batch", "1", "--max-queue", "1", "--max-wait-ms", "0")
    try:
        with streaming(served, LONG, seed=1, max_duration=1.0) as r:  # segments without asking
            chunks = r.iter_bytes()  # kept: an iterator dropped closes the response, and the client has left
            next(chunks)  # the first segment's audio; the others are still to be made
            with pytest.raises(openai.RateLimitError) as e:
                served.client.audio.speech.create(model="tts-1", voice="alloy", input="Hi", response_format="wav")
            assert int(e.value.response.headers["retry-after"]) >= 1
            openai_error(e.value.response.content)
        # the client left: its place is free once the segment being made is done
        wait_for(lambda: "cancelled" in served.log())
        left = re.search(r"(\d+) of its (\d+) segment\(s\) not made", served.log())
        assert left and int(left[1]) > 0, served.log()
        hi = served.client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hi", response_format="wav", extra_body=FAST
        )
        assert hi.content[:4] == b"RIFF"

        # SIGTERM while a request is being served: it completes, then the server exits 0
        with streaming(served, THREE, seed=2, long=True) as r:
            chunks = r.iter_bytes()
            first = next(chunks)
            p.send_signal(signal.SIGTERM)
            rest = b"".join(chunks)
        assert p.wait(HANG) == 0, served.log()
        whole = len(first + rest) // 2
        assert whole > 2 * round(0.25 * 24_000)  # three segments and the two silences between them
        assert "SIGTERM: no new requests" in served.log()
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once(converted, tmp_path):
    p, served = start(converted, str(tmp_path), "--max-batch", "1")
    try:
        with streaming(served, LONG, seed=1, max_duration=1.0) as r:  # made one by one
            chunks = r.iter_bytes()
            next(chunks)
            p.send_signal(signal.SIGTERM)
            wait_for(lambda: "no new requests" in served.log())
            p.send_signal(signal.SIGTERM)
            assert p.wait(HANG) == 128 + signal.SIGTERM
        assert "stopped at once" in served.log() and "batch of 1" in served.log()
        assert served.log().count("batch of 1") < 15  # it did not wait for the request in flight
    finally:
        p.kill()
        p.wait()


def test_listening_beyond_loopback_without_a_key_warns(converted, tmp_path, monkeypatch, capsys):
    import socket

    import nanobark.cli as cli

    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    flags = ["serve", "--model", converted, "--voices-dir", str(tmp_path), "--port", str(busy.getsockname()[1])]
    with busy:
        assert cli.main([*flags, "--host", "0.0.0.0"]) == 1  # the port is taken: one line, exit 1
        err = capsys.readouterr().err
        assert "warning: listening on 0.0.0.0 without an API key" in err and "cannot listen on 0.0.0.0:" in err
        monkeypatch.setenv("NANOBARK_API_KEY", "secret")
        assert cli.main([*flags, "--host", "0.0.0.0"]) == 1
        assert "warning" not in capsys.readouterr().err
        monkeypatch.delenv("NANOBARK_API_KEY")
        cli.main([*flags, "--host", "127.0.0.1"])
        assert "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------- errors, limits, voices (in this process)


def test_every_bad_request_gets_its_status_and_openais_error_and_the_next_good_one_works(local):
    good = {"model": "tts-1", "input": "Hi", "voice": "alloy", "response_format": "wav"}
    cases = [  # (fields or raw body, status, param, a word of the message)
        ({**good, "input": ""}, 400, "input", "nothing to say"),
        ({**good, "input": " \u200b "}, 400, "input", "nothing to say"),
        ({**good, "input": "a" * 4097}, 400, "input", "4,096"),
        ({**good, "voice": None}, 400, "voice", "required"),
        ({**good, "voice": "alloyy"}, 400, "voice", "close names: alloy"),
        ({**good, "voice": "../../etc/passwd"}, 400, "voice", "unknown voice"),
        ({**good, "response_format": "aac"}, 400, "response_format", "wav"),
        ({**good, "speed": 1.5}, 400, "speed", "not supported"),
        ({**good, "stream_format": "video"}, 400, "stream_format", "sse"),
        ({**good, "seed": -1}, 400, "seed", "2**63"),
        ({**good, "seed": "1"}, 400, "seed", "2**63"),
        ({**good, "seed": 2**63}, 400, "seed", "2**63"),
        ({**good, "top_k": 0}, 400, "top_k", "top_k"),
        ({**good, "text_temp": 0}, 400, "text_temp", "text_temp"),
        ({**good, "silence": 100}, 400, "silence", "silence"),
        ({**good, "long": "yes"}, 400, "long", "true or false"),
        ({**good, "sead": 1}, 400, "sead", "unknown field"),
        (b"{not json", 400, None, "JSON"),
        (b"[1, 2]", 400, None, "JSON object"),
        (json.dumps({**good, "instructions": "x" * (1 << 20)}).encode(), 413, None, "MB"),
    ]
    for body, status, param, words in cases:
        got, _, answer = local.request(
            "POST", "/v1/audio/speech", body if isinstance(body, bytes) else json.dumps(body)
        )
        error = openai_error(answer)
        assert (got, error["param"]) == (status, param) and words in error["message"], (body, got, error)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        got, _, answer = local.request("POST", "/v1/audio/speech", json.dumps(good), headers, key=False)
        assert got == 401 and openai_error(answer)["code"] == "invalid_api_key"
    got, _, answer = local.request("GET", "/v1/nothing")
    assert got == 404 and openai_error(answer)
    got, _, answer = local.request("GET", "/health", key=False)  # no key needed: probes, and the page
    assert got == 200 and json.loads(answer)["status"] == "ok"
    got, headers, answer = local.speak(**good, **FAST)
    assert got == 200 and headers["content-type"] == "audio/wav" and answer[:4] == b"RIFF"


def test_each_offered_format_holds_the_same_speech(local):
    from nanobark.serve.formats import offered

    same = dict(model="tts-1", input="Hi", voice="alloy", seed=3, **FAST)
    wav = pcm_of_wav(local.speak(response_format="wav", **same)[2])
    for fmt in offered():
        status, headers, data = local.speak(response_format=fmt, **same)
        assert status == 200 and headers["content-type"].startswith("audio/"), fmt
        if fmt == "pcm":
            np.testing.assert_array_equal(np.frombuffer(data, "<i2"), wav)
        elif fmt == "flac":  # lossless
            np.testing.assert_array_equal(pcm_of_wav(data), wav)
        else:  # lossy: a decoder's length, within a frame's padding
            assert abs(len(sf.read(io.BytesIO(data))[0]) - len(wav)) < 2048, fmt
    status, _, answer = local.speak(response_format="aac", **same)
    assert status == 400 and ", ".join(offered()) in openai_error(answer)["message"]


def test_health_and_speech_say_503_until_the_model_is_loaded(bark, tmp_path):
    loaded = threading.Event()

    def load():
        loaded.wait(HANG)
        return bark

    with in_process(load, str(tmp_path), key=None) as served:
        assert served.request("GET", "/health")[0] == 503
        status, headers, body = served.speak(model="tts-1", input="Hi", voice="alloy")
        assert status == 503 and headers["retry-after"] and openai_error(body)["code"] == "loading"
        loaded.set()
        wait_for(lambda: served.request("GET", "/health")[0] == 200)


def multipart(fields):
    """{name: str, or (filename, bytes)} -> (body, content type) of a multipart/form-data request."""
    boundary = "nanobark-test-boundary"
    out = b""
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\nContent-Type: audio/wav'
            data = value[1]
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"', value.encode()
        out += f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.slow
def test_a_cloned_voice_is_listed_speaks_and_is_deleted(bark, cloning_sources, cache, tmp_path, one_thread):
    hubert, quantizer_dir = cloning_sources
    quantizer = os.path.join(quantizer_dir, "quantifier_hubert_base_ls960_14.pth")
    voices = os.path.join(tmp_path, "voices")

    options = {"hubert": hubert, "quantizer": quantizer}
    with in_process(lambda: bark, str(tmp_path), clone_options=options) as served:
        wav = io.BytesIO()
        sf.write(wav, speech(seconds=4.0), 44_100, format="WAV")
        body, kind = multipart({"file": ("me.wav", wav.getvalue()), "name": "Me, reading"})
        status, _, answer = served.request("POST", "/v1/voices", body, {"Content-Type": kind})
        assert status == 200, answer
        voice = json.loads(answer)
        assert re.fullmatch(r"voice_[0-9a-f]{16}", voice["id"]) and voice["name"] == "Me, reading"
        listed = json.loads(served.request("GET", "/v1/voices")[2])
        assert listed["cloned"] == [voice] and "v2/en_speaker_6" in listed["presets"]["English"]
        assert listed["openai"]["alloy"] == "v2/en_speaker_6" and listed["random"] == "random"
        status, _, answer = served.speak(model="tts-1", input="Hi", voice=voice["id"], response_format="wav", **FAST)
        assert status == 200 and answer[:4] == b"RIFF"

        body, kind = multipart({"file": ("notes.wav", b"not audio at all")})
        status, _, answer = served.request("POST", "/v1/voices", body, {"Content-Type": kind})
        error = openai_error(answer)
        assert status == 400 and error["param"] == "file"
        # the message names the client's file, never the server's temporary one
        assert "'notes.wav'" in error["message"] and tempfile.gettempdir() not in error["message"], error
        huge = struct.pack("<I", 0) * (26 << 18)  # 26 MB of silence
        body, kind = multipart({"file": ("huge.wav", huge)})
        assert served.request("POST", "/v1/voices", body, {"Content-Type": kind})[0] == 413

        assert served.request("DELETE", f"/v1/voices/{voice['id']}")[0] == 200
        assert served.request("DELETE", f"/v1/voices/{voice['id']}")[0] == 404
        assert served.request("DELETE", "/v1/voices/..%2F..%2Fetc")[0] == 404
        assert json.loads(served.request("GET", "/v1/voices")[2])["cloned"] == []
        assert not [n for n in os.listdir(voices) if not n.startswith(".")]


def test_serve_without_the_extra_says_what_to_install(monkeypatch, capsys):
    import builtins

    import nanobark.cli as cli

    real = builtins.__import__

    def no_fastapi(name, *args, **kwargs):
        if name == "fastapi":
            raise ImportError("No module named 'fastapi'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fastapi)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == 'nanobark serve needs the server stack: pip install "nanobark[serve]"'


def test_wait_time_is_read_before_anything_loads(capsys):
    import nanobark.cli as cli

    with pytest.raises(SystemExit) as e:
        cli.main(["serve", "--max-batch", "0"])
    assert e.value.code == 2 and "--max-batch must be at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------- the worker alone (a stand-in model)


class FakeBark:
    """Bark's generate as the worker calls it: each item's audio is its generator's seed; "fail" fails."""

    device = "cpu"
    generators = Bark.generators  # the real rule: one generator per item's seed

    def __init__(self):
        self.batches, self.go = [], threading.Event()

    def generate(self, texts, voice, seed, settings):
        self.go.wait(HANG)
        self.batches.append(list(texts))
        if "fail" in texts:
            raise RuntimeError("the semantic model stopped before producing any token")
        return [np.full(4, g.initial_seed(), np.float32) for g in seed]


def run_jobs(worker, specs, before_go=None):
    """Submit Jobs of (texts, settings, seed) together, let the model go -> each job's [(index, seed)] or error."""
    import asyncio

    async def main():
        loop = asyncio.get_running_loop()
        jobs = [Job(texts, None, settings, seed, loop) for texts, settings, seed in specs]
        with worker.lock:  # all in before the worker looks (the lock is re-entrant: submit takes it too)
            for job in jobs:
                worker.submit(job)
        if before_go:
            before_go(jobs)
        worker.bark.go.set()

        async def collect(job):
            try:
                return [(i, int(a[0])) async for i, a in job.segments()]
            except RuntimeError as e:
                return str(e)

        return await asyncio.gather(*(collect(j) for j in jobs))

    return asyncio.run(main())


def test_the_worker_batches_what_waits_together_by_settings_first_segments_alone():
    from nanobark.settings import LONG_FORM, Settings

    fake = FakeBark()
    worker = Worker(lambda: fake, max_batch=4, max_wait=0.2, max_queue=3)
    worker.start()
    worker.ready.wait(HANG)
    specs = [(["a1", "a2", "a3"], LONG_FORM, 10), (["b"], Settings(), 20), (["c1", "c2"], LONG_FORM, 30)]

    def full_queue(jobs):
        with pytest.raises(QueueFull) as e:  # --max-queue 3: a fourth request waits outside
            worker.submit(Job(["d"], None, Settings(), 0, jobs[0].loop))
        assert e.value.retry_after >= 1

    out = run_jobs(worker, specs, before_go=full_queue)
    assert out == [[(0, 10), (1, 11), (2, 12)], [(0, 20)], [(0, 30), (1, 31)]]  # seed + segment, in order
    # the oldest waiting request sets a batch's settings, and others of the same settings join it; a request's
    # first segment goes alone (a1, c1), its others together later (a2, a3 with c2); b has other settings
    assert fake.batches == [["a1", "c1"], ["a2", "a3", "c2"], ["b"]]
    wait_for(lambda: not worker.active)  # every place free again (just after the last audio is handed over)

    fake.batches.clear()
    fake.go.clear()
    out = run_jobs(worker, [(["ok1"], Settings(), 1), (["fail"], Settings(), 2), (["ok2"], Settings(), 3)])
    assert out[0] == [(0, 1)] and out[2] == [(0, 3)] and "stopped" in out[1]  # one failure fails one request
    assert fake.batches == [["ok1", "fail", "ok2"], ["ok1"], ["fail"], ["ok2"]]
    worker.stop()


def test_serve_help_answers_without_torch_or_the_server_stack():
    code = (
        "import sys, nanobark.cli as cli\n"
        "try:\n    cli.main(['serve', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules))"
    )
    r = run("-c", code)
    assert r.returncode == 0 and "exit codes:" in r.stdout and r.stdout.strip().endswith("[]"), r.stdout + r.stderr
