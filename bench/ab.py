"""Ours against ours: one case run from two source trees, side by side.

    git worktree add --detach /tmp/base HEAD~1          # the code before a change
    python -m bench.ab --base /tmp/base --kind train --model NAME --batch_size 128

Each tree gets ``--processes`` worker processes (``python -m bench.worker``
from that tree, with that tree's CPU config), set up once; then all of them
take turns, as ``python -m bench.run`` measures ours against the peer
(:func:`bench.measure.interleaved`). Printed: each tree's median rate, the
ratio this tree / base and each tree's A/A (its first process against its
second): a ratio means something only where both A/A lie near 1. Nothing is
written to docs/: the figures of a change go to bench/notes.md with this
command.
"""
import argparse
import os
import sys

from bench.measure import Worker, interleaved, paired_ratio, pooled
from bench.workload import ROOT, WORK_DIR


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the other source tree (a checkout)")
    parser.add_argument("--kind", choices=("train", "predict", "pipeline"), default="train")
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--reps", type=int, default=10, help="turns per process (median)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one turn")
    parser.add_argument("--processes", type=int, default=2, help="worker processes per tree")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up units per process")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    parser.add_argument("--work_dir", default=WORK_DIR,
                        help="generated data (shared with bench.run) and worker logs")
    args = parser.parse_args(argv)
    worker = os.path.join(args.base, "bench", "worker.py")
    if not os.path.isfile(worker):
        parser.error(f"--base {args.base}: no bench/worker.py there; give a checkout of this "
                     f"repository")
    if args.processes < 1 or args.reps < 1:
        parser.error("--processes and --reps must be positive")
    return args


def summary(raw, processes):
    """The printed lines of ``raw`` results (:func:`interleaved`) of processes
    ``base#n`` and ``this#n``: the trees' pooled medians and, with two
    processes per tree, each tree's A/A (its first process against its second,
    paired turn by turn, ± its standard error)."""
    results = pooled(raw)
    base, this = results["base"], results["this"]
    lines = [f"base {base['median']:,.0f}/s  this {this['median']:,.0f}/s  "
             f"this/base {this['median'] / base['median']:.3f}"]
    if processes >= 2:
        aa = []
        for side in ("base", "this"):
            ratio, se = paired_ratio(raw[f"{side}#1"]["rates"], raw[f"{side}#2"]["rates"])
            aa.append(f"{side} A/A {ratio:.3f}" + (f" ± {se:.3f}" if se is not None else ""))
        lines.append("  ".join(aa))
    return lines


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
            for side, root in (("base", os.path.abspath(args.base)), ("this", ROOT)):
                log = os.path.join(logs, f"ab-{side}-{args.kind}-{args.model}-{args.batch_size}-{n}.log")
                workers[f"{side}#{n}"] = Worker("ours", args.kind, args.model, args.batch_size, data,
                                                log, cwd, threads=args.threads, root=root)
        raw = interleaved(workers, args.warmup, args.reps, args.seconds)
    finally:
        for worker in workers.values():
            worker.close()
    print(f"{args.kind} {args.model} batch {args.batch_size}, {args.processes} process(es) per tree, "
          f"{args.reps} turns:")
    for line in summary(raw, args.processes):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
