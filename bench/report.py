"""The benchmark table: machine, versions, command and one row per case,
as JSON and as markdown."""
import datetime
import os
import platform
import subprocess

from bench.converter import MIN_RATE
from bench.workload import ROOT
from src.fileio import write_json_atomic

GROUPS = {
    "train": ("Training throughput",
              "Samples/s of whole training steps: the batch read from MindRecord by the project's "
              "reader, forward, backward, optimizer update, loss fetched. Ratio = ours / peer. "
              "Each side runs in several processes, measured in turns and pooled."),
    "pipeline": ("Input pipeline",
                 "Rows/s the MindRecord reader delivers with the transform training applies, "
                 "against the samples/s this project's training consumes in the same case. "
                 "Ratio = reader / training."),
    "predict": ("Inference from Python",
                "Samples/s of predicting one fixed batch, numpy in, probabilities out "
                "(ours: the exported Predictor cell in GRAPH_MODE; peer: eval mode under "
                "torch.inference_mode). Latency = batch / rate. Ratio = ours / peer."),
    "cpp": ("Inference from C++",
            "Samples/s of ascend310_infer/'s program on CPU (MindSpore Lite) running the "
            "exported model, Model::Predict timed alone, against the peer's Python figure of the "
            "same batch. Ratio = ours / peer."),
    "converter": ("Criteo converter",
                  "Lines/s of `python -m src.data.criteo` (both passes, end to end) on generated "
                  "Kaggle-format files, and its memory."),
}


def _cpuinfo_field(names, cpuinfo="/proc/cpuinfo"):
    """The value of the first line of ``cpuinfo`` that starts with one of
    ``names``, stripped; None without one (or without the file)."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith(names)), None)
    except OSError:
        return None


def _cpu_model():
    return _cpuinfo_field(("model name",)) or platform.processor() or "unknown"


# the widest vector instructions first: they set what each side's matrix
# products can reach, and a model name ("Intel(R) Xeon(R) Processor") may not
# tell two machines apart
SIMD_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"))


def _simd(cpuinfo="/proc/cpuinfo"):
    flags = (_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split()
    return next((name for flag, name in SIMD_FLAGS if flag in flags), "unknown")


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return round(kib / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        return None


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:          # not installed, or broken: the table says so
        return "not installed"


def _commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment(command):
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "commit": _commit(),
        "machine": {"cpu": _cpu_model(), "simd": _simd(), "cores": os.cpu_count(),
                    "memory_gib": _memory_gib(), "os": platform.platform()},
        "versions": {"python": platform.python_version(), "mindspore": _version("mindspore"),
                     "torch": _version("torch"), "numpy": _version("numpy")},
    }


def num(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


CONVERTER_TARGET = f">= {MIN_RATE:,} lines/s; memory flat in lines"


def _ratio(value):
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else num(value)


# a run claims a target against the peer only when its A/A controls (ours
# against ours) all land in this range: beyond it the machine's load, not the
# code, decides the ratios
AA_RANGE = (0.95, 1.05)
# the groups whose targets compare this project with the peer
AGAINST_PEER = ("train", "predict", "cpp")


def judge(report):
    """``report["validity"]``: whether the run's A/A controls allow claiming
    its targets against the peer (``valid`` True, False, or None when the run
    has no A/A control), and the cases outside :data:`AA_RANGE`."""
    controls = [(r["case"], r["control"]) for r in report["cases"] if r.get("control") is not None]
    outside = [{"case": case, "control": c} for case, c in controls
               if not AA_RANGE[0] <= c <= AA_RANGE[1]]
    report["validity"] = {"aa_range": list(AA_RANGE), "controls": len(controls),
                          "outside": outside, "valid": (not outside) if controls else None}
    return report["validity"]


def _met(row, validity=None):
    if validity is not None and row["group"] in AGAINST_PEER and row.get("met") is not None:
        if validity["valid"] is not True:           # a miss stays visible, a pass is not claimed
            why = "A/A" if validity["valid"] is False else "no A/A"
            return f"not claimed ({why})" if row["met"] else f"**no** ({why})"
    return {True: "yes", False: "**no**", None: "-"}[row.get("met")]


def _target(row):
    """A case measured against the peer without one (no peer module, or
    ``--sides ours``) has no ratio to hold to its target."""
    if row["group"] in AGAINST_PEER and row.get("ratio") is None:
        return "- (no peer)"
    return row["target"]


def _mflop(flops):
    return "-" if not flops else f"{flops / 1e6:.4g}"


def _percent(share):
    return "-" if share is None else f"{100 * share:.1f} %"


def _peak_line(report):
    peak = report.get("peak")
    where = (f"{peak['flops_per_s'] / 1e9:.0f} GFLOP/s ({peak['how']}, measured in this run)"
             if peak else "not measured")
    return ("FLOPs per sample: the matrix products of one step (forward and backward) or one "
            "prediction, counted on the peer's same network (`bench/flops.py`); % of peak: "
            f"ours' samples/s times that, over the machine's peak, {where}.")


PEER_LINE = ("Peer: the fastest of its runs in the case: every variant (other peer variants: "
             "their best samples/s) in every thread setting (OpenMP wait policy, or one thread), "
             "one process each, all in the same turns as ours.")


def _peer_as_run(row):
    """The peer variant and thread setting a row's peer figure comes from."""
    return "; ".join(p for p in (row.get("peer_variant"), row.get("peer_setting")) if p) or "-"


