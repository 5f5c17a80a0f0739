"""Times as people read them: one format for every ETA and elapsed time the
converters and the trainer print, and the wall-clock time their progress
lines start with."""
import time


def hms(seconds):
    """``h:mm:ss`` of a number of seconds (negative counts as 0)."""
    seconds = int(round(max(float(seconds), 0.0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def stamped(text):
    """``text`` after the local wall-clock time (``HH:MM:SS``), as progress lines start."""
    return f"{time.strftime('%H:%M:%S')} {text}"
