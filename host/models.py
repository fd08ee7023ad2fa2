"""Example models for hwpart, each a zero-argument factory.

Use them as ``host/models.py:jet_tagger`` with the input shape in each
docstring. Weights are seeded so every run (and every test) sees the same model.
"""

from __future__ import annotations

import torch
from torch import nn


def jet_tagger() -> nn.Module:
    """hls4ml's jet-substructure tagging MLP, 16-64-32-32-5. Input shape: 16."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 5), nn.Softmax(dim=1),
    ).eval()


def small_cnn() -> nn.Module:
    """conv/ReLU/pool twice, flatten, linear. Input shape: 3,16,16."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    ).eval()


def lenet5() -> nn.Module:
    """LeNet-5-sized CNN: conv(1->6, 5x5) pool conv(6->16, 5x5) pool, dense 400-120-84-10.

    Input shape: 1,32,32. Its 400x120 dense layer is the one that must not be
    fully unrolled on a slot (issue 12, item 7): the overlay-build benchmark.
    """
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    ).eval()


class ResidualBlock(nn.Module):
    """ResNet basic block (conv-bn-relu-conv-bn + identity, relu) with a classifier head."""

    def __init__(self, channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = self.relu2(y + x)
        return self.fc(self.flatten(self.pool(y)))


def resnet_block() -> nn.Module:
    """A residual block with an add (DAG with a skip edge). Input shape: 3,16,16."""
    torch.manual_seed(2)
    model = ResidualBlock()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


class InceptionBlock(nn.Module):
    """Four parallel branches joined by a concat (DAG with fan-out and fan-in)."""

    def __init__(self, cin: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, 4, 1)
        self.b3_reduce = nn.Conv2d(cin, 4, 1)
        self.b3 = nn.Conv2d(4, 8, 3, padding=1)
        self.b5_reduce = nn.Conv2d(cin, 2, 1)
        self.b5 = nn.Conv2d(2, 4, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pool_proj = nn.Conv2d(cin, 4, 1)
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(20, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.b1(x)
        b = self.b3(self.b3_reduce(x))
        c = self.b5(self.b5_reduce(x))
        d = self.pool_proj(self.pool(x))
        y = self.relu(torch.cat([a, b, c, d], dim=1))
        return self.fc(self.flatten(self.gap(y)))


def inception_block() -> nn.Module:
    """An inception-style block with a concat. Input shape: 3,16,16."""
    torch.manual_seed(3)
    return InceptionBlock().eval()


#: name -> (factory, per-sample input shape); used by tests, benches and docs. Every test
#: that takes the ``example`` fixture runs each of these, so lenet5 (an overlay-build
#: benchmark, bench/overlay_build.py) is not among them.
EXAMPLES = {
    "jet_tagger": (jet_tagger, (16,)),
    "small_cnn": (small_cnn, (3, 16, 16)),
    "resnet_block": (resnet_block, (3, 16, 16)),
    "inception_block": (inception_block, (3, 16, 16)),
}
