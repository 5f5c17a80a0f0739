"""Check the PyTorch peers against our MindSpore networks:
``.venv/bin/python -m bench.peer.check`` (exit status 1 on any failure).

For every model (the CPU config, small synthetic feature maps, dropout off)
and a few configuration variants that exercise the other code paths
(clipping, weight decay, batch norm, other optimizers, gate kinds, L2):

1. ``forward``: our network's logits and Predictor probabilities against the
   peer's (eval mode) after ``load_from_mindspore``: |diff| <= 1e-5 + 1e-5 |ours|;
2. ``train``: three training steps, ours through ``Trainer.train_step`` on
   ``spec.train_transform`` batches (unique rows for the sparse models), the
   peer's ``train_step`` on ``spec.make_batch`` batches. Before every step the
   peer gets our current weights (its optimizer state -- moments, step count --
   stays its own, so steps 2 and 3 test the bias correction and the lr/eps
   schedule); after it, the loss must agree within 1e-5 and every parameter,
   table and batch-norm statistic must be within the *strict* tolerance
   ``1e-6 + 1e-5 |ours|`` (+ 4 float32 ulps), except at most 0.1 % of all
   elements, which must be within the strict tolerance plus the largest
   update of their tensor, i.e. differ by at most one step (see "Numerics");
3. ``init``: freshly built networks (larger feature maps, independent seeds):
   per tensor, constant tensors must be equal, others must pass a two-sample
   Kolmogorov-Smirnov test at alpha = 1e-4 (embedding tables per field);
   std and max |x| ratios are printed.

Numerics: float32 on both sides and the same formulas (see ``common`` for
the Adam epsilon mapping); forward outputs agree to ~1e-7. What differs is
the summation order inside the kernels (BLAS, convolution vs our matmul
convolution, reductions), i.e. gradients agree to ~1e-7 relative -- except
for gradient elements that are sums of cancelling terms (batch-norm
backward, sums over batch and pixels), whose *relative* round-off can reach
percents. Plain SGD turns that into differences of ``lr * 1e-9``, but Adam's
and Adagrad's steps are ``lr * g / (|g| + eps')`` (``eps'`` = 3e-7 at Adam's
first step with eps 1e-8), so an element whose gradient is ~eps' moves by a
fraction of ``lr`` that depends on its round-off: a few such elements per
step differ by up to ~1 % of ``lr``. Rarer but larger: a pre-activation
within ~1e-7 of zero can land on different sides of a ReLU's kink (one in a
few million activations; the DSelect-k per-example variant has one, a batch
norm output below 1e-6 in channel 49 at step 2), which switches that
element's gradient on or off and changes the gradient of that channel's
~25 conv weights and its batch-norm shift by a few percent; Adam, whose
momentum can nearly cancel, turns that into a step differing by a good part
of ``lr`` for those few elements. Both are inherent in comparing two
frameworks (they would happen between two BLAS builds too), hence the second
tier of the tolerance: at most 0.1 % of the elements may differ by up to one
update. For the same reason the DeepFM batch-norm variant
trains with SGD: the Dense biases in front of a batch norm have an exactly
zero gradient, so Adam would move them by lr-sized steps of random sign
driven by round-off alone, on either side.
"""
import os
import sys
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

from bench.peer import has_peer, peer_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")
STEPS_PER_EPOCH = 10
TRAIN_STEPS = 3
# per-step tolerances of the updated tensors, see the module docstring
STRICT_SHARE = 1e-3
LOOSE = 1.0
RESULTS = []


def report(name, check, ok, detail):
    RESULTS.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}  {name:<34} {check:<8} {detail}", flush=True)


