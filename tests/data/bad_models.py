"""Models that exercise capture's fallbacks and errors (used by tests only)."""

import torch
from torch import nn


class ShapeBranch(nn.Module):
    """Control flow on a shape: fx cannot trace it, torch.export specialises it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 4)

    def forward(self, x):
        if x.shape[1] > 4:
            x = torch.relu(self.a(x))
        return self.b(x) + 1.0


class ValueBranch(nn.Module):
    """Control flow on tensor values: neither fx nor export can capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:
            return y * 2
        return y


def shape_branch():
    torch.manual_seed(0)
    return ShapeBranch().eval()


def value_branch():
    torch.manual_seed(0)
    return ValueBranch().eval()


def not_a_module():
    return 42


def broken():
    raise RuntimeError("weights file missing")
