"""Run the benchmark suite: this project against the PyTorch peer, side by side.

    python -m bench.run                       # everything -> docs/benchmarks.md and .json
    python -m bench.run --groups train --models <name> --reps 3
    python -m bench.run --quick               # a few steps of everything (the smoke test)

Groups: train (training throughput, MindRecord input included), pipeline (the
reader alone against what training consumes), predict (Python inference),
cpp (the C++ inference program), converter (the Criteo converter). Data are
generated in the real raw formats and converted once into --work_dir.
Needs the peer's requirements for the peer side: pip install -r bench/requirements.txt
(without torch, --sides ours measures this project alone).
"""
import argparse
import json
import os
import shlex
import sys
import time
import traceback

from bench import data, report
from bench.flops import machine_peak
from bench.measure import (Worker, WorkerError, fixed_layout, halves_control, imprecise,
                           interleaved, ours_ends, peer_settings, peer_side, pooled,
                           setting_name, settle_turns, side_of)
from bench.workload import ROOT, WORK_DIR
from src.registry import all_specs

# the models and their cases come from the registry (src/<model>/spec.py)
SPECS = {spec.name: spec for spec in all_specs()}
MODELS = list(SPECS)
TRAIN_CASES = [(name, batch) for name, spec in SPECS.items() for batch in spec.bench_train_batches]
TRAIN_BATCHES = sorted({batch for _, batch in TRAIN_CASES})
PREDICT_LARGE = {name: spec.bench_predict_batch for name, spec in SPECS.items()}
GROUPS = list(report.GROUPS)
NOTES = os.path.join(ROOT, "bench", "notes.md")
COMMITTED = os.path.join(ROOT, "docs", "benchmarks.md")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {', '.join(GROUPS)}")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--sides", default="ours,peer", help="ours,peer or ours (no PyTorch needed)")
    p.add_argument("--train_batches", default=None,
                   help="comma-separated batch sizes: only the training and pipeline cases at "
                        "these (default: every model's, from its spec)")
    p.add_argument("--reps", type=int, default=15,
                   help="interleaved repetitions (turns) per case, the table giving medians; "
                        "training cases may take more, see --max_reps")
    p.add_argument("--seconds", type=float, default=1.0, help="length of one repetition per process")
    p.add_argument("--processes", type=int, default=None,
                   help="worker processes per side in the training cases (1 or an even number; "
                        "default 4, 2 with --quick), measured in turns and pooled; the A/A "
                        "column compares ours' odd-numbered processes with its even-numbered "
                        "ones (a process's speed has a draw of its own, beyond the machine's "
                        "load, so each half averages several)")
    p.add_argument("--max_reps", type=int, default=None,
                   help="in the training cases, further turns while the A/A control's standard "
                        "error is above --aa_se, up to this many in all (default 3 x --reps; "
                        "equal to --reps: none); on a noisy machine the training group takes up "
                        "to max_reps/reps times as long")
    p.add_argument("--aa_se", type=float, default=0.02,
                   help="the A/A control's standard error (relative) a training case measures "
                        "down to, within --max_reps turns; the gate is 0.95-1.05")
    p.add_argument("--warmup", type=int, default=5,
                   help="warm-up units (steps, batches) per side, at least: a training worker "
                        "warms up over its first epoch and into the next")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for both frameworks (0: all cores); the peer may take one "
                        "instead, see --peer_setting")
    p.add_argument("--peer_setting", choices=("all", "fixed"), default=None,
                   help="all (default; fixed with --quick): in every case the peer runs in each "
                        "thread setting (each OpenMP wait policy, and one thread), one process "
                        "each, in the same turns as ours, and ours is compared with the fastest; "
                        "fixed: the peer takes --threads and the environment's OMP_WAIT_POLICY, "
                        "in --processes processes")
    p.add_argument("--converter_sizes", default="1000000,4000000",
                   help="generated Criteo lines per converter case")
    p.add_argument("--work_dir", default=WORK_DIR,
                   help="generated data, exported models and worker logs")
    p.add_argument("--out", default=None,
                   help="markdown table; the JSON goes beside it (.json). Default: "
                        "docs/benchmarks.md for a full run; a partial one (some groups, models, "
                        "sides or train batches, or --quick) goes to "
                        "<work_dir>/partial/benchmarks.md and never over the committed table")
    p.add_argument("--quick", action="store_true",
                   help="a few steps of every case on small data, one repetition (smoke test)")
    p.add_argument("--render", metavar="JSON",
                   help="measure nothing: rewrite the markdown (--out) from a saved JSON table")
    args = p.parse_args(argv)
    args.groups = _choices(args.groups, GROUPS, "--groups", p)
    args.models = _choices(args.models, MODELS, "--models", p)
    args.sides = _choices(args.sides, ["ours", "peer"], "--sides", p)
    if "ours" not in args.sides:
        p.error("--sides must include ours")
    args.train_batches = (TRAIN_BATCHES if args.train_batches is None else
                          [int(b) for b in _choices(args.train_batches,
                                                    list(map(str, TRAIN_BATCHES)),
                                                    "--train_batches", p)])
    if args.processes is None:
        args.processes = 2 if args.quick else 4
    if args.quick:
        args.reps, args.seconds, args.warmup, args.max_reps = 1, 0.2, 2, 1
        args.converter_sizes = "20000"
    if args.peer_setting is None:
        args.peer_setting = "fixed" if args.quick else "all"
    args.converter_sizes = [int(s) for s in args.converter_sizes.split(",") if s]
    if args.reps < 1 or args.seconds <= 0 or args.warmup < 1 or args.processes < 1:
        p.error("--reps, --warmup and --processes must be at least 1 and --seconds positive")
    if args.processes > 1 and args.processes % 2:
        p.error("--processes must be 1 or even: the A/A control compares two equal halves")
    settle_turns(args, p.error)
    return args


