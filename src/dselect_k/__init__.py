"""DSelect-k: differentiable selection of k experts (Hazimeh et al., NeurIPS 2021).

This package holds gate.py and network.py (the gate and the network) and spec.py (how the registry builds it); importing it imports nothing else.
"""
