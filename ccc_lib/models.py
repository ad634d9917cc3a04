"""The papers' classifier (a small CNN), with every layer named so that chapters can tap it.

Architecture: the classifier of the public reference implementation accompanying Suhail & Sethi's
network inversion (*Network Inversion of Convolutional Neural Nets*, arXiv 2407.18002, and *Network
Inversion for Generating Confidently Classified Counterfeits*, arXiv 2503.20187; bibliography keys
``suhail2024inversion``, ``suhail2025counterfeits`` in ``book/references.bib``) — a choice of that code,
not a setting the papers' texts fix: three blocks of Conv3×3 (32/64/128) + BatchNorm +
LeakyReLU(0.2) + MaxPool2 + Dropout2d(0.25), then Linear → 256 + BatchNorm1d + LeakyReLU +
Dropout(0.4) → N logits. The 256-d vector after the LeakyReLU is the *penultimate feature*.
Works for 1×28×28 and 3×32×32 inputs (and any size divisible by 8 after flooring)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["CNNConfig", "PaperCNN", "build_classifier"]


@dataclass(frozen=True)
class CNNConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    widths: tuple = (32, 64, 128)
    fc: int = 256
    conv_dropout: float = 0.25
    fc_dropout: float = 0.4
    negative_slope: float = 0.2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class PaperCNN(nn.Module):
    """The papers' classifier. ``layers`` is an ordered ``nn.Sequential`` whose children are named
    ``conv1, bn1, act1, pool1, drop1, ..., flatten, fc, bn_fc, act_fc, drop_fc, logits``."""

    #: the 256-d penultimate feature (after BatchNorm and LeakyReLU)
    feature_layer = "act_fc"

    def __init__(self, config: CNNConfig | None = None, **kw):
        super().__init__()
        self.config = config or CNNConfig(**kw)
        c = self.config
        mods = OrderedDict()
        ch, size = c.in_channels, c.image_size
        for i, w in enumerate(c.widths, start=1):
            mods[f"conv{i}"] = nn.Conv2d(ch, w, 3, padding=1)
            mods[f"bn{i}"] = nn.BatchNorm2d(w)
            mods[f"act{i}"] = nn.LeakyReLU(c.negative_slope)
            mods[f"pool{i}"] = nn.MaxPool2d(2)
            mods[f"drop{i}"] = nn.Dropout2d(c.conv_dropout)
            ch, size = w, size // 2
        mods["flatten"] = nn.Flatten()
        mods["fc"] = nn.Linear(ch * size * size, c.fc)
        mods["bn_fc"] = nn.BatchNorm1d(c.fc)
        mods["act_fc"] = nn.LeakyReLU(c.negative_slope)
        mods["drop_fc"] = nn.Dropout(c.fc_dropout)
        mods["logits"] = nn.Linear(c.fc, c.num_classes)
        self.layers = nn.Sequential(mods)

    @property
    def input_shape(self) -> tuple:
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def layer_names(self) -> list:
        return [n for n, _ in self.layers.named_children()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate (256-d) features."""
        return self.forward_with(x, [self.feature_layer])[1][self.feature_layer]

    def forward_with(self, x: torch.Tensor, names) -> tuple[torch.Tensor, dict]:
        """Logits and a dict of the named layers' outputs, in one pass."""
        names = set(names)
        unknown = names - set(self.layer_names)
        if unknown:
            raise KeyError(f"unknown layers {sorted(unknown)}; valid: {self.layer_names}")
        taps = {}
        for name, mod in self.layers.named_children():
            x = mod(x)
            if name in names:
                taps[name] = x
        return x, taps


def build_classifier(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, **kw) -> PaperCNN:
    return PaperCNN(CNNConfig(in_channels=in_channels, image_size=image_size, num_classes=num_classes, **kw))
