"""All-or-nothing publication of converted data sets, shared by every converter.

A converter writes into :class:`StagedConversion`: a staging folder
``.<name>.staging-<pid>`` beside the target ``data_path``. Only when every
split is written does :meth:`StagedConversion.publish` add the integrity
record to the feature map, write it, and put the staging folder in the
target's place in one step (``renameat2(RENAME_EXCHANGE)`` where the file
system has it, else two renames that the next conversion undoes if a kill
fell between them). A kill at any instant therefore leaves either the old
data set, whole, or the new one, whole; the next conversion into the same
target removes what a killed one left. Two conversions into one target at once
are refused (:class:`~src.fileio.OwnerLock`).

The feature map records, for every file, its size and a digest of its bytes
sampled at 16 places (:func:`~src.fileio.sample_digest`: a MiB read per
file, whatever its size), and for every MindRecord file its rows and a
sha256 of the rows' content (taken while writing), plus:

* ``fingerprint``: the whole data set (encoding and split contents);
* ``encoding_fingerprint``: only what decides how raw values become model
  inputs (vocabularies, scaling, widths, named by the converter), which is
  what a checkpoint must agree with.

:func:`verify_split` checks a split against that record before it is read,
and the reader's row count is compared with it (``src/engine/setup.py``).
"""
import ctypes
import os
import re
import shutil

from src import faults
from src.fileio import (FEATURE_MAP_FILE, OwnerLock, json_digest, sample_digest,
                        write_json_atomic)

SPLIT_FILE = re.compile(r"^(train|val|test)(?:_\d{3,})?\.mindrecord$")
_OUTPUT = re.compile(r"^(feature_map\.json|vocabulary\.npz|(train|val|test)(_\d{3,})?"
                     r"\.mindrecord(\.db)?)$")
# kept out of the fingerprints: where the raw files were, how long it took
PROVENANCE_KEYS = ("raw_dir", "source_files", "malformed_lines", "fingerprint",
                   "encoding_fingerprint", "contents")


class DataSetError(ValueError):
    """A converted data set that is incomplete, changed or not one."""