# ---------------------------------------------------------------- data
def feature_map(dataset, rng, big=False):
    """A feature map of the data set named ``dataset`` (no conversion needed)."""
    if dataset == "census":
        # 8 one-hot fields over the first width - 10 columns, then 10 numerics
        width = 500 if big else 60
        bounds = np.linspace(0, width - 10, 9).astype(int)
        categorical = [{"name": f"c{j}", "offset": int(a), "vocab": [str(v) for v in range(b - a)]}
                       for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        numeric = [{"name": f"n{j}", "mean": 0.0, "std": 1.0} for j in range(10)]
        return {"input_dim": width, "tasks": ["income", "marital"], "categorical": categorical,
                "numeric": numeric}
    if dataset == "multimnist":
        return {"image_shape": [1, 36, 36], "tasks": ["left", "right"], "num_classes": 10}
    low, high = (200, 3000) if big else (2, 40)
    cards = [int(c) for c in rng.integers(low, high, 26)]
    return {"cardinalities": cards, "offsets": [int(sum(cards[:j])) for j in range(26)],
            "num_dense": 13, "num_cat": 26, "table_size": int(sum(cards))}


def raw_batch(dataset, fmap, rng, n):
    """A batch as the MindRecord reader gives it (before ``make_batch``)."""
    if dataset == "census":
        cat = rng.integers(-1, fmap["input_dim"] - 10, (n, 8)).astype(np.int32)
        return {"cat": cat, "num": rng.normal(size=(n, 10)).astype(np.float32),
                "label": rng.integers(0, 2, (n, 2)).astype(np.float32)}
    if dataset == "multimnist":
        pixels = int(np.prod(fmap["image_shape"]))
        return {"image": rng.integers(0, 256, (n, pixels)).astype(np.uint8),
                "label": rng.integers(0, fmap["num_classes"], (n, 2)).astype(np.int32)}
    cat = np.stack([rng.integers(0, c, n) for c in fmap["cardinalities"]], axis=1).astype(np.int32)
    dense = np.log1p(rng.exponential(3.0, (n, 13))).astype(np.float32)
    return {"cat": cat, "dense": dense, "label": rng.integers(0, 2, (n, 1)).astype(np.float32)}


def config(model, extra=()):
    from src.config import parse_config
    argv = ["--model", model, "--epoch_size", "2"] + list(extra)
    return parse_config(argv, config_path=CPU_CONFIG)


# ---------------------------------------------------------------- comparisons
def _close(peer, ours, rtol=1e-5, atol=1e-5):
    diff = np.abs(np.asarray(peer, np.float64) - np.asarray(ours, np.float64))
    return bool(np.all(diff <= atol + rtol * np.abs(ours))), float(diff.max()) if diff.size else 0.0


def _ks_critical(n, m, alpha=1e-4):
    return np.sqrt(-0.5 * np.log(alpha / 2)) * np.sqrt((n + m) / (n * m))


def _ks(a, b):
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, "right") / a.size
                               - np.searchsorted(b, grid, "right") / b.size)))


# ---------------------------------------------------------------- the checks
def check_forward(name, model, cfg, variant=None, extra_rng_seed=0):
    """Returns ``(spec, fmap, network, peer)`` with identical weights."""
    import mindspore as ms
    from mindspore import Tensor
    from bench.peer import build_peer
    from src.registry import get_model_spec
    rng = np.random.default_rng(extra_rng_seed)
    spec = get_model_spec(model)
    fmap = feature_map(spec.dataset.name, rng)
    ms.set_seed(int(cfg.seed))
    network = spec.build_network(cfg, fmap)
    peer = build_peer(cfg, fmap, seed=int(cfg.seed), steps_per_epoch=STEPS_PER_EPOCH,
                      variant=variant)
    peer.load_from_mindspore(network)
    copied = peer.state_in_mindspore_layout(network)
    same = all(np.array_equal(copied[p.name], p.asnumpy()) for p in network.get_parameters())
    inputs = spec.make_batch(raw_batch(spec.dataset.name, fmap, rng, 48), fmap)[:-1]
    network.set_train(False)
    ours_logits = network(*[Tensor(a) for a in inputs]).asnumpy()
    ours_prob = spec.predictor(network)(*[Tensor(a) for a in inputs]).asnumpy()
    peer_logits, peer_prob = peer.logits(*inputs), peer.predict(*inputs)
    shapes = ours_prob.shape == peer_prob.shape and ours_logits.shape == peer_logits.shape
    ok_l, d_l = _close(peer_logits, ours_logits) if shapes else (False, np.inf)
    ok_p, d_p = _close(peer_prob, ours_prob) if shapes else (False, np.inf)
    report(name, "forward", same and shapes and ok_l and ok_p,
           f"weights copied exactly: {same}; logits {ours_logits.shape} max|diff| {d_l:.2e}, "
           f"probabilities {ours_prob.shape} max|diff| {d_p:.2e}")
    return spec, fmap, network, peer


