"""Shared-Bottom: one shared network under one tower per task (Caruana 1997;
the baseline the MMoE paper compares against).

This package holds network.py (the network) and spec.py (how the registry
builds it); importing it imports nothing else.
"""
