"""The papers' classifier (a small CNN), with every layer named so that chapters can tap it.

Architecture: ours, within what Suhail & Sethi's papers state (*Network Inversion of Convolutional
Neural Nets*, arXiv 2407.18002, and *Network Inversion for Generating Confidently Classified
Counterfeits*, arXiv 2503.20187; bibliography keys ``suhail2024inversion``, ``suhail2025counterfeits``
in ``book/references.bib``): "convolutional layers, dropout layers, batch normalization, and
leaky-relu activation followed by fully connected layers and softmax". The sizes are ours (an
unattributed public implementation uses the same; its repository could not be identified): three
blocks of Conv3×3 (32/64/128) + BatchNorm + LeakyReLU(0.2) + MaxPool2 + Dropout2d(0.25), then
Linear → 256 + BatchNorm1d + LeakyReLU + Dropout(0.4) → N logits. The 256-d vector after the LeakyReLU is the *penultimate feature*.
Works for 1×28×28 and 3×32×32 inputs (and any size divisible by 8 after flooring).

Two other architectures, ours (not the papers'), let chapter 1 check that its settings carry over to
classifiers other than the papers' CNN: :class:`MLPClassifier` (a fully connected network) and
:class:`ResCNN` (a small residual CNN with global average pooling). :func:`build_model` builds any of
the three by name."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["CNNConfig", "PaperCNN", "build_classifier", "MLPConfig", "MLPClassifier", "ResCNNConfig", "ResCNN",
           "MODELS", "build_model"]


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


class _Named(nn.Module):
    """Shared plumbing of every classifier here (the papers' CNN and ours): ``layers`` (an ordered
    Sequential), the input shape, the class count, and ``forward_with`` (logits and named layers'
    outputs in one pass)."""

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
        """The penultimate features (``feature_layer``)."""
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


class PaperCNN(_Named):
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


def build_classifier(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, **kw) -> PaperCNN:
    return PaperCNN(CNNConfig(in_channels=in_channels, image_size=image_size, num_classes=num_classes, **kw))


@dataclass(frozen=True)
class MLPConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    hidden: tuple = (512, 256)
    dropout: float = 0.2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class MLPClassifier(_Named):
    """A fully connected classifier (ours): flatten → [Linear + BatchNorm1d + ReLU + Dropout] per
    hidden width → N logits. The penultimate feature is the last hidden layer's activation
    (``act{k}``, k the number of hidden layers)."""

    def __init__(self, config: MLPConfig | None = None, **kw):
        super().__init__()
        self.config = c = config or MLPConfig(**kw)
        mods = OrderedDict(flatten=nn.Flatten())
        d = c.in_channels * c.image_size * c.image_size
        for i, w in enumerate(c.hidden, start=1):
            mods[f"fc{i}"] = nn.Linear(d, w)
            mods[f"bn{i}"] = nn.BatchNorm1d(w)
            mods[f"act{i}"] = nn.ReLU()
            mods[f"drop{i}"] = nn.Dropout(c.dropout)
            d = w
        mods["logits"] = nn.Linear(d, c.num_classes)
        self.layers = nn.Sequential(mods)
        self.feature_layer = f"act{len(c.hidden)}"


@dataclass(frozen=True)
class ResCNNConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    widths: tuple = (16, 32, 64)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


class _ResBlock(nn.Module):
    """Two 3×3 convs with BatchNorm and a skip (a 1×1 conv where the width or stride changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ResCNN(_Named):
    """A small residual CNN (ours): a 3×3 stem, one residual block per width (stride 2 after the
    first), global average pooling → the penultimate feature (``pool``) → N logits."""

    feature_layer = "pool"

    def __init__(self, config: ResCNNConfig | None = None, **kw):
        super().__init__()
        self.config = c = config or ResCNNConfig(**kw)
        mods = OrderedDict(stem=nn.Conv2d(c.in_channels, c.widths[0], 3, 1, 1, bias=False),
                           bn_stem=nn.BatchNorm2d(c.widths[0]), act_stem=nn.ReLU())
        ch = c.widths[0]
        for i, w in enumerate(c.widths, start=1):
            mods[f"block{i}"] = _ResBlock(ch, w, 1 if i == 1 else 2)
            ch = w
        mods["gap"] = nn.AdaptiveAvgPool2d(1)
        mods["pool"] = nn.Flatten()
        mods["logits"] = nn.Linear(ch, c.num_classes)
        self.layers = nn.Sequential(mods)


#: name → (model class, config class)
MODELS = {"paper_cnn": (PaperCNN, CNNConfig), "mlp": (MLPClassifier, MLPConfig), "rescnn": (ResCNN, ResCNNConfig)}


def build_model(name: str, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, **kw) -> nn.Module:
    """A classifier of architecture ``name`` (:data:`MODELS`: ``"paper_cnn"``, ``"mlp"``, ``"rescnn"``)."""
    if name not in MODELS:
        from .checks import InputError
        raise InputError(f"unknown architecture {name!r}; pick one of {sorted(MODELS)}")
    model_cls, cfg_cls = MODELS[name]
    return model_cls(cfg_cls(in_channels=in_channels, image_size=image_size, num_classes=num_classes, **kw))
