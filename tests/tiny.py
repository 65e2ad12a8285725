"""A tiny conv net and a learnable synthetic task for exact, fast tests."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Tiny(nn.Module):
    def __init__(self, classes: int = 2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def tiny_loaders(n: int = 64, seed: int = 0, batch_size: int = 16):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 1.5
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(TensorDataset(x[: n // 2], y[: n // 2]), batch_size=batch_size)
    return train, val