def _other_variants(row):
    """Every other variant of the peer at its fastest setting."""
    best = {}
    for run in row.get("peer_runs") or []:
        if run["variant"] != row.get("peer_variant"):
            best[run["variant"]] = max(best.get(run["variant"], 0.0), run["median"])
    return ", ".join(f"{name} {num(rate)}" for name, rate in best.items()) or "-"


def _repetitions(report):
    """The header's line on repetitions: how many, how long, how many processes,
    and the turns the training cases took to make their A/A control precise."""
    settings = report["settings"]
    text = (f"median of {settings['reps']} interleaved repetitions of about {settings['seconds']} s "
            f"per process, after warm-up; {settings.get('processes', 1)} process(es) per side in "
            f"the training cases")
    turns = [r["turns"] for r in report["cases"] if r.get("turns")]
    if turns and settings.get("max_reps", settings["reps"]) > settings["reps"]:
        text += (f", which take further turns while their A/A control's standard error is above "
                 f"{settings['aa_se']} (up to {settings['max_reps']}): "
                 f"{_span(min(turns), max(turns))} turns in this run")
    if "fixed_layout" in settings:
        text += ("; worker processes without address-space randomisation" if settings["fixed_layout"]
                 else "; worker processes with random address-space layouts (the system refused "
                      "to fix them)")
    return text


def _span(low, high):
    return f"{low}" if low == high else f"{low}-{high}"


def _control_line(rows, processes=2):
    """What the A/A column holds (the paired control since it has an error;
    halves of ``processes`` processes since there were more than two)."""
    how = ("the geometric mean of their per-turn ratios ± its standard error"
           if any(r.get("control_se") is not None for r in rows)
           else "the ratio of their medians")
    who = ("ours' first process against its second" if processes <= 2 else
           f"ours' odd-numbered processes against its even-numbered ones ({processes // 2} "
           f"against {processes // 2}, each half's rate per turn the geometric mean of its "
           "processes')")
    return f"A/A: {who}, {how}: how far from 1.0 a ratio lands by chance on this machine."


def _control(row):
    """The A/A cell: the control and, where measured, its standard error."""
    if row.get("control_se") is None:
        return _ratio(row.get("control"))
    return f"{_ratio(row['control'])} ± {row['control_se']:.3f}"


