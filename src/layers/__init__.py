"""Building blocks shared by the models."""
from src.layers.initializers import make_initializer
from src.layers.towers import TaskTowers

__all__ = ["make_initializer", "TaskTowers"]
