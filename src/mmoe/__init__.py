"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""
from src.mmoe.mmoe import MMoE

__all__ = ["MMoE"]