def markdown(report):
    env = report["environment"]
    m, v = env["machine"], env["versions"]
    lines = [
        "# Benchmarks",
        "",
        "This project against a PyTorch implementation of the same networks (bench/peer/), "
        "measured side by side in one run. How the figures are taken, what was tried where a "
        "target was missed, and how to rerun: see the end of this page.",
        "",
        f"- Date: {env['date']}; commit {env['commit']}",
        f"- Command: `{env['command']}`",
        f"- Machine: {m['cpu']} ({m.get('simd', 'vector instructions not recorded')}), "
        f"{m['cores']} cores, {m['memory_gib']} GiB; {m['os']}",
        f"- Versions: Python {v['python']}, MindSpore {v['mindspore']}, PyTorch {v['torch']}, "
        f"NumPy {v['numpy']}",
        f"- Repetitions: {_repetitions(report)}",
        "",
    ]
    validity = judge(report)
    low, high = validity["aa_range"]
    if validity["valid"] is False:
        cases = ", ".join(f"{o['case']} {o['control']:.3f}" for o in validity["outside"])
        lines += [f"**Invalid run: A/A outside {low}-{high}** ({cases}). The machine's load, not "
                  "the code, decides ratios this far apart; no target against the peer is "
                  "claimed. Rerun on an idle machine.", ""]
    elif validity["valid"] is None:
        lines += ["No A/A control in this run (one process per side, or no training case): no "
                  "target against the peer is claimed.", ""]
    for group, (title, about) in GROUPS.items():
        rows = [r for r in report["cases"] if r["group"] == group]
        if not rows:
            continue
        lines += [f"## {title}", "", about, ""]
        if group == "converter":
            lines += ["Memory: the peak of the converting process and its workers together "
                      "(proportional set size, shared pages counted once), which includes "
                      "MindSpore's import; vocabulary: the kept values, which are what memory "
                      "may grow with.", "",
                      "| case | lines | lines/s | seconds | memory (MiB) | vocabulary values | "
                      "target | met |",
                      "|---|---:|---:|---:|---:|---:|---|---|"]
            for r in rows:
                lines.append(f"| {r['case']} | {r['lines']:,} | {num(r['ours'])} | "
                             f"{num(r.get('seconds'))} | {num(r.get('peak_pss_total_mb'))} | "
                             f"{num(r.get('vocabulary_rows'))} | "
                             f"{CONVERTER_TARGET} | {_met(r, validity)} |")
        else:
            latency = group in ("predict", "cpp")
            control = any("control" in r for r in rows)
            flops = any(r.get("flops_per_sample") for r in rows)
            if control:
                lines += [_control_line(rows, report["settings"].get("processes", 2)), ""]
            if flops:
                lines += [_peak_line(report), ""]
            as_run = any(r.get("peer_variant") or r.get("peer_setting") for r in rows)
            if as_run:
                lines += [PEER_LINE, ""]
            head = ("| case | unit | ours | peer | ratio |" + (" A/A |" if control else "")
                    + (" ours ms/batch | peer ms/batch |" if latency else "")
                    + (" MFLOP/sample | % of peak |" if flops else "")
                    + (" peer as run | other peer variants |" if as_run else ""))
            lines += [head + " target | met |",
                      "|---|---|---:|---:|---:|" + ("---:|" if control else "")
                      + ("---:|---:|" if latency else "") + ("---:|---:|" if flops else "")
                      + ("---|---|" if as_run else "") + "---|---|"]
            for r in rows:
                extra = ""
                if control:
                    extra += f" {_control(r)} |"
                if latency:
                    extra += f" {num(r.get('ours_ms'))} | {num(r.get('peer_ms'))} |"
                if flops:
                    extra += f" {_mflop(r.get('flops_per_sample'))} | {_percent(r.get('peak_share'))} |"
                if as_run:
                    extra += f" {_peer_as_run(r)} | {_other_variants(r)} |"
                lines.append(f"| {r['case']} | {r['unit']} | {num(r['ours'])} | {num(r.get('peer'))} | "
                             f"{_ratio(r.get('ratio'))} |{extra} {_target(r)} | {_met(r, validity)} |")
        lines.append("")
    if report.get("errors"):
        lines += ["## Cases that failed", ""] + [f"- {e}" for e in report["errors"]] + [""]
    return "\n".join(lines)


def write(report, json_path, md_path, notes=None):
    """The JSON and the markdown (``notes``: markdown appended after the table)."""
    text = markdown(report) + ("\n" + notes if notes else "")     # sets report["validity"]
    write_json_atomic(json_path, report)
    tmp = md_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, md_path)
