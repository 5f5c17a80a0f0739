"""DLRM: Deep Learning Recommendation Model (Naumov et al., 2019)."""
from src.dlrm.dlrm import DLRM, interaction_width

__all__ = ["DLRM", "interaction_width"]
