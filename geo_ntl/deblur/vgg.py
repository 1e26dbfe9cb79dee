"""VGG feature extractors built in plain torch, loading torchvision-format weights.

torchvision is deliberately not a dependency (its wheels pin a torch build), so
the convolutional part of VGG-13 and VGG-16 (Simonyan and Zisserman, 2015) is
rebuilt here with the same layer indices as ``torchvision.models.vgg*().features``.
A state dict saved by torchvision (``torch.save(vgg13(weights=...).state_dict(), p)``)
or one holding only the ``features.*`` keys therefore loads directly. Nothing is
ever downloaded: the user passes a local file (``--vgg-weights PATH``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from geo_ntl.exceptions import WeightsError, WeightsNotFoundError

__all__ = [
    "VGG_CONFIGS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PERCEPTUAL_LAYER",
    "STYLE_LAYERS",
    "build_vgg_features",
    "load_vgg_features",
]

#: Convolution widths per VGG variant; ``"M"`` is a 2x2 max-pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
}
#: ImageNet normalisation the VGG weights expect (inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Index (exclusive end) into VGG-13 ``features`` for the perceptual loss.
#: VGG-13 has two convolutions in block 3; the layer the paper calls conv3_3
#: is the end of block 3 (conv3_2 + ReLU, index 13), so ``features[:14]``.
PERCEPTUAL_LAYER = 14
#: ReLU outputs of VGG-16 used for the Gram-matrix style loss
#: (relu1_2, relu2_2, relu3_3, relu4_3).
STYLE_LAYERS = (3, 8, 15, 22)


def build_vgg_features(name: str, *, end: int | None = None) -> nn.Sequential:
    """Build the (untrained) ``features`` part of a VGG network.

    Parameters
    ----------
    name : {"vgg13", "vgg16"}
        Variant.
    end : int, optional
        Keep only ``features[:end]``.

    Returns
    -------
    torch.nn.Sequential
        Layers with torchvision's indices (conv, ReLU, ..., max-pool).
    """
    layers: list[nn.Module] = []
    prev = 3
    for item in VGG_CONFIGS[name]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.Conv2d(prev, int(item), 3, padding=1))
            layers.append(nn.ReLU(inplace=False))
            prev = int(item)
    if end is not None:
        layers = layers[:end]
    return nn.Sequential(*layers)


def load_vgg_features(
    path: str | os.PathLike[str], name: str, *, end: int | None = None
) -> nn.Sequential:
    """Load a torchvision-format VGG state dict into a frozen feature extractor.

    Parameters
    ----------
    path : str or os.PathLike
        Local ``.pth`` file: a full torchvision VGG state dict or one with only
        the ``features.*`` keys (a ``{"state_dict": ...}`` wrapper also works).
    name : {"vgg13", "vgg16"}
        Variant the file holds.
    end : int, optional
        Keep only ``features[:end]``.

    Returns
    -------
    torch.nn.Sequential
        Feature extractor in ``eval()`` mode with ``requires_grad=False``.

    Raises
    ------
    WeightsNotFoundError
        If ``path`` does not exist.
    WeightsError
        If the file is not a torch state dict or its shapes are not ``name``'s.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsNotFoundError(
            f"VGG weights file {str(p)!r} does not exist; pass a local torchvision "
            f"{name} state dict (e.g. vgg13-19584684.pth) or leave the option out to use "
            "the documented SSIM/gradient substitute."
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsError(f"cannot read VGG weights {str(p)!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"VGG weights {str(p)!r} are not a state dict")
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    model = build_vgg_features(name, end=None)
    try:
        model.load_state_dict(feats, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"VGG weights {str(p)!r} do not match torchvision's {name} features: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    if end is not None:
        model = nn.Sequential(*list(model.children())[:end])
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


def imagenet_normalise(x01: torch.Tensor) -> torch.Tensor:
    """Normalise a (N, 3, H, W) batch in [0, 1] with ImageNet statistics."""
    mean = torch.tensor(IMAGENET_MEAN, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    return (x01 - mean) / std
