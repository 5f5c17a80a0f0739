"""What every entry point shares: clean error exits.

Every failure a user can cause or meet ends in one line ``error: ...`` on
stderr that names the file, line or key, with exit code 2 for bad input
(config, paths, data, checkpoints, a folder in use) and 1 for faults of the
environment (disk full, I/O errors, a diverged run); no traceback. Set
``MS_ZOO_TRACEBACK=1`` to see one.
"""
import argparse
import errno
import os
import sys
import traceback

from src.clock import stamped

# OS errors that are the machine's fault, not the input's
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EROFS,
                      errno.EMFILE, errno.ENFILE}


def describe_os_error(exc):
    """``strerror: path`` of an OSError, in one line."""
    what = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = " (free some space or choose a path on another disk)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = " (check the permissions, or choose another path)"
    elif exc.errno == errno.ENOTDIR:
        hint = " (a file stands where a folder is expected)"
    elif exc.errno == errno.EEXIST and paths and os.path.isfile(paths[0]):
        what, hint = "Not a directory", " (a file stands where a folder is expected)"
    elif exc.errno == errno.EISDIR:
        hint = " (a folder stands where a file is expected)"
    return f"{what}: {' -> '.join(map(str, paths))}{hint}" if paths else f"{what}{hint}"


def _without_stack(message):
    """MindSpore's error text without the C++ call stack it appends (a
    framework developer's aid, not the user's)."""
    stack = "\n----------------------------------------------------\n- C++ Call Stack"
    return message.split(stack)[0].strip()


def _disk_full(exc):
    """MindSpore reports a failed write as RuntimeError; tell disk-full apart."""
    text = str(exc).lower()
    return any(words in text for words in ("no space left", "disk full", "no free disk"))


class TimedLines:
    """A text stream that starts every line it writes with the wall-clock
    time (``HH:MM:SS``): an entry point's standard output, so that every log
    line tells when it happened. Everything else passes through."""

    def __init__(self, stream):
        self.stream, self._at_start = stream, True
        self.plain = stream             # for text that is not a log line (--help)

    def write(self, text):
        out = []
        for piece in text.splitlines(keepends=True):
            if self._at_start and piece not in ("\n", "\r\n"):
                piece = stamped(piece)
            out.append(piece)
            self._at_start = piece.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def plain_stdout():
    """Standard output without :class:`TimedLines`' time stamps: for text
    that is not a log line (help, or a table a user redirects to a file)."""
    return getattr(sys.stdout, "plain", sys.stdout)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser for entry points run by :func:`run_main`: its help
    and usage go to :func:`plain_stdout`, not time-stamped."""

    def print_help(self, file=None):
        super().print_help(file or plain_stdout())

    def print_usage(self, file=None):
        super().print_usage(file or plain_stdout())


def run_main(main, argv=None):
    """Run ``main(argv)`` with time-stamped output lines (:class:`TimedLines`);
    expected failures print ``error: ...`` on stderr and exit non-zero without
    a traceback."""
    if not isinstance(sys.stdout, TimedLines):
        sys.stdout = TimedLines(sys.stdout)
    from src.config import ConfigError
    from src.engine.errors import CheckpointError, TrainingDiverged
    from src.engine.native import KernelBuildError
    from src.fileio import BusyError
    bad_input = (ConfigError, CheckpointError, ValueError, BusyError)
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted; the newest periodic checkpoint in output_path can be resumed "
              "with --resume True", file=sys.stderr, flush=True)
        sys.exit(130)
    except (TrainingDiverged, *bad_input, OSError, MemoryError, RuntimeError) as exc:
        if os.environ.get("MS_ZOO_TRACEBACK"):
            traceback.print_exc()
        if isinstance(exc, OSError):
            message = describe_os_error(exc)
            code = 1 if exc.errno in ENVIRONMENT_ERRNOS else 2
        elif isinstance(exc, MemoryError):
            message, code = "out of memory (lower batch_size or shuffle_buffer_rows)", 1
        elif isinstance(exc, (TrainingDiverged, KernelBuildError)):
            message, code = str(exc), 1
        elif isinstance(exc, bad_input):
            message, code = _without_stack(str(exc)), 2
        elif _disk_full(exc):
            lines = [l.strip() for l in str(exc).splitlines() if "[ERROR]" in l] or [str(exc)]
            message = (f"No space left on device (MindSpore: {lines[0].replace('[ERROR] ', '')}); "
                       "free some space or choose a path on another disk")
            code = 1
        else:                                   # an unexpected fault: keep the traceback
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(code)
