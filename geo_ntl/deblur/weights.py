"""Registry of NTL-Db-Net generator weights: shipped, named, checksummed; or a user file.

Nothing is downloaded. Shipped weights live in ``geo_ntl/weights/`` next to
``registry.json``, which maps each name to its file, SHA-256 checksum and
``meta`` (bands, sensor, training data and exact command, steps, time,
hardware, licence, paper). A weights file is a ``torch.save`` dict::

    {"arch": "ntl-db-net-generator-v1", "config": {...}, "state_dict": {...}, "meta": {...}}

Tensors may be stored as float16 to halve the file; they are loaded as float32.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from geo_ntl.exceptions import OutputExistsError, WeightsError, WeightsNotFoundError

__all__ = [
    "DEFAULT_WEIGHTS",
    "REGISTRY_FILE",
    "list_models",
    "get_model",
    "get_meta",
    "get_generator",
    "get_solver",
    "DEFAULT_SOLVER_WEIGHTS",
    "load_generator",
    "save_weights",
    "sha256sum",
    "resolve_weights",
    "register_shipped",
]

#: Name of the weights used when none is given.
DEFAULT_WEIGHTS = "ntl-db-net-jilin1-sim"
#: Name of the PSF solver's weights used when none is given (``--method psf-gan``).
DEFAULT_SOLVER_WEIGHTS = "ntl-db-net-psf-solver"
#: Registry file inside ``geo_ntl/weights``.
REGISTRY_FILE = "registry.json"
#: Architectures a weights file may hold: the standalone generator and the PSF solver's prior.
KNOWN_ARCHS = ("ntl-db-net-generator-v1", "ntl-db-net-psf-solver-v1")


def _weights_dir() -> Path:
    return Path(str(resources.files("geo_ntl").joinpath("weights")))


def _registry() -> dict[str, dict[str, Any]]:
    path = _weights_dir() / REGISTRY_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_models() -> dict[str, dict[str, Any]]:
    """List the shipped weights.

    Returns
    -------
    dict
        ``{name: {"file": ..., "sha256": ..., "meta": {...}}}``.

    Examples
    --------
    >>> "ntl-db-net-jilin1-sim" in list_models()
    True
    """
    return _registry()


def resolve_weights(name_or_path: str | os.PathLike[str] | None) -> tuple[Path, str | None]:
    """Turn a registry name or a file path into ``(path, expected_sha256 or None)``.

    Raises
    ------
    WeightsNotFoundError
        If the name is not registered and no such file exists, or a
        registered file is missing from the installation.
    """
    key = DEFAULT_WEIGHTS if name_or_path is None else os.fspath(name_or_path)
    reg = _registry()
    if key in reg:
        path = _weights_dir() / reg[key]["file"]
        if not path.is_file():
            raise WeightsNotFoundError(
                f"shipped weights {key!r} should be at {path} but the file is missing; "
                "reinstall geo_ntl or pass weights=PATH",
                options={"weights=PATH": "weights"},
            )
        return path, reg[key]["sha256"]
    path = Path(key).expanduser()
    if not path.is_file():
        names = ", ".join(sorted(reg)) or "none"
        raise WeightsNotFoundError(
            f"weights {key!r} not found: it is neither an existing file nor a shipped name "
            f"(shipped: {names}); pass a path to a file saved by `geo-ntl train`"
        )
    return path, None


def _read(path: Path) -> dict[str, Any]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsError(
            f"cannot read weights file {str(path)!r} ({type(exc).__name__}): it is corrupt or "
            "not a torch file; expected a generator saved by `geo-ntl train`"
        ) from exc
    from geo_ntl.deblur.model import GENERATOR_ARCH

    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise WeightsError(
            f"weights file {str(path)!r} is not a geo_ntl weights file (no 'state_dict'); "
            f"expected architecture {GENERATOR_ARCH!r} saved by `geo-ntl train`"
        )
    if obj.get("arch") not in KNOWN_ARCHS:
        raise WeightsError(
            f"weights file {str(path)!r} holds architecture {obj.get('arch')!r}, expected one "
            f"of {', '.join(map(repr, KNOWN_ARCHS))}"
        )
    return obj


def load_generator(path: str | os.PathLike[str], *, sha256: str | None = None) -> Any:
    """Load a generator from a weights file (eval mode, float32, on CPU).

    Parameters
    ----------
    path : str or os.PathLike
        Weights file.
    sha256 : str, optional
        Expected checksum; a mismatch raises :class:`WeightsError`.

    Returns
    -------
    geo_ntl.deblur.model.Generator

    Raises
    ------
    WeightsNotFoundError
        If the file does not exist.
    WeightsError
        If it is corrupt, of another architecture or fails the checksum.
    """
    from geo_ntl.deblur.model import Generator
    from geo_ntl.deblur.solver import SOLVER_ARCH, UnrolledSolver

    p = Path(path)
    if not p.is_file():
        raise WeightsNotFoundError(f"weights file {str(p)!r} does not exist")
    if sha256 is not None and sha256sum(p) != sha256:
        raise WeightsError(
            f"weights file {str(p)!r} fails its SHA-256 check (corrupt or replaced); "
            "reinstall geo_ntl"
        )
    obj = _read(p)
    arch = obj["arch"]
    try:
        gen: Any
        if arch == SOLVER_ARCH:
            gen = UnrolledSolver(**obj.get("config", {}))
        else:  # files written before the global skip existed have no "residual" key
            gen = Generator(**{"residual": False, **obj.get("config", {})})
        state = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
        gen.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError) as exc:
        raise WeightsError(
            f"weights file {str(p)!r} does not fit {arch!r}: {str(exc).splitlines()[0]}"
        ) from exc
    gen.eval()
    for q in gen.parameters():
        q.requires_grad_(False)
    return gen


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime: float, size: int, sha: str | None, device: str) -> Any:
    import torch

    return load_generator(path, sha256=sha).to(torch.device(device))


def get_model(name_or_path: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> Any:
    """Return a generator, loaded once per process (cached by file, size and mtime).

    Parameters
    ----------
    name_or_path : str or os.PathLike, optional
        A shipped name (see :func:`list_models`) or a weights file; default
        :data:`DEFAULT_WEIGHTS`.
    device : str, default "cpu"
        Torch device string.

    Returns
    -------
    geo_ntl.deblur.model.Generator
        In eval mode. Shared between calls: do not modify it.

    Raises
    ------
    WeightsNotFoundError, WeightsError
        See :func:`load_generator`.
    """
    path, sha = resolve_weights(name_or_path)
    st = path.stat()
    return _cached(str(path.resolve()), st.st_mtime, st.st_size, sha, str(device))


def get_generator(
    name_or_path: str | os.PathLike[str] | None = None, *, device: str = "cpu"
) -> Any:
    """Return the standalone generator (``gan-direct``), loaded once; refuse solver weights."""
    from geo_ntl.deblur.model import GENERATOR_ARCH

    model = get_model(name_or_path, device=device)
    if getattr(model, "arch", GENERATOR_ARCH) != GENERATOR_ARCH:
        raise WeightsError(
            f"weights {str(name_or_path)!r} hold the PSF solver's prior, not the standalone "
            "generator: use them with --method psf-gan"
        )
    return model


def get_solver(name_or_path: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> Any:
    """Return the PSF solver (:class:`geo_ntl.deblur.solver.UnrolledSolver`), loaded once.

    Parameters
    ----------
    name_or_path : str or os.PathLike, optional
        A shipped name or a solver weights file; default :data:`DEFAULT_SOLVER_WEIGHTS`.
    device : str, default "cpu"
        Torch device string.

    Raises
    ------
    WeightsNotFoundError, WeightsError
        See :func:`load_generator`; also for a file holding the standalone generator.
    """
    from geo_ntl.deblur.solver import SOLVER_ARCH

    model = get_model(name_or_path or DEFAULT_SOLVER_WEIGHTS, device=device)
    if getattr(model, "arch", None) != SOLVER_ARCH:
        raise WeightsError(
            f"weights {str(name_or_path)!r} hold the standalone generator, not the PSF solver: "
            "use them with --method gan-direct, or pass solver weights"
        )
    return model


def get_meta(name_or_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the ``meta`` dict stored in a weights file."""
    path, _ = resolve_weights(name_or_path)
    return dict(_read(path).get("meta", {}))


