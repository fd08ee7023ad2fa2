"""Small models for the overlay tests (zero-argument factories, seeded)."""

from __future__ import annotations

import torch
from torch import nn


def dense_gelu() -> nn.Module:
    """A dense group (da4ml RTL) followed by GELU, which hls4ml cannot convert. Input: 8."""
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.GELU()).eval()
