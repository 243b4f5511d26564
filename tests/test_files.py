"""nanobark/files.py: atomic writes, the permissions the umask gives, never a process-wide umask change."""

import ast
import os
import stat
import threading

import numpy as np
import pytest

from nanobark.files import remove_temp_files, write_atomic
from nanobark.voices import save_voice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_code_in_the_package_calls_os_umask():
    """Reading the umask by setting it changes it for every thread of the host process (a server's too)."""
    for folder, _, files in os.walk(os.path.join(ROOT, "nanobark")):
        for f in files:
            if f.endswith(".py"):
                tree = ast.parse(open(os.path.join(folder, f), encoding="utf-8").read())
                calls = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "umask"]
                assert not calls, f"{os.path.join(folder, f)}:{calls[0].lineno} uses os.umask"


@pytest.fixture
def umask_027(monkeypatch):
    """The process's umask is 027 for the test, and any call of os.umask that would change it fails."""
    real = os.umask
    old = real(0o027)

    def guarded(mask):
        current = real(mask)
        real(current)
        if mask != current:
            raise AssertionError(f"os.umask({oct(mask)}) changed the process's umask")
        return current

    monkeypatch.setattr(os, "umask", guarded)
    yield
    real(old)


def test_write_atomic_gives_the_umask_mode_even_to_a_file_a_library_recreates_0600(umask_027, tmp_path):
    def recreate_0600(tmp):  # as safetensors' save_file does
        os.remove(tmp)
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))

    write_atomic(tmp_path / "a.bin", recreate_0600)
    assert stat.S_IMODE(os.stat(tmp_path / "a.bin").st_mode) == 0o640


def test_save_voice_and_a_conversion_follow_the_umask_without_changing_it(umask_027, hf_snapshot, tmp_path):
    from nanobark.weights.convert import convert

    rng = np.random.default_rng(0)
    fine = rng.integers(0, 1024, (8, 30))
    save_voice(tmp_path / "v.npz", rng.integers(0, 10000, 20), fine[:2], fine)
    assert stat.S_IMODE(os.stat(tmp_path / "v.npz").st_mode) == 0o640
    convert(hf_snapshot, tmp_path / "out")
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o750
    for name in os.listdir(tmp_path / "out"):
        path = tmp_path / "out" / name
        want = 0o750 if path.is_dir() else 0o640
        assert stat.S_IMODE(os.stat(path).st_mode) == want, name


def test_writes_from_many_threads_at_once_keep_the_umask_of_the_others(tmp_path):
    """A thread creating a file while another writes atomically gets the process's umask, never 0."""
    old = os.umask(0o077)
    try:
        stop = threading.Event()
        modes = []

        def other_thread():
            i = 0
            while not stop.is_set():
                p = tmp_path / f"other{i}"
                os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o666))
                modes.append(stat.S_IMODE(os.stat(p).st_mode))
                os.remove(p)
                i += 1

        t = threading.Thread(target=other_thread)
        t.start()
        for i in range(300):
            write_atomic(tmp_path / f"w{i}", lambda tmp: open(tmp, "wb").write(b"x"))
        stop.set()
        t.join()
    finally:
        os.umask(old)
    assert modes and set(modes) == {0o600}


def test_remove_temp_files_deletes_only_write_atomics_leftovers(tmp_path):
    names = [".a.wav.0123456789ab.tmp", ".x.npz.abcdefabcdef.tmp"]
    keep = ["a.wav", ".a.wav.0123.tmp", "b.tmp", ".manifest.rank0.jsonl"]
    for n in names + keep:
        (tmp_path / n).write_bytes(b"")
    remove_temp_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(keep)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(tmp_path / "a.txt", fail)
    assert os.listdir(tmp_path) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"


