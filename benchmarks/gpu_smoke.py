"""In-process checks of geo_ntl on a GPU, one JSON of figures (run by ``gpu_smoke.sh``).

Each check is one function returning its figures; a failing check records its error
instead of stopping the others. ``--device cpu --size 512`` runs every check on the CPU at a
toy size (a rehearsal of the script, not a GPU figure).

Checks
    cpu_vs_device : max |difference| of the GAN and the enhancer on the sample AOI, CPU vs device.
    tiled_vs_whole : max |difference| of the GAN on the device, 4 x 4 tiles vs one whole window.
    peak_memory : peak device memory of the GAN and the enhancer on a size^2 scene (CUDA only).
    forced_oom : a forward pass made to run out of memory -> smaller batches, then the error.
    throughput : MP/s of the GAN and the enhancer on the device (size^2 scene, one worker).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_input_scene  # noqa: E402

from geo_ntl.deblur import deblur, deblur_array  # noqa: E402
from geo_ntl.enhance import enhance  # noqa: E402
from geo_ntl.io import open_scene, write_cog  # noqa: E402
from geo_ntl.sample_data import sample_aoi  # noqa: E402


def _sample(crop: int) -> np.ndarray:
    """The sample AOI's top-left ``crop`` x ``crop`` px (uint8, 3 bands)."""
    return open_scene(sample_aoi().scene).isel(y=slice(0, crop), x=slice(0, crop))


def cpu_vs_device(device: str, crop: int) -> dict[str, Any]:
    """Max |difference| (DN) of the GAN and the enhancer, CPU against ``device``."""
    scene = _sample(crop).compute()
    out: dict[str, Any] = {"crop": crop}
    for name, run in {
        "gan": lambda d: deblur(scene, device=d, tile=512),
        "enhance": lambda d: enhance(scene, device=d, tile=512),
    }.items():
        cpu = run("cpu").values.astype(np.int16)
        dev = run(device).values.astype(np.int16)
        out[f"{name}_max_dn"] = int(np.abs(cpu - dev).max())
        out[f"{name}_mean_dn"] = float(np.abs(cpu - dev).mean())
    return out


def tiled_vs_whole(device: str, crop: int) -> dict[str, Any]:
    """Max |difference| (DN) of the GAN on ``device``: 4 x 4 tiles vs the whole crop at once."""
    image = _sample(crop).values
    tile = max(16, crop // 16 * 4)
    whole = deblur_array(image, device=device, conserve=False)
    tiled = deblur_array(image, device=device, tile=tile, conserve=False)
    diff = np.abs(whole.astype(np.int16) - tiled.astype(np.int16))
    return {"crop": crop, "tile": tile, "max_dn": int(diff.max()), "mean_dn": float(diff.mean())}


def _scene(size: int, folder: Path) -> Path:
    return make_input_scene(folder / f"scene_{size}.tif", size)


def _stages(scene: Any, device: str) -> dict[str, Callable[[], Any]]:
    """The GAN and the enhancer on ``scene``, each a lazy result builder."""
    return {
        "gan": lambda: deblur(scene, device=device),
        "enhance": lambda: enhance(scene, device=device),
    }


def peak_memory(device: str, size: int, folder: Path) -> dict[str, Any]:
    """Peak device memory (MiB) of the GAN and the enhancer writing a ``size``^2 scene."""
    import torch

    if not device.startswith("cuda"):
        return {"skipped": "peak device memory is measured on CUDA only"}
    scene = open_scene(_scene(size, folder))
    out: dict[str, Any] = {"size": size}
    for name, run in _stages(scene, device).items():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        write_cog(run(), folder / f"peak_{name}.tif", overwrite=True)
        out[f"{name}_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def forced_oom(device: str) -> dict[str, Any]:
    """Make the GAN's forward pass run out of memory above a batch of 1, then always."""
    import torch

    from geo_ntl.deblur import inference
    from geo_ntl.exceptions import DeviceMemoryError

    image = _sample(256).values
    real = inference._Runner._forward
    limit = {"most": 1}
    batches: list[int] = []

    def forward(self: Any, x: np.ndarray) -> np.ndarray:
        batches.append(len(x))
        if len(x) > limit["most"]:
            raise torch.OutOfMemoryError("CUDA out of memory (forced by gpu_smoke)")
        return real(self, x)

    inference._Runner._forward = forward  # type: ignore[method-assign]
    try:
        inference._FITTING.clear()
        retried = deblur_array(image, device=device, tile=64, batch_size=4, conserve=False)
        plain = deblur_array(image, device=device, tile=64, batch_size=1, conserve=False)
        limit["most"] = 0
        try:
            deblur_array(image, device=device, tile=64, batch_size=1, conserve=False)
            error = None
        except DeviceMemoryError as exc:
            error = str(exc)
    finally:
        inference._Runner._forward = real  # type: ignore[method-assign]
        inference._FITTING.clear()
    return {
        "batches_tried": batches[:6],
        "retried_equals_batch_1": bool(np.array_equal(retried, plain)),
        "error": error,
    }


def throughput(device: str, size: int, folder: Path) -> dict[str, Any]:
    """MP/s of the GAN and the enhancer on ``device`` (threaded scheduler, file to file)."""
    scene = open_scene(_scene(size, folder))
    out: dict[str, Any] = {"size": size}
    for name, run in _stages(scene, device).items():
        start = time.perf_counter()
        write_cog(run(), folder / f"speed_{name}.tif", overwrite=True)
        seconds = time.perf_counter() - start
        out[f"{name}_s"] = round(seconds, 2)
        out[f"{name}_mp_per_s"] = round(size * size / 1e6 / seconds, 3)
    return out


def _checked(name: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        figures = check()
    except Exception as exc:  # noqa: BLE001 - a smoke test records every failure and goes on
        figures = {"failed": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(-3)}
    figures["seconds"] = round(time.perf_counter() - start, 2)
    print(f"{name}: {json.dumps(figures)[:300]}", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the checks and merge their figures into ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=8192, help="scene edge for memory and speed")
    parser.add_argument("--crop", type=int, default=1024, help="sample AOI crop for differences")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as tmp:
        folder = Path(tmp)
        checks = {
            "cpu_vs_device": lambda: cpu_vs_device(args.device, args.crop),
            "tiled_vs_whole": lambda: tiled_vs_whole(args.device, min(args.crop, 768)),
            "forced_oom": lambda: forced_oom(args.device),
            "peak_memory": lambda: peak_memory(args.device, args.size, folder),
            "throughput": lambda: throughput(args.device, args.size // 2, folder),
        }
        figures = {name: _checked(name, check) for name, check in checks.items()}
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results.update(figures)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if not any("failed" in f for f in figures.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
