"""Train the PSF-explicit solver's prior (CPU or GPU), with checkpoints and resume.

One step draws a batch of crops from a pool of :mod:`geo_ntl.deblur.solver_pairs`
scenes, runs the unrolled solver (:class:`geo_ntl.deblur.solver.UnrolledSolver`)
with each scene's *measured* PSF, finishes its estimate exactly as inference does
(:func:`finish_torch`: black level added back, clipped to full scale, saturated
cores held, the flux projection of :mod:`geo_ntl.deblur.flux`) and updates the
prior with NTL-Db-Net's losses on that output:

    L = adv * L_adv + content * (L_1 + L_perc) + hsi * L_HSI + lamp * L_lamp + flux * L_flux
        + stage * sum_k L_1(stage k)

``L_adv`` is the WGAN-GP term of NTL-Db-Net's critic (:class:`Discriminator`,
``n_critic`` updates a step on the same generated batch), ``L_perc`` the
weight-free perceptual substitute, ``L_lamp`` and ``L_flux`` geo_ntl's lamp and
block-flux terms, and the last term supervises every stage's estimate (deep
supervision). Adam, learning rate decaying linearly to 0 at ``steps``.

The pool holds ``n_scenes`` scenes; every ``refresh_every`` steps a quarter of it is
replaced by scenes from new seeds (round robin), so a long run sees many more
scenes than it holds. A checkpoint (networks, optimisers, step, every random
state, the pool's generation) is written atomically every ``checkpoint_every``
steps; ``resume=True`` continues a run exactly where its checkpoint left it (the
pool is rebuilt from its seeds). ``solver.pt`` in the run folder is the current
prior as a weights file for ``geo-ntl deblur --weights`` and the benchmark's
``--candidate``.

A run may branch from another run's weights (``init_from``): it starts at that prior's
step and training time, so that the learning-rate schedule, the pool and the log go on
from there, with a new critic whose term ramps in over ``adv_warmup`` steps. The data
step (``stages``, ``iterations``, ``start``, ``accelerate``), the prior's reach and a share
of photograph scenes (``photo_dir``, ``photo_share``; :mod:`geo_ntl.deblur.solver_pairs`)
are options of the run, so that it trains in the configuration inference runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geo_ntl.deblur import losses
from geo_ntl.deblur.solver_pairs import SolverScene, make_scene, sample_crops, training_photos

__all__ = ["SolverTrainConfig", "finish_torch", "train_solver"]

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "solver.pt"
LOG_NAME = "log.jsonl"
CONFIG_NAME = "config.json"
#: First seed of refreshed scenes (far from the first pool's seeds).
REFRESH_SEED_BASE = 1_000_000


@dataclass
class SolverTrainConfig:
    """Options of a solver training run (stored in the run folder and the weights' meta)."""

    steps: int = 20_000
    crop: int = 128
    batch: int = 4
    seed: int = 0
    lr: float = 2e-4
    n_scenes: int = 48
    scene_size: int = 512
    refresh_every: int = 500
    checkpoint_every: int = 100
    content_weight: float = losses.CONTENT_WEIGHT
    hsi_weight: float = 50.0
    adv_weight: float = 1.0
    lamp_weight: float = 200.0
    flux_weight: float = 200.0
    stage_weight: float = 50.0
    n_critic: int = 2
    gp_weight: float = losses.GP_WEIGHT
    stages: int = 3
    iterations: int = 7
    width: int = 8
    n_blocks: int = 1
    accelerate: bool = False
    start: str = "data"
    prior_reach: float | None = None
    init_from: str | None = None
    adv_warmup: int = 0
    photo_dir: str | None = None
    photo_share: float = 0.0


def finish_torch(
    latent: torch.Tensor,
    degraded: torch.Tensor,
    *,
    black: torch.Tensor,
    fwhm: torch.Tensor,
    full_scale: float = 255.0,
    project: bool = True,
) -> torch.Tensor:
    """Turn the solver's estimate into the image inference writes (DN), differentiably.

    As :func:`geo_ntl.deblur.psf_gan.solve` does: ``latent + black`` clipped to
    ``[0, full_scale]``, the flux projection (:func:`geo_ntl.deblur.flux.conserve_flux_torch`,
    light may go only within :func:`~geo_ntl.deblur.psf_gan.clip_radius_for` of clipped
    pixels), clipped again, the cores of the input's clipped blobs held at full scale
    (:func:`geo_ntl.deblur.cores.hold_cores_torch`). Inference also bounds the light that
    leaves near clipped pixels and moves light past full scale to the nearest room instead
    of clipping it; training keeps the finish its run started with (the model card says so).
    """
    from geo_ntl.deblur.cores import hold_cores_torch
    from geo_ntl.deblur.flux import conserve_flux_torch
    from geo_ntl.deblur.psf_gan import clip_radius_for

    level = torch.full_like(black[..., None, None], full_scale)
    out = (latent + black[..., None, None]).clamp(0.0, full_scale)
    if project:
        out = torch.cat([
            conserve_flux_torch(degraded[i : i + 1], out[i : i + 1], full_scale=full_scale,
                                clip_radius=clip_radius_for(float(fwhm[i])))
            for i in range(out.shape[0])
        ])  # fmt: skip
    out = out.clamp(0.0, full_scale)
    return hold_cores_torch(out, degraded, level=level, fwhm=fwhm)


def _inputs(batch: dict[str, np.ndarray], dev: torch.device) -> tuple[Any, dict]:
    from geo_ntl.deblur.solver import SolverInputs

    t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in batch.items()}
    black = t["black"][..., None, None]
    full = (255.0 - black).clamp_min(1.0)
    data = (t["degraded"] - black).clamp_min(0.0) + 1e-3
    inputs = SolverInputs(
        data=data,
        kernels=t["kernels"],
        level=full,
        full_scale=full,
        noise=(t["noise"] / 255.0)[:, None, None, None],
        fwhm=t["fwhm"][:, None, None, None],
    )
    return inputs, t