def _choices(text, allowed, flag, parser):
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        parser.error(f"{flag}: {', '.join(bad) or 'nothing given'} not in {', '.join(allowed)}")
    return items


def output_path(args):
    """Where the table goes (see ``--out``); a partial run naming the
    committed table is refused."""
    partial = (args.quick or set(args.groups) != set(GROUPS) or set(args.models) != set(MODELS)
               or "peer" not in args.sides
               or set(args.train_batches) != set(TRAIN_BATCHES))
    scratch = os.path.join(os.path.abspath(args.work_dir), "partial", "benchmarks.md")
    if args.out is None:
        return scratch if partial else COMMITTED
    out = os.path.abspath(args.out)
    if partial and os.path.realpath(out) == os.path.realpath(COMMITTED):
        sys.exit(f"error: a partial run (some groups, models, sides or train batches, or --quick) "
                 f"does not write over {COMMITTED}; without --out it goes to {scratch}")
    return out


def aa_control(rates):
    """``(ratio, standard_error)`` of ours' odd-numbered processes against its
    even-numbered ones (``rates``: ``{label: [items/s per turn]}``), paired
    turn by turn (:func:`bench.measure.halves_control`; the error is None
    before two turns)."""
    return halves_control(rates, "ours")


def strongest_peer(model, res, settings=None):
    """``(rate, variant, setting, runs)``: the fastest peer side measured in
    ``res`` (see :func:`peer_side`; ``settings``: the thread settings the
    ``@n`` indices name), its variant (None for a peer of one variant), its
    setting's name (None without settings) and every peer side's
    ``{"variant", "setting", "median"}``; rate None without a peer."""
    from bench.peer import peer_variants
    runs = []
    for side, figures in res.items():
        parsed = peer_side(side)
        if parsed is not None:
            variant, n = parsed
            runs.append({"variant": variant or peer_variants(model)[0],
                         "setting": None if n is None else setting_name(settings[n]),
                         "median": figures["median"]})
    if not runs:
        return None, None, None, []
    best = max(runs, key=lambda r: r["median"])
    return best["median"], best["variant"], best["setting"], runs


# the lead over the (strongest) peer each group's target asks for (issue 21)
LEAD = {"train": 1.10, "predict": 1.0, "cpp": 1.0}


def _against_peer(group, model, batch, ours, peer, spread, latency=False):
    """A table row of samples/s, ours against the peer's (None: no peer);
    ``latency`` adds milliseconds per batch."""
    lead = LEAD[group]
    row = {"group": group, "case": f"{model} batch {batch}", "model": model, "batch": batch,
           "unit": "samples/s", "ours": ours, "peer": peer, "ratio": ours / peer if peer else None,
           "target": f"ratio >= {lead:.2f}", "met": (ours >= lead * peer) if peer else None,
           "spread": spread}
    if latency:
        row["ours_ms"] = 1000.0 * batch / ours
        row["peer_ms"] = 1000.0 * batch / peer if peer else None
    return row


