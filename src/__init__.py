"""Multi-task and CTR recommendation models on MindSpore."""
import os
import time

# MindSpore's C++ and Python logs: errors only unless the user sets GLOG_v.
# Set here, before anything imports mindspore.
os.environ.setdefault("GLOG_v", "3")

# When the project was first imported: src.engine.source_pin leaves files changed
# since alone.
IMPORTED_AT = time.time()
