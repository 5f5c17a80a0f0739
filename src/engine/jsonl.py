"""The run folder's JSON-lines logs (metrics.jsonl, steps.jsonl): appending
whole lines, reading them back with a cut last line tolerated. No MindSpore
import: plot.py and report.py read runs with it."""
import json
import os

from src.fileio import write_text_atomic


def append_lines(path, line, sync=True):
    """Append one line (or several) in one write (O_APPEND), flushed to disk
    unless ``sync`` is false; a file that a kill left without its final
    newline gets one first."""
    data = line.encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


_NOTED = set()


def read_metrics_log(path, printer=print):
    """The records of a metrics log (empty if absent). A last line cut by a
    kill is skipped with a note; any other unreadable line is an error that
    names the file and the line."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "epoch" not in record:
                raise ValueError("not a metrics record")
        except ValueError as exc:
            if number == len(lines) or all(not rest.strip() for rest in lines[number:]):
                if (path, number) not in _NOTED:         # said once, not by every reader
                    _NOTED.add((path, number))
                    printer(f"note: {path}: line {number} is incomplete (a write was cut); "
                            "skipped", flush=True)
                continue
            raise ValueError(f"{path}: line {number} is not a metrics record ({exc}); "
                             "fix or remove that line") from None
        records.append(record)
    return records


def keep_epochs_up_to(path, epoch):
    """Rewrite the log ``path`` with only its records of epochs up to ``epoch``
    (what a resumed run continues from), creating it if absent. The records
    kept (no cut line) replace the old file in one step: a kill here loses nothing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    kept = [r for r in read_metrics_log(path) if r["epoch"] <= epoch]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