def _exchange(a, b):
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False
    where the C library or the file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class StagedConversion:
    """``with StagedConversion(data_path) as stage:`` write the splits into
    ``stage.path`` (through ``on_close=stage.record`` of each
    :class:`~src.data.mindrecord_io.BlockWriter`), then
    ``stage.publish(fmap, encoding_keys)``. Leaving the block without
    publishing (an error, Ctrl-C) removes the staging folder and leaves the
    target as it was."""

    def __init__(self, target, printer=print):
        self.target = os.path.realpath(target)
        self.parent, self.name = os.path.split(self.target)
        self.print = printer
        self.path, self.files, self._lock, self.published = None, {}, None, False

    def __enter__(self):
        if os.path.lexists(self.target) and not os.path.isdir(self.target):
            raise DataSetError(f"data_path {self.target} is a file, not a folder")
        os.makedirs(self.parent, exist_ok=True)
        self._lock = OwnerLock(os.path.join(self.parent, f".{self.name}.lock"),
                               f"data_path {self.target}", printer=self.print).acquire()
        try:
            self._recover()
            self._check_replaceable()
            self.path = os.path.join(self.parent, f".{self.name}.staging-{os.getpid()}")
            os.makedirs(self.path)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.path and not self.published:
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()
        return False

    def _recover(self):
        """Undo what a killed conversion into this target left: staging
        folders go; a previous data set moved aside by the two-rename swap
        comes back if the new one never arrived."""
        pattern = re.compile(re.escape(f".{self.name}.") + r"(staging|old)-\d+$")
        for entry in sorted(os.listdir(self.parent)):
            match = pattern.match(entry)
            if not match:
                continue
            path = os.path.join(self.parent, entry)
            if match.group(1) == "old" and not os.path.lexists(self.target):
                os.rename(path, self.target)
                self.print(f"note: restored the previous data set in {self.target} "
                           "(a conversion was killed while replacing it)", flush=True)
            else:
                shutil.rmtree(path, ignore_errors=True)
                self.print(f"note: removed {path}, left by a killed conversion", flush=True)

    def _check_replaceable(self):
        """The target must be absent, empty or a converted data set: a folder
        holding anything else (raw files, a run) is never replaced."""
        if not os.path.isdir(self.target):
            return
        foreign = [e for e in sorted(os.listdir(self.target))
                   if not _OUTPUT.match(e) and not e.startswith(".")]
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise DataSetError(f"data_path {self.target} holds files that are not a converted "
                               f"data set ({shown}); a conversion replaces the whole folder, so "
                               "choose a new or empty folder")

    def record(self, path, rows, digest):
        """``BlockWriter`` ``on_close`` hook: a finished MindRecord file."""
        self.files[os.path.basename(path)] = {"rows": int(rows), "sha256": digest}

    def publish(self, fmap, encoding_keys, encoding_extra=None):
        """Add the integrity record and fingerprints to ``fmap``, write it as
        ``feature_map.json`` and put the data set in the target's place.
        ``encoding_keys``: the keys of ``fmap`` that decide the model inputs;
        ``encoding_extra``: ``{name: digest}`` of what else does (e.g. a
        vocabulary kept in its own file)."""
        contents, split_rows = {}, {}
        for name in sorted(os.listdir(self.path)):
            full = os.path.join(self.path, name)
            if not os.path.isfile(full):
                continue
            entry = {"bytes": os.path.getsize(full), "sample": sample_digest(full)}
            if name in self.files:
                entry.update(self.files[name])
                split = SPLIT_FILE.match(name).group(1)
                split_rows[split] = split_rows.get(split, 0) + entry["rows"]
            contents[name] = entry
        fmap["contents"] = {"files": contents, "split_rows": split_rows}
        encoding = {key: fmap[key] for key in encoding_keys}
        encoding["extra"] = dict(encoding_extra or {})
        fmap["encoding_fingerprint"] = json_digest(encoding)
        fmap["fingerprint"] = json_digest({
            "data": {k: v for k, v in fmap.items() if k not in PROVENANCE_KEYS},
            "files": {n: [e.get("rows"), e.get("sha256")] for n, e in contents.items()
                      if "sha256" in e}})
        write_json_atomic(os.path.join(self.path, FEATURE_MAP_FILE), fmap)
        faults.point("publish.staged")
        self._swap()
        self.published = True
        return fmap

    def _swap(self):
        if not os.path.lexists(self.target):
            os.rename(self.path, self.target)
        elif not os.environ.get("MS_ZOO_NO_EXCHANGE") and _exchange(self.path, self.target):
            faults.point("publish.exchanged")         # self.path now holds the old data set
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            old = os.path.join(self.parent, f".{self.name}.old-{os.getpid()}")
            os.rename(self.target, old)
            faults.point("publish.moved_aside")
            os.rename(self.path, self.target)
            shutil.rmtree(old, ignore_errors=True)


def verify_split(data_dir, fmap, split):
    """Check that ``split``'s files are the ones the feature map records
    (present, same sizes, same sampled bytes); returns the rows it must hold."""
    contents = fmap.get("contents") or {}
    files = contents.get("files") or {}
    fm_path = os.path.join(data_dir, FEATURE_MAP_FILE)
    if split not in contents.get("split_rows", {}):
        raise DataSetError(f"{fm_path} records no split {split!r} (it has "
                           f"{sorted(contents.get('split_rows', {}))}): convert the data again")
    for name, entry in files.items():
        match = SPLIT_FILE.match(name[:-3] if name.endswith(".db") else name)
        if not match or match.group(1) != split:
            continue
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise DataSetError(f"{path} is missing: the data set in {data_dir} is incomplete "
                               "(convert it again)")
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise DataSetError(f"{path} holds {size} bytes but {fm_path} records "
                               f"{entry['bytes']}: the file was changed or cut; convert again")
        if sample_digest(path) != entry["sample"]:
            raise DataSetError(f"{path} is not the file {fm_path} records (its bytes differ): "
                               "a file or the feature map was swapped or changed; convert again")
    return int(contents["split_rows"][split])
