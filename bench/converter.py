"""Throughput and peak memory of the Criteo converter (:mod:`src.data.criteo`).

For each size a Kaggle-format ``train.txt`` is generated once with
:mod:`src.data.criteo_synth` and cached in ``work_dir`` (reused when its line
count is right; the generation time is recorded apart and never measured as
conversion). Each conversion then runs in a fresh child process
(``python -m bench.converter --child ...``, set up as ``python -m
src.data.criteo`` is), so its memory figures are its own: nothing of an
earlier run or of the generator is in them.

Modes (per size):

* one per model on the Criteo data (the registry's), with that model's
  ``min_count``, ``split`` and ``days`` from default_config.yaml: e.g. a
  ``time`` split (pass 0 counts lines, pass 1 counts categories, pass 2
  encodes and writes) with ``min_count=1``, or a ``random`` split with
  ``min_count=101``;
* ``hash``: ``max_ind_range=10_000_000``, ``split="time"``: no vocabulary,
  so whatever memory still grows with the line count grows with the rows.

A result: ``ours`` (lines/s) is the line count over the wall time of
``convert()`` in the child: both passes, the vocabulary fit and the final
files; the interpreter start and the MindSpore import (about 1.5 s) are in
``process_seconds`` only. ``pass0_s`` .. ``pass2_s``: the converter's own
timing of each pass. ``cpu_seconds``: user + system time of the child and
its worker processes (``os.wait4``), import included.

Memory: ``peak_rss_mb`` is the converting process's own peak
(``ru_maxrss``); ``import_rss_mb`` its peak after importing the converter
(MindSpore alone holds about 0.4 GB), so ``conversion_rss_mb`` is what the
conversion added. The converter forks worker processes that share its pages
(copy-on-write), so their resident sizes overlap with it:
``workers_peak_rss_mb`` is the largest worker's peak, ``peak_rss_sum_mb``
the largest sum over the process tree (sampled every 0.1 s: counts shared
pages several times) and ``peak_pss_total_mb`` the largest sum of
proportional set sizes (sampled every second: shared pages counted once).
``vocabulary_rows`` (values kept) and ``counted_values`` (distinct train
values counted in pass 1), with rough MB estimates, size what grows with the
vocabulary, to tell it from growth with the rows (the ``hash`` mode has
none). The machine's load average before each case is in ``load_before``:
on a shared machine, rerun when it is high.

    python -m bench.converter --work_dir /tmp/criteo_bench --sizes 1000000,4000000 --reps 2
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# issue 21: no regression below 300,000 lines/s (it names the vocabulary cases, the slower ones)
MIN_RATE = 300_000
TARGET = f">= {MIN_RATE} lines/s; peak RSS flat in lines beyond the vocabularies"
HASH_MODE = {"max_ind_range": 10_000_000, "split": "time", "days": 7}


def conversion_modes():
    """``{mode: convert() options}``: each Criteo model's conversion, then
    ``hash`` (with the data set's parser)."""
    from src.config import parse_config
    from src.registry import models_on
    out = {}
    for model in models_on("criteo"):
        cfg = parse_config(["--model", model])
        out[model] = {"min_count": cfg.min_count, "split": cfg.split, "days": cfg.days,
                      "parser": cfg.parser}
    # the parser is a key of the data set's section: every Criteo model has the same
    parsers = {options["parser"] for options in out.values()}
    if len(parsers) != 1:
        raise ValueError(f"the Criteo models' configs name different parsers: {sorted(parsers)}")
    out["hash"] = dict(HASH_MODE, parser=parsers.pop())
    return out
# Bytes per kept vocabulary value in pass 2: int64 value, count and key,
# plus its slot in the hash table (about 16 bytes); per value counted in
# pass 1: int64 key and count plus the hash table (in each process counting).
VOCAB_BYTES_PER_VALUE = 40
COUNTED_BYTES_PER_VALUE = 40


def _count_lines(path):
    lines = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 24)
            if not block:
                return lines
            lines += block.count(b"\n")


