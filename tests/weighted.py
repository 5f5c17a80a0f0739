"""A cell for gradient tests: ``sum(cell(x) * sens)``, whose gradient with
respect to ``x`` (or to ``cell``'s weights) is ``cell``'s gradient of ``sens``."""
from mindspore import nn


class WeightedSum(nn.Cell):
    def __init__(self, cell, sens):
        super().__init__()
        self.cell, self.sens = cell, sens

    def construct(self, x):
        return (self.cell(x) * self.sens).sum()
