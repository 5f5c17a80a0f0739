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


FEATURE_MAP_FILE = "feature_map.json"


def read_feature_map(data_dir, dataset, format_version, convert_command):
    """``data_dir/feature_map.json`` of a converted data set, checked: a clear
    error when it is missing (naming ``convert_command``), belongs to another
    data set or to another format version."""
    path = os.path.join(data_dir, FEATURE_MAP_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: run the converter first: {convert_command}")
    with open(path, encoding="utf-8") as fh:
        fmap = json.load(fh)
    if fmap.get("dataset") != dataset:
        raise ValueError(f"{path} describes the data set {fmap.get('dataset')!r}, not {dataset}: "
                         f"point data_path at a converted {dataset} folder")
    if fmap.get("format_version") != format_version:
        raise ValueError(f"{path} has format version {fmap.get('format_version')!r}, this code reads "
                         f"version {format_version}: convert the data again")
    return fmap
