"""Atomic writes: a file is written under a temporary name beside its target, then renamed.

A crash, a kill or a full disk therefore never leaves a half-written file under the real name: readers
see the old version or the new one. Files get the permissions the umask gives new ones: mkstemp's 0600 (and
safetensors' save_file, which re-creates its file 0600) would make a shared cache or a served file
unreadable to others. The umask is never read by setting it (a process-wide change, unsafe in a threaded
host such as a server): the kernel applies it when we create the temporary file ourselves, and we keep the
mode it gave (as huggingface_hub's _chmod_and_move does). Whole folders: weights.convert.atomic_folder.
"""

import os
import re
import secrets
import stat

TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # write_atomic's temporary names: .NAME.HEX12.tmp


def write_atomic(path, write):
    """Call write(tmp_path) for a temporary file beside `path`, flush it to disk, rename it to `path`."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the kernel applies the umask
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whoever wrote it (a library may re-create the file 0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def remove_temp_files(folder):
    """Delete the temporary files that killed write_atomic calls left in `folder` (only the caller may know
    that no other writer is alive there)."""
    for name in os.listdir(folder):
        if TEMP_FILE.match(name):
            os.remove(os.path.join(folder, name))