def _compare_step(before, after, state):
    """Per tensor: strict and loose tolerance counts, the worst errors."""
    out = {"elements": 0, "outside_strict": 0, "bad": [], "worst": ("", 0.0),
           "worst_update": ("", 0.0), "moved": 0}
    for key, ours in after.items():
        diff = np.abs(state[key].astype(np.float64) - ours)
        update = float(np.abs(ours - before[key]).max())
        ulp = float(np.spacing(np.float32(np.abs(ours).max())))
        strict = 1e-6 + 1e-5 * np.abs(ours) + 4 * ulp
        out["elements"] += diff.size
        out["outside_strict"] += int(np.sum(diff > strict))
        out["moved"] += update > 0
        if np.any(diff > strict + LOOSE * update):
            out["bad"].append(key)
        rel = float(diff.max() / max(np.abs(ours).max(), 1e-12))
        if rel >= out["worst"][1]:
            out["worst"] = (key, rel)
        if update > 0 and diff.max() / update >= out["worst_update"][1]:
            out["worst_update"] = (key, float(diff.max() / update))
    return out


def check_train(name, spec, cfg, fmap, network, peer, seed=5):
    """TRAIN_STEPS steps; before each the peer is given our current weights (its
    optimizer state stays its own), after each every tensor is compared."""
    from mindspore import Tensor
    from src.engine.trainer import Trainer
    trainer = Trainer(spec, cfg, fmap, network, STEPS_PER_EPOCH, printer=lambda *a, **k: None)
    network.set_train(True)
    set_progress = getattr(trainer.net_with_loss, "set_progress", None)   # as Trainer.fit does
    transform = spec.train_transform(fmap, network)
    rng = np.random.default_rng(seed)
    ok, texts = True, []
    for step in range(TRAIN_STEPS):
        peer.load_from_mindspore(network)
        if set_progress is not None:
            set_progress((step + 1) / STEPS_PER_EPOCH)
        before = {p.name: p.asnumpy().copy() for p in network.get_parameters()}
        raw = raw_batch(spec.dataset.name, fmap, rng, int(cfg.batch_size))
        ours = float(trainer.train_step(*[Tensor(a) for a in transform(raw)]).asnumpy())
        theirs = peer.train_step(*spec.make_batch(raw, fmap))
        after = {p.name: p.asnumpy() for p in network.get_parameters()}
        cmp = _compare_step(before, after, peer.state_in_mindspore_layout(network))
        loss_ok = abs(ours - theirs) <= 1e-5 * max(1.0, abs(ours))
        step_ok = (loss_ok and not cmp["bad"] and cmp["moved"] > 0
                   and cmp["outside_strict"] <= STRICT_SHARE * cmp["elements"])
        ok &= step_ok
        texts.append(
            f"step {step + 1}: loss {ours:.6f}/{theirs:.6f}, {cmp['moved']}/{len(after)} moved, "
            f"{cmp['outside_strict']}/{cmp['elements']} outside strict, worst "
            f"{cmp['worst'][1]:.1e} of |param| ({cmp['worst'][0]}), "
            f"{cmp['worst_update'][1]:.1e} of update ({cmp['worst_update'][0]})"
            + (f" MISMATCH {cmp['bad']}" if cmp["bad"] else ""))
    report(name, "train", ok, texts[0])
    for text in texts[1:]:
        print(" " * 50 + text)


