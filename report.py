"""Turn several runs (seeds, settings) into a Markdown table: per metric the
mean +- standard deviation over the runs and every run's value. A run's
figures are eval.py's result on the split (--split, default test) when the
run folder holds one, else its best validation values.

    python report.py output/seed1 output/seed2 output/seed3 > results.md
    python report.py output/seed* --split val --out results.md
"""
import argparse
import math
import os
import sys


def parse_args(argv):
    from src.engine.cli import ArgumentParser
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (train.py's output_path)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split of the eval.py results to report (default test)")
    parser.add_argument("--out", help="write the table to this Markdown file (default: print it)")
    return parser.parse_args(argv)


def mean_std(values):
    """``(mean, sample standard deviation)``; the deviation of one value is 0."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def table(runs, split="test"):
    """The Markdown text for ``runs`` (:class:`src.runs.Run`)."""
    results = [(run, *run.result(split)) for run in runs]
    metrics = []
    for _, _, values in results:
        metrics += [m for m in values if m not in metrics]
    lines = ["| metric | mean +- std | n | " + " | ".join(r.name for r, _, _ in results) + " |",
             "|---|---|---:|" + "---:|" * len(results)]
    for name in metrics:
        values = [v.get(name) for _, _, v in results]
        present = [v for v in values if v is not None]
        mean, std = mean_std(present)
        cells = [f"{v:.6f}" if v is not None else "-" for v in values]
        lines.append(f"| {name} | {mean:.6f} +- {std:.6f} | {len(present)} | "
                     + " | ".join(cells) + " |")
    sources = "; ".join(f"{r.name}: {where}" for r, where, _ in results)
    return "\n".join(lines) + f"\n\nFigures from: {sources}.\n"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from src.runs import Run
    runs = [Run(path) for path in args.runs]
    text = table(runs, args.split)
    if args.out:
        from src.fileio import write_text_atomic
        if os.path.dirname(os.path.abspath(args.out)):
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        write_text_atomic(args.out, text)
        print(f"table of {len(runs)} run(s) written to {args.out}", flush=True)
    else:
        from src.engine.cli import plain_stdout    # a table, not log lines: no time stamps
        plain_stdout().write(text)
        plain_stdout().flush()
    return 0


if __name__ == "__main__":
    from src.engine.cli import run_main
    sys.exit(run_main(main))
