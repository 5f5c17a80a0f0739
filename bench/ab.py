r"""Ours against ours: one case run from two source trees, side by side.

    git worktree add --detach /tmp/base HEAD~1          # the code before a change
    python -m bench.ab --base /tmp/base --kind train --model NAME --batch_size 128

Each tree gets ``--processes`` worker processes (``python -m bench.worker``
from that tree, with that tree's CPU config), set up once; then all of them
take turns, as ``python -m bench.run`` measures ours against the peer
(:func:`bench.measure.interleaved`): ``--reps`` turns, then, with two or
more processes per tree, more turns while either tree's A/A control is less
precise than ``--aa_se``, up to ``--max_reps`` (bench.run's rule). Printed:
each tree's median rate, the ratio this tree / base (of the medians, and
paired turn by turn with its standard error) and each tree's A/A (its
odd-numbered processes against its even-numbered ones; with two, its first
against its second): a ratio means something only where both A/A
lie near 1. Nothing is written to docs/: the figures of a change go to
bench/notes.md with this command.

``--set KEY=VALUE`` and ``--base_set KEY=VALUE`` give a config key another
value than the CPU config's in this tree or the base; with ``--base .`` that
measures one setting against another in the same code, e.g. a kernel
against the graph:

    python -m bench.ab --base . --base_set predict_mlp=graph --kind predict --model NAME \
        --batch_size 16384 --processes 4
"""
import argparse
import os
import sys

from bench.measure import (Worker, halves_control, imprecise, interleaved, paired_ratio, pooled,
                           settle_turns, turn_means)
from bench.workload import ROOT, WORK_DIR, setting_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the other source tree (a checkout)")
    parser.add_argument("--kind", choices=("train", "predict", "pipeline"), default="train")
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--reps", type=int, default=10, help="turns per process (median)")
    parser.add_argument("--max_reps", type=int, default=None,
                        help="with 2+ processes per tree, further turns while either tree's A/A "
                             "standard error is above --aa_se, up to this many in all (default "
                             "3 x --reps)")
    parser.add_argument("--aa_se", type=float, default=0.02,
                        help="the A/A standard error further turns try to get down to")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one turn")
    parser.add_argument("--processes", type=int, default=2, help="worker processes per tree")
    parser.add_argument("--warmup", type=int, default=20,
                        help="warm-up units per process, at least (a training worker warms up "
                             "over its first epoch and into the next)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key's value in this tree's workers (repeatable)")
    parser.add_argument("--base_set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key's value in the base tree's workers (repeatable)")
    parser.add_argument("--work_dir", default=WORK_DIR,
                        help="generated data (shared with bench.run) and worker logs")
    args = parser.parse_args(argv)
    worker = os.path.join(args.base, "bench", "worker.py")
    if not os.path.isfile(worker):
        parser.error(f"--base {args.base}: no bench/worker.py there; give a checkout of this "
                     f"repository")
    if args.processes < 1 or args.reps < 1:
        parser.error("--processes and --reps must be positive")
    try:
        setting_args(args.set + args.base_set)
    except ValueError as err:
        parser.error(f"--set and --base_set: {err}")
    settle_turns(args, parser.error)
    return args


def aa_controls(rates, processes):
    """``{tree: (ratio, standard_error)}``: each tree's odd-numbered processes
    against its even-numbered ones, paired turn by turn (with two, its first
    against its second; empty with one process per tree)."""
    if processes < 2:
        return {}
    return {side: halves_control(rates, side) for side in ("base", "this")}


def tree_turns(rates, side, processes):
    """Per turn, the geometric mean of a tree's processes' rates."""
    return turn_means(rates, [f"{side}#{n}" for n in range(1, processes + 1)])


def summary(raw, processes):
    """The printed lines of ``raw`` results (:func:`interleaved`) of processes
    ``base#n`` and ``this#n``: the trees' pooled medians and, with two
    processes per tree, each tree's A/A (:func:`aa_controls`, ± its standard
    error)."""
    results = pooled(raw)
    base, this = results["base"], results["this"]
    rates = {side: r["rates"] for side, r in raw.items()}
    ratio, se = paired_ratio(tree_turns(rates, "this", processes),
                             tree_turns(rates, "base", processes))
    lines = [f"base {base['median']:,.0f}/s  this {this['median']:,.0f}/s  "
             f"this/base {this['median'] / base['median']:.3f}  (paired {_with_se(ratio, se)})"]
    controls = aa_controls(rates, processes)
    if controls:
        lines.append("  ".join(f"{side} A/A {_with_se(*controls[side])}" for side in controls))
    return lines


def _with_se(ratio, se):
    return f"{ratio:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def main(argv=None):
    args = parse_args(argv)
    from bench.data import data_path
    data = data_path(args.model, args.work_dir)
    logs, cwd = os.path.join(args.work_dir, "logs"), os.path.join(args.work_dir, "cwd")
    os.makedirs(logs, exist_ok=True)
    os.makedirs(cwd, exist_ok=True)
    workers = {}
    try:
        for n in range(1, args.processes + 1):
            for side, root, settings in (("base", os.path.abspath(args.base), args.base_set),
                                         ("this", ROOT, args.set)):
                log = os.path.join(logs, f"ab-{side}-{args.kind}-{args.model}-{args.batch_size}-{n}.log")
                workers[f"{side}#{n}"] = Worker("ours", args.kind, args.model, args.batch_size, data,
                                                log, cwd, threads=args.threads, root=root,
                                                settings=settings)
        def more(rates):
            return any(imprecise(se, args.aa_se)
                       for _, se in aa_controls(rates, args.processes).values())

        raw = interleaved(workers, args.warmup, args.reps, args.seconds, more=more,
                          max_reps=args.max_reps)
    finally:
        for worker in workers.values():
            worker.close()
    turns = len(next(iter(raw.values()))["rates"])
    print(f"{args.kind} {args.model} batch {args.batch_size}, {args.processes} process(es) per tree, "
          f"{turns} turns:")
    for side, settings in (("base", args.base_set), ("this", args.set)):
        if settings:
            print(f"  {side}: {' '.join(settings)}")
    for line in summary(raw, args.processes):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
