"""M members of one sequential architecture fused into one model.

Convolutions become grouped convolutions (`groups = M`), BatchNorm runs over M x C channels (each
member keeps its own statistics), linear layers become batched matrix products over a member axis,
and everything else acts per channel or per element. The fused model is built by packing members
that were initialised one by one, so it starts and, step for step, trains exactly like them.

Shapes: input (M, B, C, H, W), one batch per member; output (B, M, K).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from curate.errors import CurateError

_ELEMENTWISE = (
    nn.ReLU,
    nn.GELU,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.ELU,
    nn.Tanh,
)


class GroupedLinear(nn.Module):
    """M independent linear layers: (B, M, I) -> (B, M, O); weight (M, O, I) as nn.Linear's."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([lin.weight.detach() for lin in layers]).clone())
        self.bias = nn.Parameter(torch.stack([lin.bias.detach() for lin in layers]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(
            self.bias.unsqueeze(1), x.transpose(0, 1), self.weight.transpose(1, 2)
        ).transpose(0, 1)


class MemberFlatten(nn.Module):
    """(B, M*C, H, W) -> (B, M, C*H*W): each member's features flattened as nn.Flatten would."""

    def __init__(self, m: int):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.m, -1)


class MemberBatchNorm1d(nn.Module):
    """(B, M, F) through one BatchNorm1d over M*F features."""

    def __init__(self, layers: list[nn.BatchNorm1d]):
        super().__init__()
        self.bn = _cat_bn(layers, nn.BatchNorm1d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, f = x.shape
        return self.bn(x.reshape(b, m * f)).reshape(b, m, f)


def _cat_bn(layers, cls):
    first = layers[0]
    bn = cls(
        first.num_features * len(layers),
        eps=first.eps,
        momentum=first.momentum,
        affine=first.affine,
        device=first.running_mean.device,
        dtype=first.running_mean.dtype,
    )
    with torch.no_grad():
        if first.affine:
            bn.weight.copy_(torch.cat([b.weight for b in layers]))
            bn.bias.copy_(torch.cat([b.bias for b in layers]))
        bn.running_mean.copy_(torch.cat([b.running_mean for b in layers]))
        bn.running_var.copy_(torch.cat([b.running_var for b in layers]))
    return bn


def _fuse_conv(layers: list[nn.Conv2d]) -> nn.Conv2d:
    c = layers[0]
    m = len(layers)
    if c.groups != 1:
        raise CurateError("cannot fuse grouped convolutions")
    fused = nn.Conv2d(
        c.in_channels * m,
        c.out_channels * m,
        c.kernel_size,
        c.stride,
        c.padding,
        c.dilation,
        groups=m,
        bias=c.bias is not None,
        padding_mode=c.padding_mode,
        device=c.weight.device,
        dtype=c.weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([lay.weight for lay in layers]))
        if c.bias is not None:
            fused.bias.copy_(torch.cat([lay.bias for lay in layers]))
    return fused


class FusedEnsemble(nn.Module):
    """M sequential members as one model. forward(x: (M, B, C, H, W)) -> logits (B, M, K)."""

    def __init__(self, members: list[nn.Sequential]):
        super().__init__()
        self.m = len(members)
        layers = []
        for group in zip(*[list(mem) for mem in members], strict=True):
            first = group[0]
            if isinstance(first, nn.Conv2d):
                layers.append(_fuse_conv(list(group)))
            elif isinstance(first, nn.BatchNorm2d):
                layers.append(_cat_bn(list(group), nn.BatchNorm2d))
            elif isinstance(first, nn.BatchNorm1d):
                layers.append(MemberBatchNorm1d(list(group)))
            elif isinstance(first, nn.Linear):
                layers.append(GroupedLinear(list(group)))
            elif isinstance(first, nn.Flatten):
                layers.append(MemberFlatten(self.m))
            elif isinstance(first, _ELEMENTWISE):
                layers.append(first)
            else:
                raise CurateError(
                    f"cannot fuse layer {type(first).__name__}; train with strategy = 'separate'"
                )
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b = x.shape[:2]
        x = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:])  # (B, M*C, H, W)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.body(x)
        return out

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same batch x: (B, C, H, W) -> (B, M, K).

        The first layer sees one input for all members, so it runs once, dense, over the members'
        stacked weights (a grouped conv's weight (M*O, C, kh, kw) is exactly a dense conv's on C
        channels; a grouped linear's (M, O, I) a dense (M*O, I)) instead of on M copies of x. In
        eval mode a BatchNorm right after a convolution is folded into it (one affine map per
        channel), so the eval pass does not read and write its activations twice.
        """
        first, rest = self.body[0], self.body[1:]
        if isinstance(first, MemberFlatten) and isinstance(rest[0], GroupedLinear):
            lin = rest[0]
            w = lin.weight.reshape(-1, lin.weight.shape[-1])  # (M*O, I)
            h = torch.addmm(lin.bias.reshape(-1), x.reshape(x.shape[0], -1), w.t())
            return rest[1:](h.reshape(x.shape[0], self.m, -1))
        convs = [lay for lay in self.body if isinstance(lay, nn.Conv2d)]
        if not isinstance(first, nn.Conv2d) or any(c.padding_mode != "zeros" for c in convs):
            return self(x.unsqueeze(0).expand(self.m, *x.shape))
        x = x.contiguous(memory_format=torch.channels_last)
        layers, i = list(self.body), 0
        while i < len(layers):
            lay = layers[i]
            if isinstance(lay, nn.Conv2d):
                w, b = lay.weight, lay.bias
                nxt = layers[i + 1] if i + 1 < len(layers) else None
                if not self.training and isinstance(nxt, nn.BatchNorm2d):
                    w, b = _fold_batchnorm(w, b, nxt)
                    i += 1
                groups = 1 if lay is first else lay.groups  # the shared input: dense
                x = F.conv2d(x, w, b, lay.stride, lay.padding, lay.dilation, groups)
            else:
                x = lay(x)
            i += 1
        return x


def _fold_batchnorm(w: torch.Tensor, b: torch.Tensor | None, bn: nn.BatchNorm2d):
    """Weight and bias of conv-then-BatchNorm (eval mode, running statistics) as one conv."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
    bias = shift if b is None else b * scale + shift
    return w * scale.view(-1, 1, 1, 1), bias
