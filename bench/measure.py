"""Driving worker processes: warm-up, calibration and interleaved repetitions."""
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys

from bench.workload import ROOT


class WorkerError(RuntimeError):
    """A worker failed to set up or to run; the message names the case and its log."""


# The OpenMP wait policies tried for the peer (PyTorch's CPU threads are
# libgomp's): None leaves OMP_WAIT_POLICY unset (libgomp spins a while, then
# sleeps), "PASSIVE" sleeps at once. "ACTIVE" is not tried: its threads spin
# for some 30 billion rounds after each parallel region, so an idle worker
# waiting for its turn would take the cores from the process being timed.
WAIT_POLICIES = (None, "PASSIVE")

# Linux's personality flag that starts programs without address-space
# randomisation; a process's flags pass to the programs it starts.
ADDR_NO_RANDOMIZE = 0x0040000
_layout = None


def fixed_layout():
    """Whether worker processes start with the same address-space layout, each
    like the last: the first call clears randomisation for the programs this
    process starts from then on (Linux ``personality``; a container's seccomp
    filter may refuse it, and then workers keep random layouts). Where a
    process's code and buffers lie can decide how they share the caches: with
    random layouts, processes of the same code were measured each at a speed
    of its own for its whole life, which the A/A control then reads as noise
    (bench/notes.md, "How the figures are taken")."""
    global _layout
    if _layout is None:
        _layout = False
        try:
            personality = ctypes.CDLL(None, use_errno=True).personality
            personality.argtypes, personality.restype = [ctypes.c_ulong], ctypes.c_int
            current = personality(0xFFFFFFFF)                # only asks
            if current != -1 and not current & ADDR_NO_RANDOMIZE:
                personality(current | ADDR_NO_RANDOMIZE)
            after = personality(0xFFFFFFFF)
            _layout = after != -1 and bool(after & ADDR_NO_RANDOMIZE)
        except (OSError, AttributeError):                   # not Linux
            pass
    return _layout


def peer_settings(threads):
    """The thread settings tried for the peer in a case: every wait policy with
    ``threads`` threads (0: every core) and, if that is more than one, a
    single thread (no team to wait for)."""
    threads = int(threads) or os.cpu_count() or 1
    if threads == 1:
        return [{"threads": 1, "wait": None}]
    return [{"threads": threads, "wait": wait} for wait in WAIT_POLICIES] + [{"threads": 1, "wait": None}]


def setting_name(setting):
    """``2 threads, OMP_WAIT_POLICY=PASSIVE`` and the like."""
    threads = setting["threads"]
    text = f"{threads} thread{'s' if threads != 1 else ''}"
    if threads > 1:
        text += f", OMP_WAIT_POLICY={setting['wait'] or 'unset'}"
    return text


