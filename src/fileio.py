"""File helpers shared across the project: atomic writes, owner locks, and
the clean-up of what killed writers left behind.

Every file the project writes in place of an older one goes through a
temporary file named ``.tmp-<pid>-<name>`` in the same folder and one
``os.replace``: a process killed at any instant leaves either the old file or
the new one, never a mix. :func:`remove_stale_temps` deletes the temporary
files of writers that are no longer alive.
"""
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time

FEATURE_MAP_FILE = "feature_map.json"
_TMP = re.compile(r"^\.tmp-(\d+)-")


def temp_path(path):
    """The temporary name under which ``path`` is written by this process."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".tmp-{os.getpid()}-{name}")


def replace_atomic(path, write):
    """Call ``write(tmp_path)`` then move the result over ``path`` in one step;
    the temporary file is removed if ``write`` fails."""
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically (flushed to disk before the rename)."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return replace_atomic(path, write)


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON, atomically: a crash never leaves a truncated
    file that looks complete."""
    return write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def folder_listing(names, limit=10):
    """What a folder holds, for an error message: the first ``limit`` of the
    sorted ``names`` and how many more ("nothing" when empty)."""
    names = sorted(names)
    if not names:
        return "nothing"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def pid_alive(pid):
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # exists, owned by someone else
        return True
    return True


def remove_stale_temps(directory):
    """Delete ``.tmp-<pid>-*`` files and folders in ``directory`` whose writer
    is no longer alive (a kill during a checkpoint or log write). Returns the
    names removed."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = _TMP.match(name)
        if not match or (int(match.group(1)) != os.getpid() and pid_alive(match.group(1))):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
        removed.append(name)
    return removed


def sample_digest(path, samples=16, chunk=1 << 16):
    """sha256 of a file's size and ``samples`` chunks spread from its first
    byte to its last (the whole file when small): tells two files of one size
    apart at the cost of reading about a MiB, whatever the file's size."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= samples * chunk:
            digest.update(fh.read())
        else:
            for k in range(samples):
                fh.seek((size - chunk) * k // (samples - 1))
                digest.update(fh.read(chunk))
    return digest.hexdigest()[:16]


def json_digest(obj):
    """sha256 of a JSON value in canonical form (sorted keys), 16 hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class BusyError(RuntimeError):
    """Another live process holds the lock (exit code 2: choose another path or wait)."""


class OwnerLock:
    """An exclusive lock on ``path`` held by this process until :meth:`release`
    or its end, whatever ends it (``flock``: the kernel drops it with the
    process). The file records the owner's pid, host and start time, so a
    refused caller learns who holds it, and a lock left by a dead process is
    taken over with a message naming it."""

    def __init__(self, path, what, printer=print):
        self.path, self.what, self.print = path, what, printer
        self._fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            owner = self.owner()
            who = (f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"
                   if owner else "another process")
            raise BusyError(f"{self.what} is in use by {who} ({self.path}): wait for it to "
                            "finish or choose another path") from None
        previous = self.owner()
        if previous and previous.get("pid") != os.getpid():
            self.print(f"note: taking over the lock of {self.what} left by pid "
                       f"{previous.get('pid')} on {previous.get('host')} (no longer running)",
                       flush=True)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)
        self._fd = fd
        return self

    def owner(self):
        """The recorded owner ``{pid, host, since}`` (empty if none)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def read_feature_map(data_dir, dataset, format_version, convert_command, required=()):
    """``data_dir/feature_map.json`` of a converted data set, checked: a clear
    error when it is missing (naming ``convert_command``), belongs to another
    data set or to another format version, or lacks a ``required`` key (or
    the integrity record every published data set has)."""
    path = os.path.join(data_dir, FEATURE_MAP_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: run the converter first: {convert_command}")
    try:
        with open(path, encoding="utf-8") as fh:
            fmap = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): convert the data again") from None
    if not isinstance(fmap, dict) or fmap.get("dataset") != dataset:
        found = fmap.get("dataset") if isinstance(fmap, dict) else None
        raise ValueError(f"{path} describes the data set {found!r}, not {dataset}: "
                         f"point data_path at a converted {dataset} folder")
    if fmap.get("format_version") != format_version:
        raise ValueError(f"{path} has format version {fmap.get('format_version')!r}, this code reads "
                         f"version {format_version}: convert the data again: {convert_command}")
    missing = [k for k in ("contents", "fingerprint", "encoding_fingerprint") + tuple(required)
               if k not in fmap]
    if missing:
        raise ValueError(f"{path} is incomplete (no {', '.join(missing[:4])}): it was not written by "
                         f"the converter; convert the data again: {convert_command}")
    return fmap
