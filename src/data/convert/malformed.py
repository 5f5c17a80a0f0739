"""The malformed-line policy: stop at the first malformed line, naming file and
line, or (``skip``) skip them, count them and record the first few."""

MAX_REPORTED = 10


def first_malformed_error(path, line_before, problems, error=ValueError):
    i, text = problems[0]
    return error(f"{path}: line {line_before + i + 1}: {text} (use skip_malformed / "
                 f"--skip_malformed to skip malformed lines)")


class MalformedLines:
    """Malformed lines met in a pass: raise at the first, or (``skip``) count
    them and keep the first few ``{file, line, reason}``."""

    def __init__(self, skip, keep=MAX_REPORTED, error=ValueError):
        self.skip, self.keep, self.count, self.first = bool(skip), keep, 0, []
        self.error = error          # the exception raised when not skipping

    def check(self, path, line_before, problems, bad):
        """A chunk's ``problems`` (``(line index, text)`` of its first
        malformed lines) and ``bad`` (its number of malformed lines);
        ``line_before``: lines of the file before the chunk."""
        if not problems:
            return
        if not self.skip:
            raise first_malformed_error(path, line_before, problems, self.error)
        self.count += int(bad)
        for i, text in problems:
            if len(self.first) < self.keep:
                self.first.append({"file": path, "line": line_before + i + 1, "reason": text})

    def report(self):
        return {"count": self.count, "skip_malformed": self.skip, "first": self.first}
