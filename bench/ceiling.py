"""The matrix products' ceiling of a case: how fast it would run if each of
its matrix products ran at NumPy's speed (its BLAS, on every core) for its
shape and nothing else took any time.

    python -m bench.ceiling --kind train --model NAME --batch_size 2048

The products are the ones the PyTorch peer (the same network) runs in one
training step or one prediction, captured as it runs them (``mm``,
``addmm``, ``bmm``, ``baddbmm``, and ``linear`` in inference mode, each with
its shapes and whether an operand is a transposed view); convolutions are
counted apart and not timed. Each distinct product is timed with NumPy (best
of ``--reps``, operands transposed as the peer's were). Printed: every product's GFLOP/s, then the
ceiling, ``batch / (sum of the products' times)`` samples/s, and its share
of the machine's peak (:func:`bench.flops.machine_peak`, the better of a
measurement before and one after the products), beside which the
table's "% of peak" of a case can be read: a case cannot pass its ceiling
without matrix products faster than the BLAS's.
"""
import argparse
import collections

import numpy as np

from bench.flops import machine_peak, product_seconds

PRODUCTS = ("mm", "addmm", "bmm", "baddbmm")


def _transposed(t):
    """Whether ``t``'s last two axes are a transposed (column-major) view."""
    return t.dim() >= 2 and t.shape[-2] > 1 and t.stride(-2) == 1 and t.stride(-1) != 1


def captured(fn):
    """``(products, convolutions)`` of calling ``fn()`` once: a Counter of
    ``(batched, a_shape, b_shape, a_transposed, b_transposed)`` and the
    number of convolutions."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Products(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.products, self.convolutions = collections.Counter(), 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in PRODUCTS:
                a, b = args[-2:] if name in ("addmm", "baddbmm") else args[:2]
                self.products[(name.endswith("bmm"), tuple(a.shape), tuple(b.shape),
                               _transposed(a), _transposed(b))] += 1
            elif name == "linear":          # not decomposed under inference_mode
                x, weight = args[:2]        # x (..., in) times weight (out, in) transposed
                rows = int(np.prod(x.shape[:-1]))
                self.products[(False, (rows, x.shape[-1]), tuple(weight.shape[::-1]),
                               _transposed(x), True)] += 1
            elif name.startswith("convolution"):
                self.convolutions += 1
            return func(*args, **(kwargs or {}))

    with Products() as mode:
        fn()
    return mode.products, mode.convolutions


def flops(product):
    """The multiply-adds of a product key of :func:`captured`, times 2."""
    _, a, b, _, _ = product
    return 2 * int(np.prod(a)) * b[-1]


def numpy_seconds(product, reps=10):
    """The best of ``reps`` NumPy float32 products of that shape (after one
    warm-up), each operand a transposed view where the peer's was."""
    _, a_shape, b_shape, a_t, b_t = product
    rng = np.random.default_rng(0)

    def operand(shape, transposed):
        if not transposed:
            return rng.random(shape, dtype=np.float32)
        flipped = shape[:-2] + (shape[-1], shape[-2])
        return np.swapaxes(rng.random(flipped, dtype=np.float32), -1, -2)
    return product_seconds(operand(a_shape, a_t), operand(b_shape, b_t), reps)


def ceiling(products, batch_size, seconds=numpy_seconds):
    """``(rows, total)``: per distinct product its count, FLOPs and NumPy
    GFLOP/s; in total the FLOPs per sample, the products' seconds and the
    ceiling in samples/s."""
    rows, total_flops, total_seconds = [], 0, 0.0
    for product, count in sorted(products.items(), key=lambda kv: -flops(kv[0]) * kv[1]):
        took = seconds(product)
        rows.append({"product": product, "count": count, "flops": flops(product),
                     "gflop_per_s": flops(product) / took / 1e9})
        total_flops += count * flops(product)
        total_seconds += count * took
    return rows, {"flops_per_sample": total_flops / batch_size, "seconds": total_seconds,
                  "samples_per_s": batch_size / total_seconds if total_seconds else float("inf")}


def _describe(product):
    batched, a, b, a_t, b_t = product
    op = "bmm" if batched else "mm"
    return f"{op} {a}{'^T' if a_t else ''} x {b}{'^T' if b_t else ''}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--kind", choices=("train", "predict"), default="train")
    from bench.peer import has_peer
    from src.registry import model_names
    parser.add_argument("--model", required=True, help="a model with a PyTorch peer (bench/peer/)",
                        choices=[m for m in model_names() if has_peer(m)])
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--variant", default=None, help="a peer variant (default: its default)")
    parser.add_argument("--reps", type=int, default=10,
                        help="NumPy timings per product (best kept)")
    parser.add_argument("--work_dir", default=None, help="the benchmark's data folder")
    args = parser.parse_args(argv)
    from bench.data import data_path
    from bench.workload import WORK_DIR, Peer
    peer = Peer(args.kind, args.model, args.batch_size,
                data_path(args.model, args.work_dir or WORK_DIR), variant=args.variant)
    if args.kind == "train":
        batch = next(peer.batches)
        products, convolutions = captured(lambda: peer.peer.train_step(*batch))
    else:
        products, convolutions = captured(lambda: peer.peer.predict(*peer.inputs))
    # the peak: the better of one measurement before the products and one
    # after them, since a shared machine's load can lower either
    before = machine_peak(reps=10)
    rows, total = ceiling(products, args.batch_size,
                          seconds=lambda product: numpy_seconds(product, args.reps))
    peak = max(before, machine_peak(reps=10), key=lambda p: p["flops_per_s"])
    print(f"{args.kind} {args.model} batch {args.batch_size}: {sum(products.values())} matrix "
          f"products ({len(rows)} distinct), {convolutions} convolutions (not timed)")
    for row in rows:
        print(f"  {row['count']:3d} x {_describe(row['product'])}: "
              f"{row['flops'] / 1e6:,.1f} MFLOP at {row['gflop_per_s']:,.0f} GFLOP/s")
    share = total["samples_per_s"] * total["flops_per_sample"] / peak["flops_per_s"]
    print(f"  ceiling {total['samples_per_s']:,.0f} samples/s "
          f"({total['flops_per_sample'] / 1e6:.4g} MFLOP/sample in {total['seconds'] * 1e3:.2f} ms "
          f"of products): {share:.1%} of the peak, {peak['flops_per_s'] / 1e9:.0f} GFLOP/s "
          f"({peak['how']})")


if __name__ == "__main__":
    main()