class Suite:
    def __init__(self, args, command):
        self.args = args
        self.work = os.path.abspath(args.work_dir)
        self.logs = os.path.join(self.work, "logs")
        self.cwd = os.path.join(self.work, "cwd")      # failed compiles write rank_*/ here
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.cwd, exist_ok=True)
        self.report = {"environment": report.environment(command),
                       "settings": {"reps": args.reps, "max_reps": args.max_reps,
                                    "aa_se": args.aa_se, "seconds": args.seconds,
                                    "warmup": args.warmup,
                                    "processes": args.processes,
                                    "threads": args.threads or os.cpu_count(), "quick": args.quick,
                                    "peer_setting": args.peer_setting,
                                    "sides": args.sides,
                                    "fixed_layout": fixed_layout()},
                       "cases": [], "errors": []}
        self.train_rates = {}

    def log(self, text):
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)

    def data(self, model):
        return data.data_path(model, self.work, quick=self.args.quick, log=self.log)

    def add(self, row):
        self.report["cases"].append(row)
        report.write_json_atomic(os.path.join(self.work, "partial.json"), self.report)
        shown = ", ".join(f"{k} {report.num(row.get(k))}" for k in ("ours", "peer", "ratio")
                          if row.get(k) is not None)
        self.log(f"{row['group']} {row['case']}: {shown} {row['unit']}")

    def failed(self, what, exc):
        self.report["errors"].append(f"{what}: {exc}")
        self.log(f"FAILED {what}: {exc}")

    def workers(self, kind, model, batch, labels, settings=None):
        """``{label: Worker}``; a label is a side, or ``side#n`` for its n-th
        process; a peer side ``...@n`` runs in ``settings[n]``."""
        made = {}
        try:
            for label in labels:
                side = side_of(label)
                parsed = peer_side(side)
                setting = settings[parsed[1]] if parsed and parsed[1] is not None else None
                name = "".join(c if c.isalnum() else "_" for c in label)
                log = os.path.join(self.logs, f"{kind}_{model}_{batch}_{name}.log")
                made[label] = Worker("peer" if parsed else side, kind, model, batch, self.data(model),
                                     log, self.cwd, threads=self.args.threads, setting=setting,
                                     variant=parsed[0] if parsed else None)
        except Exception:
            for w in made.values():
                w.close()
            raise
        return made

    def labels(self, model, processes, with_peer=True):
        """``(labels, settings)``: the workers of a case: ours in ``processes``
        processes; the peer (every variant) in ``processes`` processes, or, with
        ``--peer_setting all``, in one process per thread setting
        (:func:`bench.measure.peer_settings`), labelled ``@n``, between the
        first half of ours' processes and the second (see
        :func:`bench.measure.turn_order`)."""
        from bench.peer import has_peer, peer_variants
        ours = [f"ours#{n}" for n in range(1, processes + 1)]
        if not with_peer or "peer" not in self.args.sides or not has_peer(model):
            return ours, None
        variants = ["peer"] + [f"peer:{v}" for v in peer_variants(model)[1:]]
        if self.args.peer_setting != "all":
            return [f"{side}#{n}" for n in range(1, processes + 1)
                    for side in ["ours"] + variants], None
        settings = peer_settings(self.args.threads)
        peers = [f"{v}@{n}#1" for v in variants for n in range(len(settings))]
        half = ours_ends(processes)
        return ours[:half] + peers + ours[half:], settings

    def measure(self, kind, model, batch, processes=1, with_peer=True):
        """``({side: figures}, flops, settings)``: the figures (see
        :func:`bench.measure.pooled`) of every side of :meth:`labels` (ours
        alone without ``with_peer``), all measured in turns; the FLOPs per
        sample a worker counted (the peer's) or None; the peer's thread
        settings (None: fixed). With two or more processes of ours, the turns go on
        (up to ``--max_reps``) while their A/A control is less precise than
        ``--aa_se``, and ``figures["ours"]`` gets ``control``, ``control_se``
        and ``turns`` (:func:`aa_control`)."""
        labels, settings = self.labels(model, processes, with_peer)
        workers = self.workers(kind, model, batch, labels, settings)
        a = self.args
        more = None
        if processes >= 2:
            def more(rates):
                return imprecise(aa_control(rates)[1], a.aa_se)
        try:
            raw = interleaved(workers, a.warmup, a.reps, a.seconds, more=more, max_reps=a.max_reps,
                              ends=ours_ends(processes))
            res = pooled(raw)
            if processes >= 2:
                control, se = aa_control({k: v["rates"] for k, v in raw.items()})
                res["ours"].update(control=control, control_se=se, turns=len(raw["ours#1"]["rates"]))
            return res, next((w.setup["flops_per_sample"] for w in workers.values()
                              if w.setup.get("flops_per_sample")), None), settings
        finally:
            for w in workers.values():
                w.close()

    def flop_share(self, row, flops):
        """Add the case's FLOPs per sample (None: not counted) and its share of
        the machine's peak."""
        if flops:
            if "peak" not in self.report:
                self.report["peak"] = machine_peak()
            row["flops_per_sample"] = flops
            row["peak_share"] = row["ours"] * flops / self.report["peak"]["flops_per_s"]

    # ------------------------------------------------------------ groups
    def _compared(self, kind, model, batch, processes=1, latency=False):
        """The row of a case measured against the peer, with its FLOPs per sample."""
        res, flops, settings = self.measure(kind, model, batch, processes)
        peer, variant, setting, runs = strongest_peer(model, res, settings)
        row = _against_peer(kind, model, batch, res["ours"]["median"], peer, res, latency=latency)
        if peer is not None:
            row["peer_variant"], row["peer_setting"] = variant, setting
            if len(runs) > 1:
                row["peer_runs"] = runs
        self.flop_share(row, flops)
        return row

    def train(self, model, batch):
        row = self._compared("train", model, batch, self.args.processes)
        res = row["spread"]
        self.train_rates[(model, batch)] = row["ours"]
        if "control" in res["ours"]:
            # ours against ours: how far from 1.0 a ratio lands by chance here
            row["control"], row["control_se"] = res["ours"]["control"], res["ours"]["control_se"]
            row["turns"] = res["ours"]["turns"]
        self.add(row)

    def pipeline(self, model, batch):
        res, _, _ = self.measure("pipeline", model, batch, with_peer=False)
        rows = res["ours"]["median"]
        trained = self.train_rates.get((model, batch))
        self.add({"group": "pipeline", "case": f"{model} batch {batch}", "model": model, "batch": batch,
                  "unit": "rows/s", "ours": rows, "peer": trained,
                  "ratio": rows / trained if trained else None,
                  "target": "reader >= 3x training", "met": (rows >= 3 * trained) if trained else None,
                  "spread": res})

    def predict(self, model, batch):
        row = self._compared("predict", model, batch, latency=True)
        self.predict_rates[(model, batch)] = row["peer"]
        self.add(row)

    def cpp(self, model, batch):
        from bench import infer_cpp
        ours = infer_cpp.measure(model, batch, self.data(model), self.work, reps=self.args.reps,
                                 quick=self.args.quick, log=self.log)
        peer = self.predict_rates.get((model, batch))
        self.add(_against_peer("cpp", model, batch, ours["rate"], peer, ours, latency=True))

    def converter(self):
        from bench import converter
        for row in converter.run(os.path.join(self.work, "converter"), sizes=self.args.converter_sizes,
                                 reps=1, log=self.log):
            row.setdefault("group", "converter")
            row.setdefault("unit", "lines/s")
            row.setdefault("met", row["ours"] >= converter.MIN_RATE if row.get("ours") else None)
            self.add(row)

    def run(self):
        a = self.args
        self.predict_rates = {}
        jobs = []
        if "train" in a.groups or "pipeline" in a.groups:
            for model, batch in TRAIN_CASES:
                if model in a.models and batch in a.train_batches:
                    if "train" in a.groups:
                        jobs.append((f"train {model} batch {batch}", self.train, (model, batch)))
                    if "pipeline" in a.groups:
                        jobs.append((f"pipeline {model} batch {batch}", self.pipeline, (model, batch)))
        for model in a.models:
            for batch in (1, PREDICT_LARGE[model]):
                if "predict" in a.groups:
                    jobs.append((f"predict {model} batch {batch}", self.predict, (model, batch)))
                if "cpp" in a.groups:
                    jobs.append((f"cpp {model} batch {batch}", self.cpp, (model, batch)))
        if "converter" in a.groups:
            jobs.append(("converter", self.converter, ()))
        for what, fn, fargs in jobs:
            self.log(f"{what} ...")
            try:
                fn(*fargs)
            except (WorkerError, RuntimeError, OSError, ValueError) as exc:
                traceback.print_exc()
                self.failed(what, exc)
        return self.report


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    notes = open(NOTES).read() if os.path.isfile(NOTES) else None
    if args.render:
        with open(args.render) as f:
            saved = json.load(f)
        out = os.path.abspath(args.out or COMMITTED)
        report.write(saved, os.path.splitext(out)[0] + ".json", out, notes=notes)
        return 0
    out = output_path(args)
    if "peer" in args.sides:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("error: the peer needs PyTorch: pip install -r bench/requirements.txt "
                     "(or run with --sides ours)")
    command = "python -m bench.run" + "".join(" " + shlex.quote(a) for a in argv)
    suite = Suite(args, command)
    result = suite.run()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    report.write(result, os.path.splitext(out)[0] + ".json", out, notes=notes)
    validity = result["validity"]
    suite.log(f"wrote {out} and {os.path.splitext(out)[0]}.json"
              + (f"; {len(result['errors'])} case(s) failed" if result["errors"] else "")
              + ("; INVALID: A/A outside {}-{} in {}: no target against the peer claimed".format(
                  *validity["aa_range"], ", ".join(o["case"] for o in validity["outside"]))
                 if validity["valid"] is False else ""))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
