"""Choosing the torch device a stage runs on, its precision, and using it safely.

A stage's device is planned once, where the job is submitted (:func:`plan_device`: from
this process's GPUs, or from the GPUs of the dask workers that will run the model tasks),
and resolved again where each task runs (:func:`resolve_device`), so a client without a
GPU can drive GPU workers. The plan fixes what the job signature records: the device type,
the precision of the forward pass, and the worker resources the model tasks ask for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from geo_ntl.exceptions import DeviceMemoryError, InputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BF16_CAPABILITY",
    "DevicePlan",
    "autocast_dtype",
    "device_capability",
    "gpu_slot",
    "on_out_of_memory",
    "plan_device",
    "precision_for",
    "resolve_device",
]

#: Smallest CUDA compute capability with native bf16 convolutions in cuDNN (Ampere).
#: ``torch.cuda.is_bf16_supported()`` also says True below it (emulated), so it is not asked.
BF16_CAPABILITY = (8, 0)
#: Worker resource a model task asks for on a cluster whose workers declare GPUs.
GPU_RESOURCE = {"GPU": 1}


def resolve_device(device: str | None = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device` of this process.

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


def precision_for(capability: tuple[int, int] | None) -> str:
    """Return the forward pass's precision on a device of this CUDA compute capability.

    Parameters
    ----------
    capability : (int, int) or None
        ``torch.cuda.get_device_capability`` of the GPU; None for the CPU.

    Returns
    -------
    str
        ``"fp32"`` on the CPU, ``"bf16"`` from :data:`BF16_CAPABILITY` on, ``"fp16"`` below.
    """
    if capability is None:
        return "fp32"
    return "bf16" if tuple(capability) >= BF16_CAPABILITY else "fp16"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a precision name (None: full precision, no autocast)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def device_capability(device: torch.device) -> tuple[int, int] | None:
    """Compute capability of ``device`` (None for the CPU), asked of that device, not the current one."""
    if device.type != "cuda":
        return None
    import torch

    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def local_gpus() -> list[tuple[int, int]]:
    """Return the compute capability of each CUDA GPU this process sees (empty without one)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    if not torch.cuda.is_available():
        return []
    return [
        tuple(torch.cuda.get_device_capability(i))  # type: ignore[misc]
        for i in range(torch.cuda.device_count())
    ]


@dataclass(frozen=True)
class DevicePlan:
    """Where and how a stage's model tasks run, as planned for a whole job.

    Attributes
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: resolved again by each task on its own
        machine (:func:`resolve_device`).
    precision : str
        ``"fp32"``, ``"bf16"`` or ``"fp16"``: the forward pass's autocast precision.
    resources : mapping or None
        dask worker resources each model task asks for (``{"GPU": 1}`` on a cluster whose
        workers declare GPUs), None elsewhere.
    """

    device: str
    precision: str
    resources: Mapping[str, float] | None = None

    @property
    def type(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return self.device.split(":")[0]


def plan_device(device: str | DevicePlan | None = "auto") -> DevicePlan:
    """Plan the device of a stage's model tasks, where they will run.

    With no dask.distributed client in use, the tasks run in this process: the device is
    :func:`resolve_device`'s. On a cluster, it is planned from the GPUs of the workers that
    will run the model tasks (those declaring a ``GPU`` resource when any does, else all):
    ``"auto"`` is CUDA when every one of them has a GPU, ``"cuda"`` is refused when one of
    them has none; this process's own GPUs do not count.

    Parameters
    ----------
    device : str, DevicePlan or None, default "auto"
        A device name (see :func:`resolve_device`), or a plan (returned as given).

    Returns
    -------
    DevicePlan

    Raises
    ------
    InputError
        For an unknown device, or a CUDA device that the workers lack.
    """
    if isinstance(device, DevicePlan):
        return device
    from geo_ntl.parallel import active_client, worker_gpus

    client = active_client()
    if client is None:
        resolved = resolve_device(device)
        return DevicePlan(str(resolved), precision_for(device_capability(resolved)))
    name = "auto" if device is None else device
    gpus, declared = worker_gpus(client)
    if name != "auto":
        requested = _parse(name)
        if requested.type == "cpu":
            return DevicePlan("cpu", "fp32")
    if not gpus or not all(gpus.values()):
        if name == "auto":
            return DevicePlan("cpu", "fp32")
        which = "workers that declare a GPU resource" if declared else "workers"
        raise InputError(
            f"device {name!r} asked for but {sum(not g for g in gpus.values())} of the "
            f"cluster's {len(gpus)} {which} have no CUDA GPU; use device='cpu', or start "
            "the workers with GPUs as `dask worker ADDRESS --resources GPU=1`",
            options={"device='cpu'": "device"},
        )
    capability = min(cap for caps in gpus.values() for cap in caps)
    resources = dict(GPU_RESOURCE) if declared else None
    return DevicePlan("cuda" if name == "auto" else name, precision_for(capability), resources)


def _parse(name: str) -> torch.device:
    import torch

    try:
        parsed = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise InputError(f"device type {parsed.type!r} is not supported; use auto, cpu or cuda")
    return parsed


_SLOTS: dict[str, threading.Semaphore] = {}
_SLOTS_LOCK = threading.Lock()


@contextlib.contextmanager
def gpu_slot(device: torch.device) -> Iterator[None]:
    """Hold ``device`` for one model call at a time in this process (CPU: no wait).

    dask's threaded scheduler runs as many tiles at once as the machine has cores, and a
    cluster worker as many as its threads; on one GPU each would take a tile's working memory
    (gigabytes), so model calls on a CUDA device take turns.
    """
    if device.type != "cuda":
        yield
        return
    with _SLOTS_LOCK:
        slot = _SLOTS.setdefault(str(device), threading.Semaphore(1))
    with slot:
        yield


def on_out_of_memory(exc: BaseException, *, what: str, options: Mapping[str, str]) -> Any:
    """Return the :class:`DeviceMemoryError` to raise for an out-of-memory ``exc``.

    Parameters
    ----------
    exc : BaseException
        The ``torch.OutOfMemoryError`` raised.
    what : str
        What ran out of memory (``"a 2248 x 2248 px window"``).
    options : mapping of str to str
        The parameters that lower the memory used: text in the message -> parameter name.
    """
    import torch

    with contextlib.suppress(Exception):
        torch.cuda.empty_cache()
    lower = " or ".join(options)
    return DeviceMemoryError(
        f"the device ran out of memory on {what}; lower {lower}, or use device='cpu' "
        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
        options={**options, "device='cpu'": "device"},
    )
