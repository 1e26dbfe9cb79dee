"""Choosing the torch device a stage runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geo_ntl.exceptions import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | None = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Parameters
    ----------
    device : str or None, default "auto"
        ``"auto"`` (or None) picks the first CUDA device when one is present and
        the CPU otherwise; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as given.

    Returns
    -------
    torch.device

    Raises
    ------
    InputError
        If the name is not a device, or names a CUDA device that is absent.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} asked for but no CUDA GPU is available; use device='cpu'",
                options={"device='cpu'": "device"},
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(
                f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
            )
    elif resolved.type != "cpu":
        raise InputError(f"device type {resolved.type!r} is not supported; use auto, cpu or cuda")
    return resolved
