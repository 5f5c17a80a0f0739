"""Progress lines (lines done, rate, ETA) and step timings of a conversion."""
import time

from src.clock import hms


class Progress:
    """Prints lines done, lines/s and the ETA every ``every`` seconds; ``what``
    starts every line (e.g. ``"criteo pass 1/2"``)."""

    def __init__(self, what, total_lines=None, total_bytes=None, every=5.0, log=print):
        self.what, self.total_lines, self.total_bytes = what, total_lines, total_bytes
        self.every, self.log = float(every), log
        self.start = self.last = time.monotonic()

    def update(self, lines, position=None):
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        rate = lines / max(elapsed, 1e-9)
        if self.total_lines:
            frac = lines / self.total_lines
        elif self.total_bytes and position:
            frac = min(position / self.total_bytes, 1.0)
        else:
            frac = None
        text = f"{self.what}: {lines:,} lines"
        if frac:
            eta = elapsed * (1.0 - frac) / frac
            text += f" ({100 * frac:.1f} %), {rate:,.0f} lines/s, ETA {hms(eta)}"
        else:
            text += f", {rate:,.0f} lines/s"
        self.log(text)

    def done(self, lines):
        elapsed = time.monotonic() - self.start
        rate = lines / max(elapsed, 1e-9)
        self.log(f"{self.what}: done, {lines:,} lines in {elapsed:.1f} s ({rate:,.0f} lines/s)")
        return rate


class Clock:
    """Wall seconds of the steps of a conversion (``laps``: name -> seconds)."""

    def __init__(self):
        self.laps, self._last = {}, time.perf_counter()
        self.counted_values = 0         # distinct (field, value) pairs counted in pass 1

    def lap(self, name):
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
