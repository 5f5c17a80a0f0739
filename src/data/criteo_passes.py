"""The two passes of the Criteo conversion over the chunks of its files:
counting the categorical values of the training lines, then encoding every
line into its split's shards (see :mod:`src.data.criteo`)."""
import numpy as np

from src import faults
from src.data.convert.chunks import ChunkedRun, ChunkTask
from src.data.convert.malformed import MalformedLines
from src.data.convert.shards import SplitWriter
from src.data.convert.splits import SPLITS
from src.data.criteo_parse import OK, CriteoFormatError, parse_lines
from src.data.criteo_vocab import ValueCounter, field_keys, merge_counts

COLUMNS = {"label": ("float32", 1), "dense": ("float32", 13), "cat": ("int32", 26)}


def dense_features(dense, transform="log1p"):
    """float32 dense features of raw integers: negative (and missing, read
    as 0) -> 0, then ``log1p`` or nothing."""
    x = np.maximum(dense, 0).astype(np.float64)
    if transform == "log1p":
        np.log1p(x, out=x)
    elif transform != "none":
        raise ValueError(f"dense_transform must be 'log1p' or 'none', got {transform!r}")
    return x.astype(np.float32)



class _CountTask(ChunkTask):
    """Pass 1 on one chunk: parse it and count the values of its train lines
    (state: the counts of every chunk given to this worker)."""

    def __init__(self, files, plan, native):
        super().__init__(files)
        self.plan, self.native = plan, native
        self.counter = ValueCounter()

    def __call__(self, task):
        k, line, global_line, data = task
        parsed = parse_lines(self.text(k, data), dense=False, native=self.native)
        n = len(parsed)
        ok = parsed.reason == OK
        rows = ok & self.plan.is_train(k, line, global_line, n)
        self.counter.add(field_keys(parsed.cat if rows.all() else parsed.cat[rows]))
        return n, parsed.problems, n - int(np.count_nonzero(ok))

    def finish(self):
        self.close()
        return self.counter.result()


class _EncodeTask(ChunkTask):
    """Pass 2 on one chunk: parse, split and encode it; the rows of each split."""

    def __init__(self, files, plan, encoder, dense_transform, native):
        super().__init__(files)
        self.plan, self.encoder, self.dense_transform = plan, encoder, dense_transform
        self.native = native

    def __call__(self, task):
        k, line, global_line, data = task
        parsed = parse_lines(self.text(k, data), native=self.native)
        n = len(parsed)
        ok = parsed.reason == OK
        codes = self.plan.codes(k, line, global_line, n)
        codes[~ok] = -1
        arrays = {"label": parsed.label.astype(np.float32)[:, None],
                  "dense": dense_features(parsed.dense, self.dense_transform),
                  "cat": self.encoder.encode(parsed.cat)}
        parts = []
        for s in range(len(SPLITS)):
            rows = codes == s
            if rows.all():
                parts.append((s, arrays))
            elif rows.any():
                parts.append((s, {c: a[rows] for c, a in arrays.items()}))
        return n, parsed.problems, n - int(np.count_nonzero(ok)), parts



class CriteoRun(ChunkedRun):
    """The passes of one Criteo conversion over its input files; ``native``:
    the C++ parser (:mod:`src.data.criteo_native`) or None (NumPy's)."""

    def __init__(self, files, chunk_bytes, skip_malformed, progress_seconds, log, workers,
                 native=None):
        super().__init__(files, chunk_bytes, skip_malformed, progress_seconds, log, workers,
                         name="criteo", error=CriteoFormatError)
        self.native = native

    def count_categories(self, plan):
        """Pass 1: ``(keys, counts)`` of the values of the train lines (see
        :class:`ValueCounter`), and lines per file."""
        file_lines = [0] * len(self.files)
        malformed = MalformedLines(self.skip, error=CriteoFormatError)
        passes = self.passes(_CountTask(self.files, plan, self.native), "pass 1/2 (counting categories)")
        try:
            for k, line, result in passes:
                if k is None:
                    parts = result
                    break
                n, problems, bad = result
                malformed.check(self.files[k], line, problems, bad)
                file_lines[k] += n
        except BaseException:
            passes.close()
            raise
        keys, counts = parts[0] if len(parts) == 1 else merge_counts(parts)
        return keys, counts, file_lines

    def write_splits(self, plan, encoder, dense_transform, stage, shard_rows, block_rows):
        """Pass 2: encode every line and append it to its split's shard files
        in ``stage`` (a :class:`~src.data.convert.publish.StagedConversion`)."""
        task = _EncodeTask(self.files, plan, encoder, dense_transform, self.native)
        passes = self.passes(task, "pass 2/2 (encoding and writing)", total_lines=sum(plan.file_lines))
        writers = {name: SplitWriter(stage.path, name, COLUMNS, block_rows, shard_rows,
                                     description=f"criteo {name}", on_close=stage.record)
                   for name in SPLITS}
        malformed = MalformedLines(self.skip, error=CriteoFormatError)
        file_lines = [0] * len(self.files)
        try:
            for k, line, result in passes:
                if k is None:
                    break
                n, problems, bad, parts = result
                malformed.check(self.files[k], line, problems, bad)
                for s, arrays in parts:
                    writers[SPLITS[s]].write(arrays)
                file_lines[k] += n
                faults.point("criteo.chunk_written")
            if file_lines != plan.file_lines:
                raise RuntimeError(f"line counts changed between passes: {plan.file_lines}, "
                                   f"then {file_lines}")
            for w in writers.values():
                w.close()
        except BaseException:
            passes.close()
            for w in writers.values():
                w.abort()
            raise
        return writers, malformed

