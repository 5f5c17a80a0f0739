"""Draw a run's curves to PNG: training loss per step (and its running mean),
learning rate per step, every validation metric per epoch. Several runs are
drawn side by side in the same panels, one colour each.

    python plot.py output/run_a                      # -> output/run_a/curves.png
    python plot.py output/seed1 output/seed2 --out seeds.png --smooth 50
"""
import argparse
import os
import sys


def parse_args(argv):
    from src.engine.cli import ArgumentParser
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (train.py's output_path)")
    parser.add_argument("--out", help="PNG file to write (default: curves.png in the first run)")
    parser.add_argument("--smooth", type=int, default=0,
                        help="running mean of the step losses over N steps (default: about 1 %% "
                             "of the steps; 1: none)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    args = parser.parse_args(argv)
    if args.smooth < 0 or args.dpi < 10:
        parser.error("--smooth must be >= 0 and --dpi >= 10")
    return args


def draw(runs, out, smooth_steps=0, dpi=100):
    """Write the curves of ``runs`` (:class:`src.runs.Run`) to ``out``; returns its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from src.fileio import replace_atomic
    from src.runs import smooth

    metrics = []
    for run in runs:
        metrics += [m for m in run.val_metric_names() if m not in metrics]
    panels = ["loss", "lr"] + metrics
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    axes = axes.ravel()
    for k, run in enumerate(runs):
        colour = f"C{k % 10}"
        label = run.name + (f" ({run.model})" if run.model else "")
        if run.steps:
            x = [r["global_step"] for r in run.steps]
            loss = [r["loss"] for r in run.steps]
            window = smooth_steps or max(1, len(loss) // 100)
            axes[0].plot(x, loss, color=colour, alpha=0.25 if window > 1 else 1.0, linewidth=0.8)
            if window > 1:
                axes[0].plot(x, smooth(loss, window), color=colour, label=label)
            else:
                axes[0].lines[-1].set_label(label)
            axes[1].plot(x, [r["lr"] for r in run.steps], color=colour, label=label)
        elif run.epochs:                        # no step log: the epochs' mean losses
            x = [r["global_step"] for r in run.epochs]
            axes[0].plot(x, [r["train_loss"] for r in run.epochs], "o-", color=colour, label=label)
            axes[1].plot(x, [r["lr"] for r in run.epochs], "o-", color=colour, label=label)
        for i, name in enumerate(metrics, start=2):
            points = [(r["epoch"], r["val"][name]) for r in run.epochs
                      if r.get("val") and r["val"].get(name) is not None]
            if points:
                axes[i].plot(*zip(*points), "o-", color=colour, label=label)
    titles = ["training loss", "learning rate"] + [f"validation {m}" for m in metrics]
    xlabels = ["step", "step"] + ["epoch"] * len(metrics)
    for ax, title, xlabel in zip(axes, titles, xlabels):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    replace_atomic(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    plt.close(fig)
    return out


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from src.runs import Run
    runs = [Run(path) for path in args.runs]
    out = args.out or os.path.join(args.runs[0], "curves.png")
    path = draw(runs, out, args.smooth, args.dpi)
    print(f"curves of {len(runs)} run(s) written to {path}", flush=True)
    return 0


if __name__ == "__main__":
    from src.engine.cli import run_main
    sys.exit(run_main(main))
