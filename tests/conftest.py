"""Test set-up: import the project from the repository root, run MindSpore
on CPU in graph mode, and keep its by-products out of the checkout."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")

import pytest  # noqa: E402

from src.engine.runtime import parameter_copies  # noqa: E402

# MindSpore reads its switch once per process, at its first graph compile;
# DLRM's CPU config sets parameter_copies none from its run's set-up, which in a
# test worker would come after other tests' compiles, or not: so every test runs with it
parameter_copies("none")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the cases marked slow (left out of the default run, which CI "
                          "makes, to keep it within 20 minutes on 2 cores)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: run only with --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: runs with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _mindspore_cpu(tmp_path_factory):
    """Graph mode on CPU; failed compiles write rank_*/ into the cwd, so the
    session runs from a temporary folder."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)
