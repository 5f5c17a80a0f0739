"""What scripts/quickstart.sh runs for a model, from its spec (no MindSpore).

    python -m src.quickstart plan MODEL [--small]    # shell assignments for the script
    python -m src.quickstart data MODEL RAW_DIR [--small]

``plan`` prints ``MODEL``, ``DATASET``, ``MONITOR`` and the arrays
``PREPARE_ARGS`` and ``TRAIN_ARGS``; ``data`` writes the model's data set
in its real raw format with the spec's generator settings. ``--small`` uses
the spec's contract trial (what CI runs) instead of its quick start.
"""
import argparse
import shlex
import sys

from src.config import parse_config
from src.registry import get_model_spec, model_names


def settings(name, small=False):
    """``(spec, trial)``: the quick start's run of ``name`` (``small``: its trial)."""
    spec = get_model_spec(name)
    return spec, (spec.trial if small or spec.quick_start is None else spec.quick_start)


def plan(name, small=False):
    """The shell assignments of the quick start of ``name``."""
    spec, run = settings(name, small)
    monitor = parse_config(["--model", name]).monitor
    train = list(run.args) + ["--epoch_size", str(run.epochs)]

    def array(values):
        return "(" + " ".join(shlex.quote(str(v)) for v in values) + ")"
    return "\n".join([f"MODEL={shlex.quote(name)}", f"TITLE={shlex.quote(spec.title or name)}",
                      f"DATASET={shlex.quote(spec.dataset.title)}",
                      f"MONITOR={shlex.quote(monitor)}",
                      f"PREPARE_ARGS={array(run.prepare_args)}", f"TRAIN_ARGS={array(train)}"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("plan", "data"))
    parser.add_argument("model", choices=model_names())
    parser.add_argument("raw_dir", nargs="?", help="output folder of 'data'")
    parser.add_argument("--small", action="store_true", help="the contract trial's sizes (CI)")
    args = parser.parse_args(argv)
    if args.what == "plan":
        print(plan(args.model, args.small))
        return 0
    if not args.raw_dir:
        parser.error("data needs RAW_DIR")
    spec, run = settings(args.model, args.small)
    spec.dataset.synthetic(args.raw_dir, seed=run.data_seed, scale=run.data_scale)
    print(f"{spec.dataset.title} raw files (generated, real format) in {args.raw_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
