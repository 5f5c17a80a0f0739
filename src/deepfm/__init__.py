"""DeepFM: factorisation machine plus deep network (Guo et al., IJCAI 2017)."""
from src.deepfm.deepfm import DeepFM

__all__ = ["DeepFM"]
