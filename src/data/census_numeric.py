"""How Census-Income's numeric columns become model inputs.

Each numeric column is one standardised input (mean and spread of the
training rows), as upstream has it. Two options, recorded per column in the
feature map so that a converted data set always encodes the same way:

* ``numeric_transform: log1p`` takes ``sign(x) * log(1 + |x|)`` of the
  heavy-tailed money columns (:data:`HEAVY_TAILED`) before standardising:
  a capital gain of 99,999 no longer sits 30 spreads from the mean.
* ``numeric_buckets: N`` (N >= 2) also gives every numeric column a
  categorical field of up to about N quantile buckets of the training rows
  (one-hot like the other fields), so the network can respond to a range of a
  column, not only to a multiple of it. A value that fills a bucket of its own
  (zero capital gains: 96 % of the rows) keeps it, and the rest of the column
  is cut at its own quantiles. A column of at most N distinct values (a survey
  code, the year) gets a bucket per value, and the cuts are always values of
  the column, so no bucket falls between two neighbouring values.

A numeric spec in the feature map is ``{"name", "mean", "std"}`` plus
``"transform": "log1p"`` and ``"buckets": {"edges": [...], "offset": k}``
when those apply; bucket ``i`` of a value is the number of edges at or below
it, so ``len(edges) + 1`` one-hot columns from ``offset``.
"""
import numpy as np

TRANSFORMS = ("standard", "log1p")
# money columns whose spread is ruled by a few large values
HEAVY_TAILED = ("wage_per_hour", "capital_gains", "capital_losses", "stock_dividends",
                "instance_weight")


class NumericScaleError(ValueError):
    """A column's values cannot be scaled; ``row`` is the index of the worst one."""

    def __init__(self, message, row):
        super().__init__(message)
        self.row = row


def transformed(values, spec):
    """The column's values after the spec's transform (float64)."""
    values = np.asarray(values, dtype=np.float64)
    if spec.get("transform") == "log1p":
        return np.sign(values) * np.log1p(np.abs(values))
    return values


def bucket_edges(values, buckets):
    """Sorted unique cut points (bucket ``i`` of a value is the number of cut
    points at or below it), taken from the column's values.

    A column with at most ``buckets`` distinct values gets a bucket per value.
    Otherwise the cut points are the column's ``buckets``-quantiles, plus the
    quantiles of the rows off its most common value when that value holds
    more than one bucket's share of the rows."""
    common, counts = np.unique(values, return_counts=True)
    if len(common) <= int(buckets):
        return [float(v) for v in common]
    q = np.linspace(0.0, 1.0, int(buckets) + 1)[1:-1]
    edges = [np.quantile(values, q, method="higher")]
    top = common[np.argmax(counts)]
    if counts.max() > len(values) / buckets:
        rest = values[values != top]
        edges.append([top, np.nextafter(top, np.inf)])      # [top, top+): top alone
        if len(rest):
            edges.append(np.quantile(rest, q, method="higher"))
    return sorted(set(float(e) for part in edges for e in np.asarray(part).ravel()))


def fit_numeric(columns, transform="standard", buckets=0, offset=0):
    """Numeric specs fitted on the training rows ``columns`` (``{name: values}``,
    in order); bucket fields get one-hot columns from ``offset`` on.

    Raises :class:`NumericScaleError` when a column's mean or spread overflows.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"numeric_transform must be one of {TRANSFORMS}, got {transform!r}")
    if int(buckets) < 0 or int(buckets) == 1:
        raise ValueError(f"numeric_buckets must be 0 (none) or at least 2, got {buckets}")
    specs = []
    for name, raw in columns.items():
        spec = {"name": name}
        if transform == "log1p" and name in HEAVY_TAILED:
            spec["transform"] = "log1p"
        x = transformed(raw, spec)
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(x.mean()), float(x.std())
        if not (np.isfinite(mean) and np.isfinite(std)):
            worst = int(np.argmax(np.abs(x)))
            raise NumericScaleError(f"column {name!r} holds {x[worst]:g}, too large to scale "
                                    "(the column's mean or spread overflows)", worst)
        spec.update(mean=mean, std=std if std > 0 else 1.0)
        if int(buckets):
            edges = bucket_edges(x, int(buckets))
            spec["buckets"] = {"edges": edges, "offset": int(offset)}
            offset += len(edges) + 1
        specs.append(spec)
    return specs, offset


def scaled(raw, spec):
    """float32 standardised column; raises :class:`NumericScaleError` on overflow."""
    with np.errstate(over="ignore"):
        out = ((transformed(raw, spec) - spec["mean"]) / spec["std"]).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        raise NumericScaleError(f"column {spec['name']!r} holds {raw[bad[0]]:g}, which "
                                "overflows float32 once scaled", int(bad[0]))
    return out


def bucket_columns(raw_columns, specs):
    """int32 ``(n, fields)``: the global one-hot column of each bucketed
    numeric (the columns of specs without buckets are left out)."""
    parts = [np.searchsorted(np.asarray(s["buckets"]["edges"]), transformed(raw_columns[s["name"]], s),
                             side="right").astype(np.int32) + s["buckets"]["offset"]
             for s in specs if "buckets" in s]
    n = len(next(iter(raw_columns.values()))) if raw_columns else 0
    return np.stack(parts, axis=1) if parts else np.empty((n, 0), np.int32)
