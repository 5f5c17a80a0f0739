"""Small file helpers shared across the project."""
import json
import os


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON through a temporary file and a rename, so a crash
    never leaves a truncated file that looks complete."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    return path