def save_weights(
    model: Any,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any] | None = None,
    half: bool = False,
    overwrite: bool = False,
) -> Path:
    """Save a generator as a geo_ntl weights file (atomically).

    Parameters
    ----------
    model : geo_ntl.deblur.model.Generator
        The generator.
    path : str or os.PathLike
        Destination.
    meta : dict, optional
        JSON-serialisable description (training data, command, ...).
    half : bool, default False
        Store floating tensors as float16.
    overwrite : bool, default False
        Replace an existing file.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    import torch

    from geo_ntl.deblur.model import GENERATOR_ARCH

    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass overwrite=True to replace it")
    state = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    obj = {
        "arch": getattr(model, "arch", GENERATOR_ARCH),
        "config": dict(model.config),
        "state_dict": state,
        "meta": json.loads(json.dumps(meta or {})),
    }
    tmp = p.with_name(p.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, p)
    return p


#: Descriptive meta every shipped entry carries (training details come from the file).
SHIPPED_META_DEFAULTS: dict[str, Any] = {
    "bands": ["red", "green", "blue"],
    "sensor": "Jilin-1 night-light RGB (~0.92 m), 8-bit; simulated training data",
    "licence": "MIT (weights trained by the geo_ntl developers on procedurally generated data)",
    "paper": "NTL-Db-Net: 'Making the Earth Clear at Night: A High-resolution Nighttime Light "
    "Image Deblooming Network' (architecture and losses; no weights were published)",
    "input_scale": "uint8 DN / 255 -> [-1, 1]",
}


def register_shipped(
    source: str | os.PathLike[str], *, name: str, meta: dict[str, Any] | None = None
) -> Path:
    """Copy a trained generator into ``geo_ntl/weights`` (float16) and register it.

    A maintenance helper for developers shipping new weights
    (``python -m geo_ntl.deblur.weights RUN/generator.pt NAME``); it rewrites
    ``registry.json`` with the file's SHA-256 and meta.

    Parameters
    ----------
    source : str or os.PathLike
        Weights file written by ``geo-ntl train``.
    name : str
        Registry name.
    meta : dict, optional
        Extra meta (metrics, notes) merged over the file's own.

    Returns
    -------
    pathlib.Path
        The shipped file.
    """
    gen = load_generator(source)
    file_meta = _read(Path(source)).get("meta", {})
    full = {**SHIPPED_META_DEFAULTS, **file_meta, **(meta or {})}
    dest = _weights_dir() / (name.replace("-", "_") + ".pt")
    save_weights(gen, dest, meta=full, half=True, overwrite=True)
    reg = _registry()
    reg[name] = {"file": dest.name, "sha256": sha256sum(dest), "meta": full}
    tmp = _weights_dir() / (REGISTRY_FILE + ".partial")
    tmp.write_text(json.dumps(reg, indent=1) + "\n")
    os.replace(tmp, _weights_dir() / REGISTRY_FILE)
    _cached.cache_clear()
    return dest


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    import sys

    print(register_shipped(sys.argv[1], name=sys.argv[2]))
