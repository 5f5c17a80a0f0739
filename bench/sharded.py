"""Per-rank memory and step time of a sparse model with its embedding table
replicated or sharded (``parallel: data``, ``table``, ``row``).

One process per rank builds the model for a table of the given field sizes
(no data set: the batches are random ids of those fields), trains ``--steps``
steps and prints one JSON line: its resident memory after building the
table, its peak resident memory, and the mean time of a step after the first
(the compile). Run it under msrun for several ranks::

    python bench/sharded.py --ranks 1 --model M            # one process
    python bench/sharded.py --ranks 4 --parallel row       # starts msrun itself

with ``--rows`` the table's rows (one large field plus 25 small ones, as
Criteo's largest fields dwarf the others). The figures are written to
docs/benchmarks.md by hand, with the command.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss():
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def cardinalities(rows, fields=26):
    """One field holding most of ``rows``, the others 1,000 rows each."""
    small = [1000] * (fields - 1)
    return [rows - sum(small)] + small


def worker(args):
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor
    from src.config import parse_config
    from src.engine.distributed import init_cluster
    from src.engine.sharded import table_ids
    from src.engine.sparse import unique_rows
    from src.engine.trainer import Trainer
    from src.registry import get_model_spec
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    cfg = parse_config(["--model", args.model, "--parallel", args.parallel, "--optimizer",
                        args.optimizer, "--embedding_dim", str(args.dim), "--batch_size",
                        str(args.batch_size)], config_path=os.path.join(ROOT, "default_config_cpu.yaml"))
    cluster = init_cluster(cfg)
    spec = get_model_spec(args.model)
    cards = cardinalities(args.rows)
    fmap = {"cardinalities": cards, "num_dense": 13, "tasks": ["click"]}
    before, _ = _rss()
    network = spec.build_network(cfg, fmap)
    built, _ = _rss()
    trainer = Trainer(spec, cfg, fmap, network, args.steps, is_main=cluster.is_main,
                      printer=lambda *a, **k: None)
    ids_of = table_ids(network)
    rng = np.random.default_rng(cluster.rank)
    offsets = np.concatenate(([0], np.cumsum(cards)[:-1]))
    times = []
    for _ in range(args.steps):
        cat = (rng.integers(0, cards, (args.batch_size, len(cards))) + offsets).astype(np.int32)
        if network.embedding.sharded:               # the training reader's layout (routed rows)
            uniq, inverse = network.embedding.plan.route(ids_of(cat))
        else:
            uniq, inverse = unique_rows(ids_of(cat), network.embedding.scratch_row)
        dense = rng.normal(size=(args.batch_size, 13)).astype(np.float32)
        labels = rng.integers(0, 2, (args.batch_size, 1)).astype(np.float32)
        start = time.perf_counter()
        trainer.train_step(Tensor(uniq), Tensor(inverse), Tensor(dense), Tensor(labels)).asnumpy()
        times.append(time.perf_counter() - start)
    rss, peak = _rss()
    print(json.dumps({"rank": cluster.rank, "ranks": cluster.size, "parallel": args.parallel,
                      "rows": args.rows, "table_rows_here": network.embedding.num_rows,
                      "rss_before_build_mb": round(before / 2**20), "rss_built_mb": round(built / 2**20),
                      "rss_end_mb": round(rss / 2**20), "peak_mb": round(peak / 2**20),
                      "step_ms": round(1000 * float(np.mean(times[1:])), 1)}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=1, help="processes (msrun above 1)")
    parser.add_argument("--parallel", default="data", choices=["data", "table", "row"])
    parser.add_argument("--model", default=None,
                        help="a model with a sparse embedding table (default: the first registered)")
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the whole table")
    parser.add_argument("--dim", type=int, default=16, help="embedding_dim")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adagrad", "adam"])
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--as_rank", action="store_true", help=argparse.SUPPRESS)   # set by msrun
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    if args.model is None:
        from src.registry import get_model_spec, model_names
        args.model = next(n for n in model_names() if get_model_spec(n).sparse)
        argv += ["--model", args.model]                # the ranks msrun starts build the same
    if args.as_rank or args.ranks == 1:
        worker(args)
        return 0
    log_dir = tempfile.mkdtemp(prefix="bench_sharded_")
    from src.engine.distributed import free_port
    port = free_port()
    command = ["msrun", f"--worker_num={args.ranks}", f"--local_worker_num={args.ranks}",
               f"--master_port={port}", f"--log_dir={log_dir}", "--join=True",
               os.path.abspath(__file__), "--as_rank",
               *argv]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        print(result.stdout[-2000:] + result.stderr[-2000:], file=sys.stderr)
        print(f"the ranks' logs: {log_dir}", file=sys.stderr)
        return result.returncode
    for rank in range(args.ranks):
        with open(os.path.join(log_dir, f"worker_{rank}.log"), errors="replace") as fh:
            for line in fh:
                if line.startswith("{"):
                    print(line.strip(), flush=True)
    shutil.rmtree(log_dir, ignore_errors=True)       # kept above, when a rank failed
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
