"""DeepFM: factorisation machine plus deep network (Guo et al., IJCAI 2017).

This package holds deepfm.py (the network) and spec.py (how the registry builds it); importing it imports nothing else.
"""
