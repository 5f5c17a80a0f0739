"""``python -m src.data.criteo``: the Criteo converter's command line, with the
options prepare_data.py does not have (workers, chunk size, progress). With
``--model`` the conversion options default to that model's config, as
``prepare_data.py --model`` converts."""
import argparse

from src.data.criteo import DEFAULT_SHARD_ROWS, convert
from src.data.criteo_native import PARSERS
from src.data.convert.workers import default_workers
from src.engine.cli import ArgumentParser


def _flag(text):
    """A boolean option's value, spelled as the config loader reads it."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


CLI_DEFAULTS = {"min_count": 1, "max_ind_range": 0, "dense_transform": "log1p", "split": "random",
                "val_fraction": 0.1, "test_fraction": 0.1, "days": 7, "seed": 2020,
                "shard_rows": DEFAULT_SHARD_ROWS, "block_rows": 1024, "parser": "native"}


def models_on_criteo():
    from src.registry import models_on
    return models_on("criteo")


def fill_defaults(args, model=None):
    """The conversion options left out: the model's config values, or CLI_DEFAULTS."""
    cfg = None
    if model:
        from src.config import parse_config
        cfg = parse_config(["--model", model])
    for key, default in CLI_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, cfg.get(key, default) if cfg is not None else default)


def main(argv=None):
    parser = ArgumentParser(
        description="Convert Criteo click logs (Kaggle train.txt or Terabyte day_N files, plain or "
                    "gzip) to sharded MindRecord splits plus feature_map.json for DeepFM and DLRM.")
    parser.add_argument("--raw_data_path", required=True, nargs="+",
                        help="train.txt, a folder holding train.txt / day_<N> files, or several "
                             "files (Terabyte days, in time order)")
    parser.add_argument("--data_path", required=True,
                        help="output folder for the splits and feature_map.json")
    parser.add_argument("--min_count", type=int, default=None,
                        help="keep a categorical value seen at least this often in train; rarer values "
                             "share id 0 (default 1: keep all, as the reference DLRM; the MindSpore "
                             "DeepFM used 101)")
    parser.add_argument("--max_ind_range", type=int, default=None,
                        help="hash categorical values into this many ids per field instead of a "
                             "vocabulary (0 = vocabulary, default; like DLRM's --max-ind-range)")
    parser.add_argument("--dense_transform", choices=("log1p", "none"), default=None,
                        help="dense features after negative/missing -> 0: log(1 + x) or as is "
                             "(default log1p)")
    parser.add_argument("--split", choices=("random", "time"), default=None,
                        help="random: seeded per-line split by val/test fractions; time: the reference "
                             "DLRM's, last day halved into test then val (default random)")
    parser.add_argument("--val_fraction", type=float, default=None,
                        help="random split: share of val lines (default 0.1)")
    parser.add_argument("--test_fraction", type=float, default=None,
                        help="random split: share of test lines (default 0.1)")
    parser.add_argument("--days", type=int, default=None,
                        help="time split of one file: number of equal consecutive days (default 7, "
                             "as Kaggle); several files are one day each")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random split (default 2020)")
    parser.add_argument("--shard_rows", type=int, default=None,
                        help=f"rows per MindRecord file at most (default {DEFAULT_SHARD_ROWS})")
    parser.add_argument("--block_rows", type=int, default=None,
                        help="rows per MindRecord record (default 1024)")
    parser.add_argument("--skip_malformed", nargs="?", const=True, default=False, type=_flag,
                        metavar="BOOL",
                        help="skip and count malformed lines instead of stopping at the first "
                             "(--skip_malformed alone or with true/false, as prepare_data.py)")
    parser.add_argument("--parser", choices=PARSERS, default=None,
                        help="native: a C++ parser compiled with the system's g++ on first use "
                             "(default); numpy: no compiler needed, slower; the output is the same")
    parser.add_argument("--chunk_mb", type=float, default=1.0,
                        help="text read per chunk in MB (default 1; larger is slower: cache)")
    parser.add_argument("--progress_seconds", type=float, default=10.0,
                        help="seconds between progress lines (default 10)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes parsing and encoding beside the one reading and writing "
                             f"(default: the usable CPUs, at most 4, here {default_workers()}; "
                             "0: one process); the output does not depend on it")
    parser.add_argument("--model", choices=models_on_criteo(),
                        help="take every conversion option not given here from this model's "
                             "config (default_config.yaml), as prepare_data.py --model does; "
                             "without it, the defaults above")
    args = parser.parse_args(argv)
    fill_defaults(args, args.model)
    raw = args.raw_data_path[0] if len(args.raw_data_path) == 1 else args.raw_data_path
    convert(raw, args.data_path, min_count=args.min_count, max_ind_range=args.max_ind_range,
            dense_transform=args.dense_transform, split=args.split,
            val_fraction=args.val_fraction, test_fraction=args.test_fraction, days=args.days,
            seed=args.seed, shard_rows=args.shard_rows, block_rows=args.block_rows,
            skip_malformed=args.skip_malformed, chunk_bytes=max(1, int(args.chunk_mb * (1 << 20))),
            progress_seconds=args.progress_seconds, workers=args.workers, parser=args.parser)
    return 0
