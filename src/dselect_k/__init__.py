"""DSelect-k: differentiable selection of k experts (Hazimeh et al., NeurIPS 2021)."""
from src.dselect_k.gate import DSelectKGate, smooth_step
from src.dselect_k.network import CNNExperts, MultiTaskMoE

__all__ = ["CNNExperts", "DSelectKGate", "MultiTaskMoE", "smooth_step"]
