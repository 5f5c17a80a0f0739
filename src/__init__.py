"""Multi-task and CTR recommendation models on MindSpore."""
import os

# MindSpore's C++ and Python logs: errors only unless the user sets GLOG_v.
# Set here, before anything imports mindspore.
os.environ.setdefault("GLOG_v", "3")
