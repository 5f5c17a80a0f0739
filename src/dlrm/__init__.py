"""DLRM: Deep Learning Recommendation Model (Naumov et al., 2019).

This package holds dlrm.py (the network) and spec.py (how the registry builds it); importing it imports nothing else.
"""
