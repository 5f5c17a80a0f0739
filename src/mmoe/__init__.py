"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).

This package holds mmoe.py (the network) and spec.py (how the registry builds it); importing it imports nothing else.
"""