def test_write_atomic_flushes_the_temporary_file_to_disk_before_the_rename(tmp_path, monkeypatch):
    """Without the fsync a power cut after the rename can leave an empty file under the real name."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino, os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, os.stat(src).st_size))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "a.bin", lambda tmp: open(tmp, "wb").write(b"12345"))
    assert (tmp_path / "a.bin").read_bytes() == b"12345"
    inode = os.stat(tmp_path / "a.bin").st_ino
    renamed = events.index(("replace", inode, 5))
    assert ("fsync", inode, 5) in events[:renamed], events  # the written bytes, synced before the rename


# ---- a write is done only when its bytes are (issue 18)

FULL_DISK_WRITE_AUDIO = """
import os, resource, signal, sys
import numpy as np
from nanobark.cli.speak import write_audio
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
path, seconds, short = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])  # short: bytes the disk lacks
audio = (0.3 * np.random.default_rng(0).standard_normal(round(seconds * 24000))).astype(np.float32)
write_audio(path + ".size" + os.path.splitext(path)[1], audio, 24000)  # how big the whole file is
size = os.path.getsize(path + ".size" + os.path.splitext(path)[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (size - short, resource.RLIM_INFINITY))
try:
    write_audio(path, audio, 24000)
    print("written")
except Exception as e:  # WAV: libsndfile's own error
    print("failed:", type(e).__name__, e)
"""


def test_write_atomic_replaces_nothing_with_a_file_its_check_finds_cut(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(OSError, match=r"writing .*a.txt was cut short \(2 of 3 lines\); is the disk full"):
        write_atomic(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("new"), check=lambda tmp: "2 of 3 lines")
    assert os.listdir(tmp_path) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"
    write_atomic(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("new"), check=lambda tmp: None)
    assert (tmp_path / "a.txt").read_text() == "new"


@pytest.mark.parametrize("ext", ["flac", "ogg", "wav"])
@pytest.mark.parametrize("seconds, short", [(0.2, 1), (5.0, 1), (5.0, 100)])
def test_audio_a_full_disk_cuts_short_replaces_nothing(ext, seconds, short, tmp_path):
    """libsndfile returns without an error when a full disk cuts a FLAC or Ogg file at close (1 or 100 bytes
    short): the file was renamed over the old one, unreadable (FLAC) or a fraction of the audio (Ogg)."""
    from helpers import run

    out = tmp_path / f"a.{ext}"
    out.write_bytes(b"old audio")
    r = run("-c", FULL_DISK_WRITE_AUDIO, out, seconds, short)
    assert r.stdout.startswith("failed:") and ("cut short" in r.stdout or ext == "wav"), r.stdout + r.stderr
    assert out.read_bytes() == b"old audio" and sorted(os.listdir(tmp_path)) == [f"a.{ext}", f"a.{ext}.size.{ext}"]


def test_save_voice_replaces_nothing_with_a_voice_that_does_not_read_back(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 1024, (8, 30))
    path = save_voice(tmp_path / "v.npz", rng.integers(0, 10000, 20), fine[:2], fine)
    before = open(path, "rb").read()
    real_savez = np.savez

    def savez_cut_at_close(f, **arrays):  # a writer that loses its end without an error
        real_savez(f, **arrays)
        f.truncate(f.tell() - 1)

    monkeypatch.setattr(np, "savez", savez_cut_at_close)
    with pytest.raises(OSError, match="cut short"):
        save_voice(path, rng.integers(0, 10000, 20), fine[:2], fine)
    assert os.listdir(tmp_path) == ["v.npz"] and open(path, "rb").read() == before


# ---- issue 18: every input bounded by what it can cost, not by its name (read_bounded is the one owner)


def test_read_bounded_refuses_devices_fifos_and_oversized_files_with_one_line(tmp_path):
    from helpers import endless_inputs
    from nanobark.files import NotAFileError, read_bounded

    for kind, path in endless_inputs(str(tmp_path), "config.json", oversized=1001):
        with pytest.raises(NotAFileError) as e:
            read_bounded(path, 1000, "config.json")
        said = "larger than" if kind == "oversized" else "not a regular file"
        assert said in str(e.value) and path in str(e.value) and "\n" not in str(e.value), (kind, str(e.value))
    with pytest.raises(NotAFileError, match="not a regular file"):
        read_bounded("/dev/zero", 1000, "the manifest")  # a device by its own name
    with pytest.raises(NotAFileError, match="not a regular file"):
        read_bounded(str(tmp_path), 1000, "the manifest")  # a folder


def test_read_bounded_reads_a_file_up_to_its_limit_whole_and_in_chunks(tmp_path, monkeypatch):
    import nanobark.files as files

    monkeypatch.setattr(files, "CHUNK", 7)  # several reads, so a signal is handled between two
    data = bytes(range(256)) * 4
    (tmp_path / "ok.bin").write_bytes(data)
    assert files.read_bounded(str(tmp_path / "ok.bin"), len(data), "x") == data  # exactly the limit: read
    with pytest.raises(files.NotAFileError, match="larger than"):
        files.read_bounded(str(tmp_path / "ok.bin"), len(data) - 1, "x")
    os.symlink(tmp_path / "ok.bin", tmp_path / "link.bin")  # a link to a regular file is a regular file
    assert files.read_bounded(str(tmp_path / "link.bin"), len(data), "x") == data
    with pytest.raises(FileNotFoundError):
        files.read_bounded(str(tmp_path / "missing"), 10, "x")


def test_read_bounded_reads_at_most_one_byte_past_its_limit(tmp_path, monkeypatch):
    """An over-limit file is refused having read limit + 1 bytes, not the whole file."""
    import io

    import nanobark.files as files

    asked = []

    class Counting(io.FileIO):
        def read(self, n=-1):
            asked.append(n)
            return super().read(n)

    monkeypatch.setattr(files, "open", lambda path, mode: Counting(path, "r"), raising=False)
    (tmp_path / "big").write_bytes(b"x" * 100_000)
    with pytest.raises(files.NotAFileError):
        files.read_bounded(str(tmp_path / "big"), 1000, "x")
    assert asked and all(0 <= n <= 1001 for n in asked) and sum(asked) <= 1001, asked


@pytest.mark.parametrize("name", ["x" * 251 + ".wav", "é" * 125 + ".wav", "x" * 255])
def test_a_legal_name_of_up_to_255_bytes_is_written_and_its_temporary_is_cleaned_up(name, tmp_path):
    """Before: .NAME.HEX12.tmp is 18 bytes longer than NAME, so a 238-255 byte name failed (ENAMETOOLONG)
    after all the work. Now NAME is cut, by whole characters, to fit."""
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        open(tmp, "wb").write(b"data")

    write_atomic(tmp_path / name, write)
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_bytes() == b"data"
    assert len(seen[0].encode()) <= 255 and seen[0].startswith("." + name[:100])  # encode(): valid UTF-8
    (tmp_path / seen[0]).write_bytes(b"")  # as a kill would leave it: remove_temp_files still knows it
    remove_temp_files(tmp_path)
    assert os.listdir(tmp_path) == [name]