class _Run:
    def __init__(self, cfg: SolverTrainConfig, dev: torch.device) -> None:
        from geo_ntl.deblur.model import Discriminator
        from geo_ntl.deblur.solver import UnrolledSolver

        torch.manual_seed(cfg.seed)
        self.solver = UnrolledSolver(
            stages=cfg.stages,
            iterations=cfg.iterations,
            width=cfg.width,
            n_blocks=cfg.n_blocks,
            accelerate=cfg.accelerate,
            start=cfg.start,
            prior_reach=cfg.prior_reach,
        ).to(dev)
        self.critic = Discriminator().to(dev)
        self.opt_g = torch.optim.Adam(self.solver.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self.step = 0
        self.elapsed = 0.0
        self.first_step = 0
        self.rng = np.random.default_rng([cfg.seed, 7])
        self.gp_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.perceptual = losses.PerceptualSubstitute()

    def state(self) -> dict[str, Any]:
        return {
            "solver": self.solver.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "first_step": self.first_step,
            "np_rng": self.rng.bit_generator.state,
            "gp_rng": self.gp_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def branch(self, weights: str | os.PathLike[str]) -> None:
        """Start from another run's prior: its parameters, its step and its training seconds.

        The critic and the optimisers start afresh; the learning-rate schedule and the pool
        go on from the prior's step, and ``elapsed`` counts the prior's training time too,
        so that the run's log says what the weights cost in all.
        """
        ck = torch.load(weights, map_location="cpu", weights_only=False)
        self.solver.load_state_dict(ck["state_dict"])
        training = ck.get("meta", {}).get("training", {})
        self.step = self.first_step = int(training.get("steps", 0))
        self.elapsed = float(training.get("seconds", 0.0))

    def load(self, ck: dict[str, Any]) -> None:
        self.solver.load_state_dict(ck["solver"])
        self.critic.load_state_dict(ck["critic"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.step, self.elapsed = int(ck["step"]), float(ck["elapsed"])
        self.first_step = int(ck.get("first_step", 0))
        self.rng.bit_generator.state = ck["np_rng"]
        self.gp_gen.set_state(ck["gp_rng"].cpu())
        torch.set_rng_state(ck["torch_rng"].cpu())


def _pool_seeds(cfg: SolverTrainConfig, generation: int) -> list[int]:
    """Seeds of the pool after ``generation`` refreshes (a quarter replaced each, round robin)."""
    seeds = [cfg.seed * 100_000 + i for i in range(cfg.n_scenes)]
    quarter = max(1, cfg.n_scenes // 4)
    for g in range(1, generation + 1):
        for j in range(quarter):
            slot = ((g - 1) * quarter + j) % cfg.n_scenes
            seeds[slot] = REFRESH_SEED_BASE + cfg.seed * 1_000_000 + g * quarter + j
    return seeds


def _generation(cfg: SolverTrainConfig, step: int) -> int:
    return step // cfg.refresh_every if cfg.refresh_every else 0


def _photos(cfg: SolverTrainConfig) -> list[Path] | None:
    """Return the photographs a run draws scenes from (listed once), or None."""
    if not cfg.photo_share:
        return None
    if not cfg.photo_dir:
        raise ValueError("photo_share needs photo_dir, a folder of photographs")
    return training_photos(cfg.photo_dir)


def _scene(cfg: SolverTrainConfig, seed: int, photos: list[Path] | None) -> SolverScene:
    """Make the pool's scene of ``seed`` (a photograph in ``photo_share`` of the seeds)."""
    if photos is None:
        return make_scene(seed, cfg.scene_size)
    return make_scene(seed, cfg.scene_size, photos=photos, photo_share=cfg.photo_share)


def _refresh(
    pool: list[SolverScene], cfg: SolverTrainConfig, generation: int, photos: list[Path] | None
) -> None:
    """Replace the scenes that refresh ``generation`` changes, in place."""
    before, after = _pool_seeds(cfg, generation - 1), _pool_seeds(cfg, generation)
    for slot, (old, new) in enumerate(zip(before, after, strict=True)):
        if old != new:
            pool[slot] = _scene(cfg, new, photos)


def _to_pm1(dn: torch.Tensor) -> torch.Tensor:
    return dn / 127.5 - 1.0


def _adv_scale(cfg: SolverTrainConfig, run: _Run) -> float:
    """Weight of the adversarial term now: ramped from 0 over ``adv_warmup`` steps of the run."""
    if cfg.adv_warmup <= 0:
        return cfg.adv_weight
    return cfg.adv_weight * min(1.0, (run.step - run.first_step) / cfg.adv_warmup)


def _step(run: _Run, cfg: SolverTrainConfig, pool: list[SolverScene], dev: torch.device) -> dict:
    batch = sample_crops(pool, batch=cfg.batch, crop=cfg.crop, rng=run.rng)
    inputs, t = _inputs(batch, dev)
    stages = run.solver(inputs, every_stage=True)
    out = finish_torch(stages[-1], t["degraded"], black=t["black"], fwhm=t["fwhm"])
    fake, real = _to_pm1(out), _to_pm1(t["truth"])
    parts: dict[str, float] = {}
    if cfg.adv_weight > 0:
        for _ in range(cfg.n_critic):
            run.opt_d.zero_grad(set_to_none=True)
            d_loss, d_parts = losses.critic_loss(
                run.critic, real, fake.detach(), gp_weight=cfg.gp_weight, generator=run.gp_gen
            )
            d_loss.backward()
            run.opt_d.step()
        parts.update(d_parts)
    run.opt_g.zero_grad(set_to_none=True)
    l1 = (fake - real).abs().mean()
    perc = run.perceptual(fake, real)
    terms = {
        "l1": l1,
        "perceptual": perc,
        "hsi": losses.hsi_loss(fake, real) if cfg.hsi_weight > 0 else l1 * 0,
        "lamp": losses.lamp_loss(fake, real),
        "flux": losses.flux_loss(fake, real),
        "stages": sum(
            ((s + t["black"][..., None, None]).clamp(0, 255) / 127.5 - 1 - real).abs().mean()
            for s in stages[:-1]
        )
        if len(stages) > 1
        else l1 * 0,
        "adv": losses.generator_adversarial_loss(run.critic, fake)
        if cfg.adv_weight > 0
        else l1 * 0,
    }
    g_loss = (
        cfg.content_weight * (terms["l1"] + terms["perceptual"])
        + cfg.hsi_weight * terms["hsi"]
        + cfg.lamp_weight * terms["lamp"]
        + cfg.flux_weight * terms["flux"]
        + cfg.stage_weight * terms["stages"]
        + _adv_scale(cfg, run) * terms["adv"]
    )
    g_loss.backward()
    torch.nn.utils.clip_grad_norm_(run.solver.parameters(), 10.0)
    run.opt_g.step()
    parts.update({k: float(v.detach()) for k, v in terms.items()})
    parts["g_loss"] = float(g_loss.detach())
    return parts


def _save_weights(run: _Run, cfg: SolverTrainConfig, out: Path) -> None:
    from geo_ntl.deblur.weights import save_weights

    meta = {
        "training": {"config": asdict(cfg), "steps": run.step, "seconds": round(run.elapsed, 1)},
    }
    save_weights(run.solver, out / WEIGHTS_NAME, meta=meta, overwrite=True)


def train_solver(
    out_dir: str | os.PathLike[str],
    config: SolverTrainConfig | None = None,
    *,
    resume: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    log_every: int = 10,
    until: int | None = None,
) -> Path:
    """Train (or resume) a solver run in ``out_dir``; return the weights file.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Run folder (created; with ``resume`` it must hold a checkpoint).
    config : SolverTrainConfig, optional
        Options; on resume the stored ones are used, except ``steps`` (which may grow).
    resume : bool, default False
        Continue from the folder's checkpoint.
    device : str, default "cpu"
    threads : int, optional
        Torch CPU threads.
    log_every : int, default 10
        Steps between lines of ``log.jsonl``.
    until : int, optional
        Stop after this step (checkpointed) without changing the run's schedule: resume
        later to go on, exactly as if it had not stopped.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg_path = out / CONFIG_NAME
    if resume:
        stored = SolverTrainConfig(**json.loads(cfg_path.read_text()))
        if config is not None:
            stored.steps = config.steps
        cfg = stored
    else:
        cfg = config or SolverTrainConfig()
    cfg_path.write_text(json.dumps(asdict(cfg), indent=1))
    run = _Run(cfg, dev)
    ckpt = out / CHECKPOINT_NAME
    if resume:
        run.load(torch.load(ckpt, map_location="cpu", weights_only=False))
    elif cfg.init_from:
        run.branch(cfg.init_from)
    photos = _photos(cfg)
    pool = [_scene(cfg, seed, photos) for seed in _pool_seeds(cfg, _generation(cfg, run.step))]
    with (out / LOG_NAME).open("a") as log:
        last = cfg.steps if until is None else min(cfg.steps, until)
        while run.step < last:
            for g in run.opt_g.param_groups + run.opt_d.param_groups:
                g["lr"] = cfg.lr * max(0.0, 1.0 - run.step / cfg.steps)
            t0 = time.perf_counter()
            parts = _step(run, cfg, pool, dev)
            run.step += 1
            run.elapsed += time.perf_counter() - t0
            if run.step % log_every == 0:
                log.write(
                    json.dumps({"step": run.step, "elapsed_s": round(run.elapsed, 1), **parts})
                    + "\n"
                )
                log.flush()
            if cfg.refresh_every and run.step % cfg.refresh_every == 0:
                _refresh(pool, cfg, _generation(cfg, run.step), photos)
            if run.step % cfg.checkpoint_every == 0 or run.step == last:
                tmp = ckpt.with_suffix(".tmp")
                torch.save(run.state(), tmp)
                os.replace(tmp, ckpt)
                _save_weights(run, cfg, out)
    return out / WEIGHTS_NAME


if __name__ == "__main__":  # pragma: no cover - the background run's entry point
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--steps", type=int, default=SolverTrainConfig.steps)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--init-from", help="start from this weights file (a branch of its run)")
    p.add_argument("--stages", type=int, default=SolverTrainConfig.stages)
    p.add_argument("--iterations", type=int, default=SolverTrainConfig.iterations)
    p.add_argument("--start", default=SolverTrainConfig.start, help="data or flat")
    p.add_argument("--accelerate", action="store_true", help="extrapolated data steps")
    p.add_argument("--prior-reach", type=float, help="confine the prior (FWHM from clipped pixels)")
    p.add_argument("--adv-warmup", type=int, default=0)
    p.add_argument("--photo-dir", help="folder of low-light photographs for photo scenes")
    p.add_argument("--photo-share", type=float, default=0.0, help="share of photo scenes")
    a = p.parse_args()
    train_solver(
        a.out_dir,
        SolverTrainConfig(
            steps=a.steps,
            init_from=a.init_from,
            stages=a.stages,
            iterations=a.iterations,
            start=a.start,
            accelerate=a.accelerate,
            prior_reach=a.prior_reach,
            adv_warmup=a.adv_warmup,
            photo_dir=a.photo_dir,
            photo_share=a.photo_share,
        ),
        resume=a.resume,
        device=a.device,
        threads=a.threads,
    )
