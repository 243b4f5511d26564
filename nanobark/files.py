"""Atomic writes: a file is written under a temporary name beside its target, then renamed.

A crash, a kill or a full disk therefore never leaves a half-written file under the real name: readers
see the old version or the new one. Files get the permissions the umask gives new ones: mkstemp's 0600 (and
safetensors' save_file, which re-creates its file 0600) would make a shared cache or a served file
unreadable to others. The umask is never read by setting it (a process-wide change, unsafe in a threaded
host such as a server): the kernel applies it when we create the temporary file ourselves, and we keep the
mode it gave (as huggingface_hub's _chmod_and_move does). Whole folders: weights.convert.atomic_folder.
"""

import errno
import json
import os
import re
import secrets
import stat

TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # write_atomic's temporary names: .NAME.HEX12.tmp
NAME_MAX = 255  # bytes in a file name (Linux, macOS; UTF-16 units on Windows)
FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space left, file too large (a quota, RLIMIT_FSIZE), quota


def write_atomic(path, write, check=None):
    """Call write(tmp_path) for a temporary file beside `path`, flush it to disk, rename it to `path`.

    A write is done only when its bytes are: check(tmp_path), if given, reads the file back and returns None
    when it is whole, else what is missing. A library may return without error from a write that a full disk
    cut short (libsndfile, for FLAC and Ogg, at close); then the file is deleted, `path` keeps its old
    contents, and an OSError says so."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, _temp_name(name))
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the kernel applies the umask
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except Exception as e:  # a writer in another language (safetensors) only says "os error 28" in its text
            code = getattr(e, "errno", None) or next((c for c in FULL if f"os error {c})" in str(e)), None)
            if code in FULL:
                raise cut_short(path, str(e), code) from e
            raise
        missing = check(tmp) if check is not None else None
        if missing is not None:
            raise cut_short(path, missing)
        os.chmod(tmp, mode)  # whoever wrote it (a library may re-create the file 0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _temp_name(name):
    """.NAME.HEX12.tmp, NAME cut short (by whole characters: soundfile takes only valid UTF-8) so that the
    whole fits in NAME_MAX bytes: a legal name stays writable."""
    suffix = f".{secrets.token_hex(6)}.tmp"
    while len(os.fsencode(name)) > NAME_MAX - 1 - len(suffix):
        name = name[:-1]
    return "." + name + suffix


def check_utf8_name(path, what, advice="rename it"):
    """`path`, if its name is valid UTF-8, else a ValueError naming it. On Linux a name may hold any bytes
    (Python keeps a byte that is not UTF-8 as a surrogate, 0xff as \\udcff), but soundfile encodes names as
    strict UTF-8 and fails on such a name (after the work, for an output), and so does printing it."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError as e:
        char = ord(e.object[e.start])
        byte = f"byte {char - 0xDC00:#04x}" if 0xDC80 <= char <= 0xDCFF else f"code point {char:#06x}"
        raise ValueError(f"{what} {path!r} is not valid UTF-8 ({byte}); {advice}") from None
    return path


def cut_short(path, missing, code=errno.ENOSPC):
    """The one error for a write that a full disk cut short, whether the writer said so or not."""
    error = OSError(f"writing {path} was cut short ({missing}); is the disk full? Free some space and run again")
    error.errno = code
    return error


def remove_temp_files(folder):
    """Delete the temporary files that killed write_atomic calls left in `folder` (only the caller may know
    that no other writer is alive there)."""
    for name in os.listdir(folder):
        if TEMP_FILE.match(name):
            os.remove(os.path.join(folder, name))


def same_file(a, b):
    """Whether two paths name one file, by whatever path (a symlink, a hard link, ./x): writing one would
    replace the other. False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # a missing file; a NUL in a name
        return False


MB = 1 << 20
MAX_SIDE_FILE = 32 * MB  # a config, vocabulary, index or voice preset beside the weights (the largest: ~3 MB)
CHUNK = MB  # read in chunks: a signal (SIGTERM, Ctrl-C) is handled between two reads


class NotAFileError(OSError):
    """An input that is not a regular file (a device, a pipe, a folder), or larger than it can be."""


def read_bounded(path, limit, what):
    """The bytes of the regular file at `path` (links followed), at most `limit` of them.

    What an input may cost is bounded by its size, not by its name: /dev/zero, a FIFO, or a symlink to a
    device named config.json would be read (or copied) without end. Anything but a regular file is refused,
    and at most limit + 1 bytes are read, so a larger file is refused without reading it all (NotAFileError,
    an OSError, naming `what`); a missing file raises the OSError open gives."""
    path = os.fspath(path)
    _regular(os.stat(path), path, what)  # before open: opening a FIFO blocks until a writer comes
    with open(path, "rb") as f:
        _regular(os.fstat(f.fileno()), path, what)  # swapped for something else since the stat
        return read_stream(f, limit, f"{what} {path}")


def read_stream(f, limit, what):
    """At most `limit` bytes of the binary stream `f` (an open file, standard input, a pipe) to its end, read
    in chunks, so that a signal (SIGTERM, Ctrl-C) is handled between two reads; past the limit NotAFileError,
    naming `what`, after reading limit + 1 bytes."""
    chunks, size = [], 0
    while size <= limit:
        chunk = f.read(min(CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise NotAFileError(f"{what} is larger than {limit / MB:.3g} MB; check that it is the right file")
    return b"".join(chunks)


def check_regular(path, what):
    """`path` (links followed) is a regular file, else NotAFileError naming `what`; a missing one: open's OSError."""
    _regular(os.stat(path), path, what)
    return path


def _regular(st, path, what):
    if not stat.S_ISREG(st.st_mode):
        raise NotAFileError(f"{what} {path} is not a regular file (a device, a pipe or a folder); give a file")


def copy_bounded(src, dst, limit, what):
    """Copy the regular file `src` (read_bounded: at most `limit` bytes) to `dst`, atomically."""
    data = read_bounded(src, limit, what)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return write_atomic(dst, write)


def read_json(path, what, limit=MAX_SIDE_FILE):
    """The JSON document in the regular file at `path` (read_bounded); ValueError when it is not JSON."""
    return json.loads(read_bounded(path, limit, what))
