"""Architectures, by name. Small ones are plain `nn.Sequential`s of fusable layers (see fused.py);
large ones come from torchvision and train member by member.

| name           | from                                   | input           |
| mlp            | 2 hidden layers of 256 (width x)       | any             |
| lenet5         | LeNet-5 with BatchNorm (Pliushch)      | 28x28 / 32x32   |
| small-stvgg    | Hacohen et al. appendix B              | any, >= 4 px    |
| stvgg          | Hacohen et al. appendix B              | >= 16 px        |
| linear-stvgg   | stvgg, identity activations, avg pool  | >= 16 px        |
| fastconv       | small fast-converging conv net (below) | any, >= 8 px    |
| resnet18-cifar | ResNet-18 for 32x32 (3x3 stem, no pool)| small images    |
| resnet18, resnet50, densenet121, vgg16 | torchvision, random init | 224x224 |
"""

from __future__ import annotations

import torch
from torch import nn

from curate.errors import CurateError

SEQUENTIAL_ARCHS = ("mlp", "lenet5", "small-stvgg", "stvgg", "linear-stvgg", "fastconv")
TORCHVISION_ARCHS = ("resnet18", "resnet50", "densenet121", "vgg16")
ARCHS = SEQUENTIAL_ARCHS + ("resnet18-cifar",) + TORCHVISION_ARCHS


def _flat_size(layers: list[nn.Module], in_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(nn.Sequential(*layers)(torch.zeros(1, *in_shape)).numel())


def mlp(in_shape, k: int, width: int = 256, dropout: bool = True) -> nn.Sequential:
    c, h, w = in_shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, k),
    )


def lenet5(in_shape, k: int, width: int = 6, dropout: bool = True) -> nn.Sequential:
    c, h, _ = in_shape
    w1, w2 = width, int(width * 16 / 6)
    pad = 2 if h < 32 else 0  # 28x28 MNIST: pad to the 32x32 LeNet expects
    feats = [
        nn.Conv2d(c, w1, 5, padding=pad),
        nn.BatchNorm2d(w1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(w1, w2, 5, padding=2 if h < 16 else 0),
        nn.BatchNorm2d(w2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    n = _flat_size(feats, in_shape)
    return nn.Sequential(
        *feats,
        nn.Linear(n, 120),
        nn.BatchNorm1d(120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.BatchNorm1d(84),
        nn.ReLU(),
        nn.Linear(84, k),
    )


def _vgg_blocks(in_shape, filters, kernels, act, pool, dropout: bool) -> list[nn.Module]:
    c = in_shape[0]
    layers: list[nn.Module] = []
    for i, (f, ks) in enumerate(zip(filters, kernels, strict=True)):
        layers += [nn.Conv2d(c, f, ks, padding="same"), act()]
        c = f
        if i % 2 == 1:
            layers.append(pool(2))
            if dropout:
                layers.append(nn.Dropout(0.25))
    return layers + [nn.Flatten()]


def _stvgg(in_shape, k, filters, kernels, hidden, act, pool, dropout) -> nn.Sequential:
    feats = _vgg_blocks(in_shape, filters, kernels, act, pool, dropout)
    n = _flat_size(feats, in_shape)
    head = (
        [nn.Linear(n, hidden), act()]
        + ([nn.Dropout(0.5)] if dropout else [])
        + [nn.Linear(hidden, k)]
    )
    return nn.Sequential(*feats, *head)


def small_stvgg(in_shape, k: int, width: int = 32, dropout: bool = True) -> nn.Sequential:
    f = [width, width, 2 * width, 2 * width]
    return _stvgg(in_shape, k, f, [3] * 4, 4 * width, nn.ReLU, nn.MaxPool2d, dropout)


def stvgg(in_shape, k: int, width: int = 32, dropout: bool = True) -> nn.Sequential:
    f = [width, width, 2 * width, 2 * width, 4 * width, 4 * width, 8 * width, 8 * width]
    return _stvgg(in_shape, k, f, [3] * 6 + [2] * 2, 16 * width, nn.ReLU, nn.MaxPool2d, dropout)


def linear_stvgg(in_shape, k: int, width: int = 32, dropout: bool = True) -> nn.Sequential:
    f = [width, width, 2 * width, 2 * width, 4 * width, 4 * width, 8 * width, 8 * width]
    return _stvgg(in_shape, k, f, [3] * 6 + [2] * 2, 16 * width, nn.Identity, nn.AvgPool2d, dropout)


def fastconv(in_shape, k: int, width: int = 32, dropout: bool = True) -> nn.Sequential:
    """A small conv net built to converge in a few epochs on a CPU, after the idea of Keller
    Jordan's airbench (CIFAR-10 speed runs): a 3x3 stem, then three blocks of
    conv -> 2x2 max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU with widths
    w, 2w, 4w, a global max-pool and one linear layer. No residuals, no dropout (`dropout` is
    ignored). Convolutions have no bias (BatchNorm follows each). Default w = 32: about 0.3 M
    parameters and 27 M multiply-adds per 32x32 image (w = 16: 75 k and 7 M).
    Sequential, so members can be fused."""
    c = in_shape[0]
    layers: list[nn.Module] = [
        nn.Conv2d(c, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.GELU(),
    ]
    cin = width
    for cout in (width, 2 * width, 4 * width):
        layers += [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(cout),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.GELU(),
        ]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, k))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(out)) + self.short(x))


def resnet18_cifar(in_shape, k: int, width: int = 64, dropout: bool = True) -> nn.Module:
    c = in_shape[0]
    layers: list[nn.Module] = [
        nn.Conv2d(c, width, 3, 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    cin = width
    for i, mult in enumerate((1, 2, 4, 8)):
        cout = width * mult
        layers += [_BasicBlock(cin, cout, 1 if i == 0 else 2), _BasicBlock(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, k))


_BUILDERS = {
    "mlp": mlp,
    "lenet5": lenet5,
    "small-stvgg": small_stvgg,
    "stvgg": stvgg,
    "linear-stvgg": linear_stvgg,
    "fastconv": fastconv,
    "resnet18-cifar": resnet18_cifar,
}


def build_model(
    arch: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    width: int = 0,
    dropout: bool = True,
) -> nn.Module:
    """A freshly initialised member (uses torch's global RNG: seed it first).

    in_shape : (C, H, W) of the input; num_classes : K. Output: logits (B, K).
    """
    if arch in _BUILDERS:
        kw = {"width": width} if width else {}
        try:
            return _BUILDERS[arch](tuple(in_shape), num_classes, dropout=dropout, **kw)
        except RuntimeError as e:
            raise CurateError(
                f"architecture {arch} does not fit {in_shape[1]}x{in_shape[2]} images ({e}); "
                "choose a smaller one (mlp, small-stvgg)"
            ) from None
    if arch in TORCHVISION_ARCHS:
        import torchvision

        m = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_shape[0] != 3:
            raise CurateError(f"{arch} takes RGB images; this dataset has {in_shape[0]} channel(s)")
        return m
    raise CurateError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