class Worker:
    """One ``python -m bench.worker`` process (see its protocol). ``side`` is
    ``ours`` or ``peer``; ``variant``: the peer's variant (None: its
    default); ``setting`` (a dict of
    :func:`peer_settings`) gives its thread count and OpenMP wait policy
    instead of ``threads``; ``root``: the source tree it runs from (another
    checkout, for :mod:`bench.ab`); ``settings``: ``key=value`` config values
    of ours (:mod:`bench.ab`'s ``--set``)."""

    def __init__(self, side, kind, model, batch_size, data_path, log_path, cwd, threads=0,
                 setting=None, root=ROOT, variant=None, settings=()):
        self.name = f"{side}{':' + variant if variant else ''} {kind} {model} batch {batch_size}"
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.setdefault("GLOG_v", "3")
        if setting is not None:
            threads = setting["threads"]
            env.pop("OMP_WAIT_POLICY", None)
            if setting.get("wait"):
                env["OMP_WAIT_POLICY"] = setting["wait"]
            self.name += f" ({setting_name(setting)})"
        command = [sys.executable, "-m", "bench.worker", "--side", side, "--kind", kind,
                   "--model", model, "--batch_size", str(batch_size), "--data_path", data_path,
                   "--threads", str(threads)] + (["--variant", variant] if variant else [])
        command += [word for setting in settings for word in ("--set", setting)]
        fixed_layout()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, cwd=cwd, env=env)
        self.setup = self._answer("READY")

    def _answer(self, word):
        line = self.proc.stdout.readline()
        if not line.startswith(word + " "):
            self.close()
            reason = line.strip() or f"exited with code {self.proc.returncode}"
            raise WorkerError(f"{self.name}: {reason} (log: {self.log_path})")
        return json.loads(line[len(word) + 1:])

    def run(self, n):
        """``(seconds, items)`` of ``n`` units of work."""
        self.proc.stdin.write(f"RUN {int(n)}\n")
        self.proc.stdin.flush()
        answer = self._answer("DONE")
        return answer["seconds"], answer["items"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("QUIT\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def units_for(seconds_per_unit, target_seconds, least=2, most=100_000):
    """How many units make one repetition of about ``target_seconds``."""
    if seconds_per_unit <= 0:
        return most
    return int(min(most, max(least, round(target_seconds / seconds_per_unit))))


def _time_per_unit(worker, first, least_seconds):
    """Seconds per unit, from runs of growing length until one lasts
    ``least_seconds``: a few units can take no time at all (batches a reader
    had prepared ahead), which would size a repetition far too long."""
    n = first
    while True:
        seconds, _ = worker.run(n)
        if seconds >= least_seconds or n >= 10_000:
            return seconds / n
        n *= 4


def turn_order(sides, rep, ends=1):
    """The order of turn ``rep`` (from 0): ``sides``, reversed in odd turns, and
    in every other pair of turns with its first ``ends`` sides and its last
    ``ends`` swapped (each block reversed). A process starts its turn just
    after another's ends, whose leftovers (such as a reader filling its
    queue, or OpenMP threads still spinning) may take some of its time.
    With ours' processes ``ours#1 .. ours#2e`` in ``sides``, the first ``e``
    at its start and the others at its end (``ends`` = e), the odd-numbered
    and the even-numbered ones (the halves of :func:`halves_control`) follow
    every other process, and each other, equally often over four turns
    (with e = 1: each of ours' two processes follows the other, itself, the
    first side between them and the last), so neither half is more often the
    one after a given process (a fixed reversal put only ours' first after
    the peer's first process, and MMoE 2048's A/A control read that).
    """
    order = list(sides)
    ends = min(int(ends), len(order) // 2)
    if rep // 2 % 2 and ends > 0:
        order[:ends], order[-ends:] = order[-ends:][::-1], order[:ends][::-1]
    return order if rep % 2 == 0 else order[::-1]


def ours_ends(processes):
    """How many of ours' ``processes`` stand at each end of a case's sides (the
    first half before the peer's, the rest after), the ``ends`` of
    :func:`turn_order`."""
    return max(1, processes // 2)


def interleaved(workers, warmup, reps, target_seconds, calibrate=3, more=None, max_reps=None,
                ends=1):
    """Rates (items/s) of every worker in ``workers`` ({side: Worker}), measured
    in turns so machine noise hits all sides: each is warmed up (``warmup``
    units, or the most any of them asks for in its set-up,
    ``setup["warmup_units"]``: graph compiles, first reads, a training
    epoch's end; an older tree's worker may not ask), timed (in runs of
    growing length) to size a repetition of about ``target_seconds``, then
    the sides take turns ``reps`` times (in :func:`turn_order`, with
    ``ends``). After
    those, while ``more(rates)`` (rates so far, ``{side: [items/s per
    turn]}``) is true, they take further turns, up to ``max_reps`` in all.
    Returns ``{side: {"median", "min", "max", "rates", "units"}}``."""
    sides = list(workers)
    warmup = max([warmup] + [int(w.setup.get("warmup_units") or 0) for w in workers.values()])
    units = {}
    for side in sides:
        workers[side].run(warmup)
        per_unit = _time_per_unit(workers[side], calibrate, target_seconds / 10)
        units[side] = units_for(per_unit, target_seconds)
    rates = {side: [] for side in sides}
    rep = 0
    while rep < reps or (more is not None and rep < (max_reps or reps) and more(rates)):
        for side in turn_order(sides, rep, ends):
            seconds, items = workers[side].run(units[side])
            rates[side].append(items / seconds)
        rep += 1
    return {side: {"median": statistics.median(r), "min": min(r), "max": max(r), "rates": r,
                   "units": units[side]}
            for side, r in rates.items()}


def settle_turns(args, error):
    """The turns-until-precise options of ``args`` (``reps``, ``max_reps``,
    ``aa_se``): ``max_reps`` defaults to three times ``reps``; ``error(message)``
    (an argparse parser's) rejects a cap below ``reps`` or a non-positive error."""
    if args.max_reps is None:
        args.max_reps = 3 * args.reps
    if args.max_reps < args.reps or args.aa_se <= 0:
        error("--max_reps must be at least --reps and --aa_se positive")


def imprecise(se, aa_se):
    """Whether an A/A control with standard error ``se`` (None before two
    turns) needs further turns to get down to ``aa_se``."""
    return se is None or se > aa_se


def paired_ratio(first, second):
    """``(ratio, standard_error)`` of two sides measured in the same turns
    (``first[i]`` and ``second[i]`` in turn i): the geometric mean of the
    per-turn ratios, which takes out the load a turn's runs share, and the
    standard error of its logarithm (about the relative error of the ratio;
    None with fewer than 2 turns)."""
    logs = [math.log(a / b) for a, b in zip(first, second)]
    if not logs:
        raise ValueError("paired_ratio: no turn measured both sides")
    se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) >= 2 else None
    return math.exp(statistics.fmean(logs)), se


def turn_means(rates, labels):
    """Per turn, the geometric mean of the rates of ``labels`` (``rates``:
    ``{label: [items/s per turn]}``)."""
    turns = list(zip(*(rates[label] for label in labels)))
    return [math.exp(math.fsum(math.log(r) for r in turn) / len(turn)) for turn in turns]


def halves_control(rates, side):
    """``(ratio, standard_error)``: the A/A control of ``side``'s processes
    ``side#1 .. side#n`` in ``rates`` (n >= 2): its odd-numbered processes
    against its even-numbered ones, each half's rates taken per turn as
    their geometric mean (:func:`turn_means`), paired turn by turn
    (:func:`paired_ratio`). With two processes, the first against the
    second. A process's speed has a draw of its own for its whole life, so
    halves of several processes average several draws each and read less of
    that chance (bench/notes.md, "How the figures are taken")."""
    labels = sorted((label for label in rates if side_of(label) == side),
                    key=lambda label: int(label.rpartition("#")[2]))
    if len(labels) < 2:
        raise ValueError(f"halves_control: {side} has {len(labels)} process(es), needs 2")
    return paired_ratio(turn_means(rates, labels[0::2]), turn_means(rates, labels[1::2]))


def side_of(label):
    """The side a worker label names: ``ours#2`` (ours' second process) -> ``ours``,
    ``peer:reference@1#1`` -> ``peer:reference@1``."""
    return label.split("#")[0]


def peer_side(side):
    """``(variant, setting)`` of a peer side ``peer[:<variant>][@<setting n>]``
    (None for what it leaves out; ``n`` indexes :func:`peer_settings`); None
    for a side that is not the peer's."""
    base, _, setting = side.partition("@")
    name, _, variant = base.partition(":")
    if name != "peer":
        return None
    return variant or None, int(setting) if setting else None


def pooled(results):
    """Rates of labels ``side#n`` (a side's n-th process) pooled per side:
    ``{side: {"median", "min", "max", "rates", "processes", "units"}}`` with
    ``processes`` the median of each process and ``units`` its units per
    repetition, in label order. A label without ``#`` is its own side."""
    sides = {}
    for label, figures in results.items():
        sides.setdefault(side_of(label), []).append(figures)
    out = {}
    for side, parts in sides.items():
        rates = [r for part in parts for r in part["rates"]]
        out[side] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "rates": rates, "processes": [part["median"] for part in parts],
                     "units": [part["units"] for part in parts]}
    return out
