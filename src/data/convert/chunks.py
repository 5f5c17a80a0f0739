"""Passes over the chunks of whole lines of a conversion's input files: each
chunk goes to a worker process (:mod:`.workers`) as its bytes or, for a
plain file, its place in the file; results come back in order, with
progress lines."""
import os

from src.data.convert.progress import Progress
from src.data.convert.textfile import is_gzip, iter_chunks, read_span
from src.data.convert.workers import Workers


class ChunkTask:
    """A pass's work on one chunk ``(file index, lines of the file before,
    lines of all files before, text)``; the text is the chunk's bytes or,
    for a plain file read before, its ``(offset, length)`` in the file, read
    here (so the process that hands out the chunks does not copy them)."""

    def __init__(self, files):
        self.files, self._fds = files, {}

    def text(self, k, data):
        if isinstance(data, bytes):
            return data
        if k not in self._fds:
            self._fds[k] = os.open(self.files[k], os.O_RDONLY)
        return read_span(self._fds[k], *data)

    def close(self):
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def finish(self):
        self.close()


class ChunkedRun:
    """The passes of one conversion over its input files, chunk by chunk in
    ``workers`` processes. ``name`` starts the progress lines; ``error`` is
    raised for corrupt input (see :func:`~src.data.convert.textfile.iter_chunks`)."""

    def __init__(self, files, chunk_bytes, skip_malformed, progress_seconds, log, workers,
                 name="convert", error=ValueError):
        self.files, self.chunk_bytes, self.skip = files, int(chunk_bytes), bool(skip_malformed)
        self.name, self.error = name, error
        self.sizes = [os.path.getsize(p) for p in files]
        self.total_bytes = sum(self.sizes)
        # no more workers than chunks (of a plain file; gzip'd text is longer)
        self.progress_seconds, self.log = progress_seconds, log
        self.workers = min(int(workers), -(-self.total_bytes // self.chunk_bytes))
        self.spans = [None] * len(files)

    def _progress(self, what, total_lines=None):
        return Progress(f"{self.name} {what}", total_lines=total_lines, total_bytes=self.total_bytes,
                        every=self.progress_seconds, log=self.log)

    def _chunks(self):
        """``((file index, lines of the file before, its line count, byte
        position reached), (file index, lines of the file before, lines of
        all files before, text))`` for every chunk of whole lines of every
        file. The text of a chunk of a plain file is handed out as its
        ``(offset, length)``, read again where it is parsed (cheaper than
        sending it through a pipe), and the first reading of the file
        records where its chunks are (``self.spans``: three numbers per
        chunk), so later passes need not read it here at all."""
        global_line, done = 0, 0
        for k, path in enumerate(self.files):
            line = 0
            if self.spans[k] is not None:
                for offset, length, n in self.spans[k]:
                    yield (k, line, n, done + offset + length), (k, line, global_line, (offset, length))
                    line += n
                    global_line += n
            else:
                spans = None if is_gzip(path) else []
                offset = 0
                for data, position in iter_chunks(path, self.chunk_bytes, self.error, self.name):
                    n = data.count(b"\n")
                    if spans is None:
                        yield (k, line, n, done + position), (k, line, global_line, data)
                    else:                               # read again where it is processed
                        yield (k, line, n, done + position), (k, line, global_line, (offset, len(data)))
                        spans.append((offset, len(data), n))
                    offset += len(data)
                    line += n
                    global_line += n
                self.spans[k] = spans
            done += self.sizes[k]

    def passes(self, task, what, total_lines=None):
        """``(file index, lines of the file before, task result)`` of every
        chunk, in order, with progress; then ``(None, None, the finish() of
        every worker's task)``."""
        progress = self._progress(what, total_lines)
        pool = Workers(task, self.workers, slot_bytes=max(1 << 20, 2 * self.chunk_bytes),
                       name=f"{self.name} converter")
        try:
            lines = 0
            for (k, line, n, position), result in pool.map(self._chunks()):
                if result[0] != n:
                    raise RuntimeError(f"{self.files[k]} changed during the conversion: {result[0]} "
                                       f"lines after line {line}, {n} before")
                yield k, line, result
                lines += n
                progress.update(lines, position)
            finals = pool.finish()
        except BaseException:
            pool.close(abort=True)
            raise
        progress.done(lines)
        yield None, None, finals

    def count_lines(self, what):
        """Lines per file, without parsing (and where the chunks are)."""
        progress = self._progress(what)
        counts = [0] * len(self.files)
        lines = 0
        for (k, _, n, position), _ in self._chunks():
            counts[k] += n
            lines += n
            progress.update(lines, position)
        progress.done(lines)
        return counts
