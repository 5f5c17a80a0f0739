"""The data sets, as objects (see :mod:`src.datasets.base`)."""
from src.datasets.census import CENSUS
from src.datasets.criteo import CRITEO
from src.datasets.multimnist import MULTIMNIST

DATASETS = {d.name: d for d in (CENSUS, CRITEO, MULTIMNIST)}


def get_dataset(name):
    """The :class:`~src.datasets.base.DataSet` called ``name``."""
    if name not in DATASETS:
        raise ValueError(f"data set {name!r} is not available; choose one of "
                         f"{', '.join(sorted(DATASETS))}")
    return DATASETS[name]
