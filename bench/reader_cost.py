"""What the input pipeline costs a training step of ours: steps fed by the
reader against steps on a few batches read once and cycled, in alternating
blocks in one process.

    python -m bench.reader_cost --model NAME --batch_size 16000 --steps 8

Ours as ``bench.run`` trains it (the CPU config, :class:`bench.workload.Ours`,
after its warm-up). The reader side is the benchmark's training stream
(MindRecord, shuffle and the training transform on the reader's prefetch
thread, which shares the cores with the kernels); the fixed side cycles
``--fixed`` batches taken from the reader beforehand, so no reading happens
while it runs. Blocks of ``--steps`` steps alternate (reader first in even
blocks, fixed first in odd ones). Printed: each side's median ms a step over
its blocks and, with the FLOPs per sample ``bench.run`` counts on the peer's
same network (when the model has a peer), its share of the machine's
peak: the fixed side's share is
what the kernels alone reach, a bound on the case's "% of peak" that no
faster reader can lift.
"""
import argparse
import itertools
import statistics
import time


def alternate(streams, steps, blocks, clock=time.perf_counter):
    """``{side: [ms a step of each block]}`` of the two ``streams`` (``{side:
    iterator of graph calls}``, each call the list of its steps' losses):
    ``blocks`` blocks of at least ``steps`` steps each, the sides taking turns
    to go first."""
    sides = list(streams)
    if len(sides) != 2 or steps < 1 or blocks < 1:
        raise ValueError("alternate: two streams, steps >= 1 and blocks >= 1")
    times = {side: [] for side in sides}
    for block in range(blocks):
        for side in (sides if block % 2 == 0 else sides[::-1]):
            start, done = clock(), 0
            while done < steps:
                done += len(next(streams[side]))
            times[side].append((clock() - start) / done * 1e3)
    return times


def _flops_per_sample(model, batch_size, data):
    """The FLOPs per sample bench.run counts for the case (the peer's
    :class:`bench.workload.Peer`), in a process of its own: PyTorch's threads
    stay out of the one that measures ours."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peer_flops, model, batch_size, data).result()


def _peer_flops(model, batch_size, data):
    from bench.workload import Peer
    return Peer("train", model, batch_size, data).flops_per_sample


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    from src.registry import model_names
    parser.add_argument("--model", required=True, choices=model_names())
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--steps", type=int, default=20, help="steps a block (default 20)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks a side (default 8)")
    parser.add_argument("--fixed", type=int, default=6,
                        help="batches the fixed side cycles (default 6)")
    parser.add_argument("--work_dir", default=None, help="the benchmark's data folder")
    args = parser.parse_args(argv)
    if min(args.steps, args.blocks, args.fixed) < 1:
        parser.error("--steps, --blocks and --fixed must be positive")
    from bench.data import data_path
    from bench.flops import machine_peak
    from bench.workload import WORK_DIR, Ours
    from bench.peer import has_peer
    data = data_path(args.model, args.work_dir or WORK_DIR)
    # FLOPs are counted on the peer's network: without a peer, no share of the peak
    flops = _flops_per_sample(args.model, args.batch_size, data) if has_peer(args.model) else None
    peak = machine_peak()
    ours = Ours("train", args.model, args.batch_size, data)
    ours.run(ours.warmup_units)
    # batches of a reader of their own (the training stream's reader is mid-epoch);
    # both sides train through the same trainer, its graph and optimizer state
    fixed = list(itertools.islice(ours._train_reader().epoch(2), args.fixed))
    streams = {"reader": ours.calls, "fixed": ours.trainer.run_calls(itertools.cycle(fixed))}
    next(streams["fixed"])                      # its first call outside the blocks
    times = alternate(streams, args.steps, args.blocks)
    counted = (f"{flops / 1e6:.4g} MFLOP/sample" if flops else "no peer to count FLOPs on")
    print(f"train {args.model} batch {args.batch_size}: {args.blocks} blocks of {args.steps} "
          f"steps a side; {counted}, peak {peak['flops_per_s'] / 1e9:.0f} GFLOP/s ({peak['how']})")
    for side, ms in times.items():
        median = statistics.median(ms)
        share = (f": {args.batch_size * flops / (median / 1e3) / peak['flops_per_s']:.1%} of the "
                 "peak" if flops else "")
        print(f"  {side:6s} {median:9.3f} ms a step ({min(ms):.3f}-{max(ms):.3f}){share}")
    print(f"  reader / fixed: {statistics.median(times['reader']) / statistics.median(times['fixed']):.3f}")


if __name__ == "__main__":
    main()
