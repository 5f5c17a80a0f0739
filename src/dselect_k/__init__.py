"""DSelect-k: differentiable selection of k experts (Hazimeh et al., NeurIPS 2021)."""
from src.dselect_k.gate import DSelectKGate, smooth_step

__all__ = ["DSelectKGate", "smooth_step"]
