"""Chunks of whole lines of plain or gzip'd text files."""
import gzip
import os
import zlib

DEFAULT_CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20


def _open_raw(path):
    """``(stream, raw file)``: a binary stream over a plain or gzip file (gzip
    told by its magic bytes) and the underlying file, whose position tells
    the progress through the file on disk."""
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    return (gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw), raw


def is_gzip(path):
    """Whether ``path`` is gzip'd (told by its magic bytes, as :func:`iter_chunks` does)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_span(fd, offset, length):
    """Bytes ``offset .. offset + length`` of a plain file open as ``fd``: a
    chunk that :func:`iter_chunks` yielded at that text offset (with its
    ``\n`` added when the file's last line has none)."""
    data = os.pread(fd, length, offset)
    return data if data.endswith(b"\n") else data + b"\n"


def iter_chunks(path, chunk_bytes=DEFAULT_CHUNK_BYTES, error=ValueError, kind="text"):
    """Yield ``(data, position)``: about ``chunk_bytes`` of whole lines (a final
    line without newline gets one) and the byte position reached in the file
    on disk. A corrupt gzip stream or a line longer than MAX_LINE_BYTES
    raises ``error``, the message naming ``kind`` of file expected."""
    stream, raw = _open_raw(path)
    done = 0
    try:
        tail = b""
        while True:
            try:
                block = stream.read(chunk_bytes)
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                raise error(f"{path}: truncated or corrupt gzip data after "
                                        f"{done + len(tail)} bytes of text ({exc})") from None
            if not block:
                break
            data = tail + block if tail else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:                           # a line longer than chunk_bytes: read on
                if len(data) > MAX_LINE_BYTES:
                    raise error(f"{path}: no line end within {MAX_LINE_BYTES:,} bytes after "
                                            f"byte {done:,} of the text: not a {kind} file?")
                tail = data
                continue
            tail = data[cut:]
            done += cut
            yield data[:cut], raw.tell()
        if tail:
            yield tail + b"\n", raw.tell()
    finally:
        stream.close()
        raw.close()
