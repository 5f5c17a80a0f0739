"""Keep the source text a run imported for MindSpore's graph compiles.

MindSpore's graph mode reads a Cell's ``construct`` from its source file when
it compiles (``inspect.getsourcelines``), and a run compiles some graphs long
after it started: the validation graph at the first evaluation, a new batch
shape, export at the end. Edit a project file while a run trains and that
compile reads the new text at the old code's line numbers: it fails (a
tuple where a tensor was, a name that does not exist) or builds a graph from
code the run never imported.

:func:`pin_sources` stores the text of every project module already imported
in :mod:`linecache`, marked so that :func:`linecache.checkcache` keeps it
(an entry without an mtime, as for files of a module loader), so later
compiles and tracebacks read the text the run imported.
"""
import linecache
import os
import sys
import tokenize

import src

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pin_sources(root=ROOT, since=None):
    """Pin the source of every imported module under ``root`` (see the module's
    text) and return the paths pinned. A file changed after ``since`` (a
    ``time.time()``; default: when :mod:`src` was imported) is left alone:
    which text was imported is unknown, so the usual lookup stays. Calling it
    again pins the modules imported since."""
    since = src.IMPORTED_AT if since is None else since
    root = os.path.realpath(root) + os.sep
    pinned = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or not os.path.realpath(path).startswith(root):
            continue
        entry = linecache.cache.get(path)
        if entry is not None and len(entry) == 4 and entry[1] is None:
            continue                                   # pinned already
        try:
            stat = os.stat(path)
            if stat.st_mtime > since:
                continue
            with tokenize.open(path) as fh:             # the encoding Python read it with
                lines = fh.readlines()
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        linecache.cache[path] = (stat.st_size, None, lines, path)
        pinned.append(path)
    return pinned