def prepare(work_dir, lines, log=print):
    """``(path, generation seconds or None when cached)`` of a generated
    ``train.txt`` of ``lines`` lines in ``work_dir``."""
    from src.synth import criteo as criteo_synth
    folder = os.path.join(work_dir, f"gen_{lines}")
    path = os.path.join(folder, "train.txt")
    if os.path.isfile(path) and _count_lines(path) == lines:
        return path, None
    log(f"bench converter: generating {lines:,} lines in {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    criteo_synth.generate(folder, lines, seed=1)
    return path, time.perf_counter() - start


def _child(spec_json):
    """Run one conversion (in a fresh process) and write its measurements."""
    import resource
    spec = json.loads(spec_json)
    from src.data import criteo               # the import's memory is measured apart
    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    setup = getattr(criteo, "_tune_malloc", None)   # what `python -m src.data.criteo` does first
    if setup is not None:
        setup()
    start = time.perf_counter()
    fmap = criteo.convert(spec["raw"], spec["out"], progress_seconds=spec.get("progress_seconds", 5.0),
                          **spec["options"])
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "import_rss_mb": import_rss,
              "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
              "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
              "lines": fmap["total_lines"], "cardinalities": fmap["cardinalities"],
              "encoding": fmap["encoding"], "timing": fmap.get("timing"),
              "counted_values": fmap.get("counted_values"),
              "splits": {k: v["rows"] for k, v in fmap["splits"].items()}}
    with open(spec["result"], "w") as fh:
        json.dump(result, fh)


