"""Atomic writes: a file or a folder is written under a temporary name beside its target, then renamed.

A crash, a kill or a full disk therefore never leaves a half-written file under the real name: readers
see the old version or the new one. Files and folders get the permissions the umask gives new ones:
mkstemp's and mkdtemp's 0600 / 0700 (and safetensors' save_file, which re-creates its file 0600) would
make a shared cache or a served file unreadable to others. The umask is never read by setting it (a
process-wide change, unsafe in a threaded host such as a server): the kernel applies it when we create the
temporary file or folder ourselves, and we keep the mode it gave (as huggingface_hub's _chmod_and_move does).
"""

import contextlib
import os
import re
import secrets
import shutil
import stat

try:
    import fcntl
except ImportError:  # Windows: no locks, so leftovers of killed folder writes are not cleaned up
    fcntl = None

TEMP_PREFIX = ".converting-"  # a folder being written (or killed): never mistaken for a finished one
LOCK_FILE = ".lock"  # inside it, locked by the live writing process


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


def _hold_lock(tmp):
    """Put a locked tmp/.lock in place, held while the returned file stays open (the OS drops it if we are killed).

    It is locked under another name and then renamed, so no other process ever sees it unlocked."""
    if fcntl is None:
        return None
    f = open(os.path.join(tmp, LOCK_FILE + ".new"), "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
    except OSError:  # a filesystem without locks: go on, the folder just cannot be told from a leftover
        pass
    os.rename(os.path.join(tmp, LOCK_FILE + ".new"), os.path.join(tmp, LOCK_FILE))
    return f


def remove_killed_folders(parent):
    """Delete the temporary folders in `parent` whose lock nobody holds: their writer was killed."""
    if fcntl is None or not os.path.isdir(parent):
        return
    for name in os.listdir(parent):
        if not name.startswith(TEMP_PREFIX):
            continue
        try:  # never created here: a folder without a lock is just starting, or finishing
            fd = os.open(os.path.join(parent, name, LOCK_FILE), os.O_WRONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:  # held: a live writer
            pass
        finally:
            os.close(fd)


def _swap_in(tmp, target, parent):
    """Put folder tmp at target, where a folder already is: the old one is renamed away first, then deleted.

    A crash in between leaves no folder at target (never a mix), and the old one under a temporary name with
    an unlocked lock file, which the next writer deletes (remove_killed_folders)."""
    old = os.path.join(parent, f"{TEMP_PREFIX}old-{secrets.token_hex(4)}")
    open(os.path.join(target, LOCK_FILE), "w").close()
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def folder_atomic(target, is_finished, replace=False):
    """Yield a locked temporary folder beside `target`; on success it is renamed to `target`.

    A folder already at `target` is replaced if `replace`, or if it is not is_finished(target); otherwise
    (another process finished first) it is kept and ours dropped. Either way `target` holds one whole
    folder, never a mix of two. Leftovers of killed writers are deleted first.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    remove_killed_folders(parent)
    tmp, lock = os.path.join(parent, TEMP_PREFIX + secrets.token_hex(6)), None
    os.mkdir(tmp, 0o777)  # the umask applies (mkdtemp's 0700 would hide a shared cache from other users)
    try:
        lock = _hold_lock(tmp)
        yield tmp
        if lock is not None:
            # still held through the open file until the rename is done
            os.remove(os.path.join(tmp, LOCK_FILE))
        try:
            os.rename(tmp, target)
        except OSError:  # a folder is in the way: an older one, a stale unfinished one, or another process's
            if replace or not is_finished(target):
                _swap_in(tmp, target, parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if lock is not None:
            lock.close()