def check_init(name, model, cfg, variant=None):
    import mindspore as ms
    from bench.peer import build_peer
    from src.registry import get_model_spec
    rng = np.random.default_rng(11)
    spec = get_model_spec(model)
    fmap = feature_map(spec.dataset.name, rng, big=True)
    ms.set_seed(3)
    network = spec.build_network(cfg, fmap)
    peer = build_peer(cfg, fmap, seed=7, steps_per_epoch=STEPS_PER_EPOCH, variant=variant)
    state = peer.state_in_mindspore_layout(network)
    failures, lines, skipped = [], [], []
    for param in network.get_parameters():
        key, ours = param.name, param.asnumpy()
        theirs = state[key]
        if ours.shape != theirs.shape:
            failures.append(f"{key}: shape {theirs.shape} vs {ours.shape}")
            continue
        pieces = [(key, ours, theirs)]
        if key == "embedding.weight":            # per field (DLRM: U(+-sqrt(1/n_f)))
            cards = peer_module(model).embedding_fields(fmap)
            bounds = np.cumsum([0] + cards)
            pieces = [(f"{key}[field {f}]", ours[bounds[f]:bounds[f + 1]],
                       theirs[bounds[f]:bounds[f + 1]]) for f in range(len(cards))]
            if not np.array_equal(ours[-1], theirs[-1]):
                failures.append(f"{key}: scratch row differs")
        for label, a, b in pieces:
            if a.size > 1 and np.all(a == a.flat[0]):
                if not np.array_equal(a, b):
                    failures.append(f"{label}: ours constant {a.flat[0]}, peer not")
                continue
            if a.size < 10:
                skipped.append(label)
                continue
            d, crit = _ks(a, b), _ks_critical(a.size, b.size)
            std_ratio = float(b.std() / a.std())
            max_ratio = float(np.abs(b).max() / np.abs(a).max())
            lines.append(f"{label} n={a.size} std {a.std():.3g}/{b.std():.3g} "
                         f"max {np.abs(a).max():.3g}/{np.abs(b).max():.3g} KS {d:.3f}<{crit:.3f}")
            if d > crit:
                failures.append(f"{label}: KS {d:.3f} > {crit:.3f} (std ratio {std_ratio:.3f}, "
                                f"max ratio {max_ratio:.3f})")
    extra = getattr(peer_module(model), "extra_init_checks", None)
    if extra is not None:                 # checks of the peer's own (e.g. pooled small tensors)
        more_lines, more_failures = extra(cfg)
        lines += more_lines
        failures += more_failures
    report(name, "init", not failures,
           f"{len(lines)} tensors tested, {len(skipped)} with < 10 values skipped"
           + (f"; FAIL: {failures}" if failures else ""))
    for line in lines if os.environ.get("PEER_CHECK_VERBOSE") else []:
        print("        " + line)


def cases():
    """``(name, model, config overrides, run the init check, peer variant)`` of
    every peer's CHECKS (a CHECKS entry may name a variant as its fourth item)."""
    from src.registry import model_names
    return [(check[0], model, check[1], check[2], check[3] if len(check) > 3 else None)
            for model in model_names() if has_peer(model) for check in peer_module(model).CHECKS]


def main(argv=None):
    import mindspore as ms
    import torch
    from bench.peer import torch_threads
    argv = sys.argv[1:] if argv is None else argv
    wanted = set(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    # failed graph compiles write rank_*/ folders into the cwd: keep them out of the checkout
    import atexit
    import shutil
    import tempfile
    workdir = tempfile.mkdtemp(prefix="peer_check_")
    atexit.register(shutil.rmtree, workdir, True)
    os.chdir(workdir)
    torch_threads(2)
    torch.manual_seed(0)
    import warnings
    warnings.filterwarnings("ignore", message="Sparse invariant checks")   # torch's sparse Adagrad
    for name, model, extra, with_init, variant in cases():
        if wanted and model not in wanted and name not in wanted:
            continue
        start = time.time()
        cfg = config(model, extra)
        try:
            spec, fmap, network, peer = check_forward(name, model, cfg, variant)
            check_train(name, spec, cfg, fmap, network, peer)
            if with_init:
                check_init(name, model, cfg, variant)
        except Exception as exc:   # a crash is a failure of this case, the others still run
            import traceback
            traceback.print_exc()
            report(name, "error", False, f"{type(exc).__name__}: {exc}")
        print(f"      ({name}: {time.time() - start:.1f} s)", flush=True)
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed}/{len(RESULTS)} checks passed", flush=True)
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