def _tree(pid):
    """``pid`` and its descendants (Linux ``/proc``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _rss(pid):
    """Resident bytes of one process from ``/proc/<pid>/statm`` (cheap), 0 when gone."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid):
    """Proportional set size in bytes of one process (shared pages split
    between their sharers), 0 when gone. Reading ``smaps_rollup`` walks the
    page tables: about 8 ms for a process that imported MindSpore."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _TreeSampler(threading.Thread):
    """Samples a process and its workers: the summed resident size every
    ``every`` seconds, and the summed proportional set size (the honest
    total of a parent and forked children sharing its pages) every
    ``pss_every`` seconds (costly to read, so rarely: it perturbs the run by
    about 1 % of a core)."""

    def __init__(self, pid, every=0.1, pss_every=1.0):
        super().__init__(daemon=True)
        self.pid, self.every, self.pss_every = pid, every, pss_every
        self.peak_pss = self.peak_rss_sum = 0
        self.peak_processes = 0
        self.stop = threading.Event()

    def run(self):
        last_pss = 0.0
        while not self.stop.is_set():
            pids = _tree(self.pid)
            self.peak_rss_sum = max(self.peak_rss_sum, sum(_rss(p) for p in pids))
            self.peak_processes = max(self.peak_processes, len(pids))
            now = time.monotonic()
            if now - last_pss >= self.pss_every:
                last_pss = now
                self.peak_pss = max(self.peak_pss, sum(_pss(p) for p in pids))
            self.stop.wait(self.every)


def measure(raw, out, options, result_path, log=print, progress_seconds=5.0):
    """One conversion in a child process: its measurements, its peak RSS
    (``os.wait4``: this child only) and its process wall time."""
    shutil.rmtree(out, ignore_errors=True)
    if os.path.exists(result_path):
        os.remove(result_path)
    spec = json.dumps({"raw": raw, "out": out, "options": options, "result": result_path,
                       "progress_seconds": progress_seconds})
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.converter", "--child", spec], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = _TreeSampler(proc.pid)
    sampler.start()
    for line in proc.stdout:
        log("  | " + line.rstrip())
    proc.stdout.close()
    sampler.stop.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not os.path.isfile(result_path):
        raise RuntimeError(f"converter child failed with exit code {proc.returncode}")
    with open(result_path) as fh:
        result = json.load(fh)
    result.update(process_seconds=wall, peak_rss_any_mb=usage.ru_maxrss / 1024.0,
                  peak_pss_total_mb=sampler.peak_pss / 2 ** 20,
                  peak_rss_sum_mb=sampler.peak_rss_sum / 2 ** 20, processes=sampler.peak_processes,
                  cpu_seconds=usage.ru_utime + usage.ru_stime)
    return result


def run(work_dir, sizes=(1_000_000, 4_000_000), reps=1, log=print, modes=None,
        workers=None, keep_output=False, parser=None):
    """Benchmark the converter on generated files of ``sizes`` lines; a list
    of result dicts, one per size and mode: the fastest of ``reps`` runs,
    with the largest memory figures over them. ``workers``: the converter's
    worker processes (None: its default); ``modes``: names of :func:`conversion_modes` (None: all);
    ``parser``: the converter's parser (None: the config's)."""
    available = conversion_modes()
    modes = list(available) if modes is None else list(modes)
    unknown = [m for m in modes if m not in available]
    if unknown:
        raise ValueError(f"converter modes {unknown} not in {', '.join(available)}")
    work_dir = os.path.abspath(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    results = []
    for lines in sizes:
        raw, gen_seconds = prepare(work_dir, int(lines), log=log)
        tag = f"{lines // 1_000_000}M" if lines % 1_000_000 == 0 else f"{lines // 1000}k"
        for mode in modes:
            options = dict(available[mode])
            if workers is not None:
                options["workers"] = int(workers)
            if parser is not None:
                options["parser"] = parser
            runs = []
            out = os.path.join(work_dir, f"out_{tag}_{mode}")
            for rep in range(int(reps)):
                log(f"bench converter: {tag} lines, {mode} {options}, run {rep + 1}/{reps}")
                runs.append(measure(raw, out, options, os.path.join(work_dir, "result.json"), log=log))
            if not keep_output:
                shutil.rmtree(out, ignore_errors=True)
            best = min(runs, key=lambda r: r["seconds"])
            timing = best.get("timing") or {}
            vocab_rows = (0 if best["encoding"] == "hash"
                          else sum(c - 1 for c in best["cardinalities"]))
            peak_main = max(r["peak_rss_self_mb"] for r in runs)
            results.append({
                "case": f"converter_{tag}_{mode}",
                "metric": "lines/s",
                "ours": best["lines"] / best["seconds"],
                "peak_rss_mb": peak_main,
                "import_rss_mb": best["import_rss_mb"],
                "conversion_rss_mb": peak_main - best["import_rss_mb"],
                "workers_peak_rss_mb": max(r["workers_peak_rss_mb"] for r in runs),
                "peak_pss_total_mb": max(r["peak_pss_total_mb"] for r in runs),
                "peak_rss_sum_mb": max(r["peak_rss_sum_mb"] for r in runs),
                "processes": best["processes"],
                "lines": best["lines"],
                "seconds": best["seconds"],
                "all_seconds": [r["seconds"] for r in runs],
                "process_seconds": best["process_seconds"],
                "cpu_seconds": best["cpu_seconds"],
                "cpu_seconds_per_million": best["cpu_seconds"] * 1e6 / best["lines"],
                "pass0_s": timing.get("pass0_s"),
                "pass1_s": timing.get("pass1_s"),
                "fit_s": timing.get("fit_s"),
                "pass2_s": timing.get("pass2_s"),
                "vocabulary_rows": vocab_rows,
                "counted_values": best.get("counted_values"),
                "vocabulary_mb_estimate": vocab_rows * VOCAB_BYTES_PER_VALUE / 2 ** 20,
                "counters_mb_estimate": (best.get("counted_values") or 0) * COUNTED_BYTES_PER_VALUE
                / 2 ** 20,
                "table_size": int(sum(best["cardinalities"])),
                "options": options,
                "generation_seconds": gen_seconds,
                "input_mb": os.path.getsize(raw) / 1e6,
                "cpus": os.cpu_count(),
                "load_before": _load(),
                "target": TARGET,
            })
            log("bench converter: " + json.dumps(results[-1]))
    return results


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark the Criteo converter on generated data.")
    parser.add_argument("--work_dir", help="folder for the generated files and the outputs")
    parser.add_argument("--sizes", default="1000000,4000000", help="comma-separated line counts")
    parser.add_argument("--reps", type=int, default=1, help="runs per case (best kept)")
    parser.add_argument("--modes", default=None,
                        help="comma-separated, of the Criteo models' conversions and hash "
                             "(default: all)")
    parser.add_argument("--workers", type=int, default=None,
                        help="the converter's worker processes (default: its own default)")
    from src.data.criteo_native import PARSERS
    parser.add_argument("--parser", choices=PARSERS, default=None,
                        help="the converter's text parser (default: the config's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    if not args.work_dir:
        parser.error("--work_dir is required")
    results = run(args.work_dir, [int(s) for s in args.sizes.split(",") if s],
                  reps=args.reps, workers=args.workers, parser=args.parser,
                  modes=[m for m in args.modes.split(",") if m] if args.modes else None,
                  log=lambda text: print(text, file=sys.stderr, flush=True))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
