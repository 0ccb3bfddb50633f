"""U-Net post-processing of the FBP image (FBPConvNet), the data-driven comparison model.

References
----------
O. Ronneberger, P. Fischer, T. Brox, "U-Net: convolutional networks for biomedical image
segmentation", MICCAI 2015.
K. H. Jin, M. T. McCann, E. Froustey, M. Unser, "Deep convolutional neural network for inverse
problems in imaging", IEEE TIP 26(9), 2017 (FBPConvNet: a U-Net with a residual connection
applied to the FBP image; 64 channels at the top, 4 poolings, batch normalisation, ReLU).

Differences from the papers (stated): zero padding of the 3x3 convolutions ("same" size instead of
Ronneberger's valid convolutions and cropping), images whose sides are not multiples of
``2**depth`` are zero-padded and cropped back, default width 32 instead of 64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from operators._checks import integer

from .common import check_dtype_matches, check_sinogram

__all__ = ["UNet", "UNetPostProcessing"]


def _block(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers = []
    for c_in in (cin, cout):
        layers.append(nn.Conv2d(c_in, cout, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net with an optional residual connection ``out = x + net(x)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output ``(B, C, H, W)``. The residual connection needs them equal.
    width : int
        Channels of the first level; level ``k`` has ``width * 2**k`` (Ronneberger/Jin: 64).
    depth : int
        Number of 2x2 max-poolings (Ronneberger/Jin: 4).
    batch_norm : bool
        Batch normalisation after each convolution (Jin et al.: yes).
    residual : bool
        Add the input to the output (FBPConvNet's skip connection), so the net learns a correction.

    Shapes
    ------
    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; any ``H, W >= 1``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32,
                 depth: int = 4, batch_norm: bool = True, residual: bool = True):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("width", width)):
            integer(name, v)
        integer("depth", depth, minimum=0)
        if residual and in_channels != out_channels:
            raise ValueError(f"residual=True needs in_channels == out_channels, got "
                             f"{in_channels} and {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.width, self.depth, self.residual = width, depth, residual
        chans = [width * 2 ** k for k in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, chans[0], batch_norm)] + [
            _block(chans[k - 1], chans[k], batch_norm) for k in range(1, depth + 1)])
        self.upconv = nn.ModuleList([
            nn.ConvTranspose2d(chans[k], chans[k - 1], 2, stride=2) for k in range(depth, 0, -1)])
        self.up = nn.ModuleList([
            _block(2 * chans[k - 1], chans[k - 1], batch_norm) for k in range(depth, 0, -1)])
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        if residual:  # start as the identity map: the correction is zero before training
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be a tensor (B, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be floating point, got dtype {x.dtype}")
        check_dtype_matches("x", x, self)
        h, w = x.shape[-2:]
        m = 2 ** self.depth
        ph, pw = (-h) % m, (-w) % m
        z = F.pad(x, (0, pw, 0, ph)) if ph or pw else x
        skips = []
        for k, block in enumerate(self.down):
            if k:
                z = F.max_pool2d(z, 2)
            z = block(z)
            skips.append(z)
        skips.pop()
        for upconv, block in zip(self.upconv, self.up):
            z = block(torch.cat([skips.pop(), upconv(z)], dim=1))
        z = self.head(z)[..., :h, :w]
        return x + z if self.residual else z


class UNetPostProcessing(nn.Module):
    """Sinogram -> FBP -> U-Net (FBPConvNet): ``x = FBP(y) + unet(FBP(y))`` with a residual U-Net.

    Parameters
    ----------
    fbp : nn.Module
        Maps sinograms ``(*batch, views, detectors)`` to images ``(*batch, H, W)``, e.g.
        :class:`operators.FBP`; kept fixed: its parameters are frozen in place
        (``requires_grad_(False)`` on the module passed; pass a copy to keep yours trainable).
    unet : UNet
        One input and one output channel.
    image_scale : float
        Typical image magnitude (units of the image); the U-Net sees ``FBP(y) / image_scale``.

    Shapes
    ------
    ``(*batch, views, detectors) -> (*batch, H, W)``.
    """

    def __init__(self, fbp: nn.Module, unet: UNet, image_scale: float = 1.0):
        super().__init__()
        if not isinstance(fbp, nn.Module):
            raise TypeError(f"fbp must be an nn.Module (e.g. operators.FBP), got "
                            f"{type(fbp).__name__}")
        if not isinstance(unet, UNet) or unet.in_channels != 1 or unet.out_channels != 1:
            raise TypeError("unet must be a UNet with in_channels=out_channels=1")
        if not image_scale > 0:
            raise ValueError(f"image_scale must be positive, got {image_scale!r}")
        fbp.requires_grad_(False)
        self.fbp = fbp
        self.unet = unet
        self.register_buffer("image_scale", torch.tensor(float(image_scale), dtype=torch.float64))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        op = getattr(self.fbp, "operator", None)
        if op is not None and hasattr(op, "range_shape"):
            check_sinogram("y", y, op)
        check_dtype_matches("y", y, self.unet)
        x0 = self.fbp(y)
        batch = x0.shape[:-2]
        s = self.image_scale.to(x0)
        z = self.unet(x0.reshape(-1, 1, *x0.shape[-2:]) / s) * s
        return z.reshape(*batch, *x0.shape[-2:])
