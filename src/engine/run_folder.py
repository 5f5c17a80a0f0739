"""A training run's folder (``output_path``): its owner and its identity.

Training takes :class:`~src.fileio.OwnerLock` ``.lock`` in the folder for as
long as it runs, so two trainings never share a folder. ``run.json`` names
the run: model, data set fingerprint, status (``running``, ``finished``,
``diverged``, ``failed``), start time. A folder that holds a run's results
(a checkpoint, records in ``metrics.jsonl``, eval results, an export) is only
trained into again
with ``--resume True`` for that same model and data, or with
``--replace_run True``, which moves the old run's files into
``replaced-<time>/`` inside the folder: nothing of another run is deleted.
The launchers' logs (``train.log``, ``eval.log``) stay where they are; they
are only ever appended to.
"""
import json
import os
import time

from src.fileio import OwnerLock, remove_stale_temps, write_json_atomic

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
_MOVED = (RUN_FILE, "config.yaml", "steps.jsonl", "summary")   # moved aside by --replace_run


class RunFolderError(ValueError):
    """The folder holds another run, or is not a folder (bad input: exit 2)."""


def read_run(path):
    """``run.json`` of a run folder ({} when absent)."""
    file = os.path.join(path, RUN_FILE)
    if not os.path.isfile(file):
        return {}
    try:
        with open(file, encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as exc:
        raise RunFolderError(f"{file} is not valid JSON ({exc}); move it away to reuse "
                             "the folder") from None


def _run_entries(path):
    """Names in ``path`` that hold a run's results: checkpoints, a metrics log
    with records, eval results, exports. (A run that failed before its first
    epoch leaves only run.json and config.yaml: a new run may take the folder.)"""
    def results(name):
        if name == "metrics.jsonl":
            return os.path.getsize(os.path.join(path, name)) > 0
        return name.startswith("eval_") or name.endswith((".ckpt", ".mindir", ".air", ".onnx"))
    return sorted(e for e in os.listdir(path) if results(e))


class RunFolder:
    """The claimed folder of this training (see the module docstring)."""

    def __init__(self, path, model, data_fingerprint, printer=print):
        self.path, self.model, self.data = path, model, data_fingerprint
        self.print = printer
        self.lock = None
        self.record = {}
        self.started = False

    def claim(self, resume=False, replace=False):
        """Lock the folder and check that this run may write there."""
        if not str(self.path).strip():
            raise RunFolderError("output_path is empty: name the folder for the run (--output_path)")
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise RunFolderError(f"output_path {self.path} is a file, not a folder")
        os.makedirs(self.path, exist_ok=True)
        self.lock = OwnerLock(os.path.join(self.path, LOCK_FILE), f"output_path {self.path}",
                              printer=self.print).acquire()
        try:
            removed = remove_stale_temps(self.path)
            if removed:
                self.print(f"removed {len(removed)} temporary file(s) of a killed write in "
                           f"{self.path}: {', '.join(removed[:3])}", flush=True)
            self._check(resume, replace)
        except BaseException:
            self.release()
            raise
        return self

    def _check(self, resume, replace):
        held = _run_entries(self.path)
        previous = read_run(self.path) if held else {}
        if held and replace:
            self._move_aside(held + [f for f in _MOVED if os.path.exists(os.path.join(self.path, f))])
            previous, held = {}, []
        if held and not resume:
            what = (f"a {previous.get('status', 'earlier')} run of {previous['model']}"
                    if previous.get("model") else "an earlier run")
            raise RunFolderError(
                f"output_path {self.path} already holds {what} ({', '.join(held[:4])}"
                f"{' ...' if len(held) > 4 else ''}): pass --resume True to continue it, "
                "--replace_run True to move it into a replaced-<time>/ subfolder, or choose "
                "another --output_path")
        if previous and previous.get("model") != self.model:
            raise RunFolderError(f"output_path {self.path} holds a run of model "
                                 f"{previous.get('model')}, not {self.model}: --resume continues "
                                 "only the same model; choose another --output_path")
        if previous and previous.get("data_fingerprint") != self.data:
            raise RunFolderError(
                f"output_path {self.path} holds a run trained on another data set (fingerprint "
                f"{previous.get('data_fingerprint')}, data_path now has {self.data}): --resume "
                "continues only on the same data; choose another --output_path")
        self.record = dict(previous) or {"model": self.model, "data_fingerprint": self.data,
                                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def start(self):
        """Training begins: from now on run.json follows this process (a run
        refused before, e.g. a resume with another batch size, leaves the
        folder's record as it was)."""
        self.started = True
        self.record.pop("error", None)
        self.set_status("running")

    def _move_aside(self, held):
        dest = os.path.join(self.path, "replaced-" + time.strftime("%Y%m%d-%H%M%S"))
        if os.path.lexists(dest):                  # replaced twice within a second
            dest += f"-{os.getpid()}"
        os.makedirs(dest, exist_ok=False)
        for name in held:
            os.rename(os.path.join(self.path, name), os.path.join(dest, name))
        self.print(f"replace_run: moved the earlier run's {len(held)} file(s) to {dest}",
                   flush=True)

    def set_status(self, status, **extra):
        self.record.update(status=status, pid=os.getpid(),
                           updated=time.strftime("%Y-%m-%d %H:%M:%S"), **extra)
        write_json_atomic(os.path.join(self.path, RUN_FILE), self.record)

    def release(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None
