"""The TV refiner's data, training, export and scores: a residual refiner of the TV image,
trained on scans made like the ones it is scored on.

This is the trainer of the shipped TV refiner (``make model-tv-refiner``: ``data``, then
``train --arch skip-ivae --beta 0.01``, then ``export``; the model is
:class:`oatomo.learn.skipvae.SkipMultiDecoderIVAE`). It began as an experiment: the TV
refiner of ``tv_refiner.py`` (trained on the ``--family tv`` data set, 64 x 64 crops whose
bands, responses and position errors are far harsher than a correct file's) lost 5-6 dB to
TV on the report set, and this script asked whether a refiner trained on *correct-position*
scans of the same simulator, band and noise model as the report set (but other scanners
and phantom kinds) does better, first with its own small U-Net (``--arch resunet``).

Training data (``data``): scans of random scanners -- full rings of 16-384 sensors (r
18-50 mm), arcs of 90-330 deg with 24-256 sensors (r 18-45 mm), linear arrays of 64-256
elements at 0.1-0.3 mm pitch 6-14 mm below the image -- at their exact positions, speed of
sound 1470-1570 m/s (known), simulated by :func:`oatomo.forward.simulate` on a grid 2x
finer than the 128 x 128, 0.1 mm image grid (slab thickness the image pitch), a Gaussian
detector response of centre 2.5-6 MHz and fractional bandwidth 0.8-1.5, and white noise of
0.4-3 % (log-uniform) of the largest clean sample, at 40 MHz (the acquisition window of
``benchmarks/calibration/heldout_default.py``). Phantom kinds: vessel trees (depth 3-6,
root width 0.12-0.8 mm), vessel forests, vessel walks, blobs, disks, the training textures
and mixtures (:mod:`oatomo.phantoms`); never the report set's ``texture-heldout`` or
``points``. Per scan the UBP and TV images (``oatomo.reconstruct(..., "ubp" / "mb-tv")``,
the pipeline's own code and rules: TV with the scan's detector response in its operator,
100 iterations and on to 150 while its objective falls, as the default runs it on a
correct file) and the truth (the fine p0 averaged 2 x 2).
Item ``i`` is a pure function of ``i``.

Models (``train --arch``): ``resunet``, a U-Net (pixel unshuffle 2, levels of 32 / 64 /
128 channels, group norm, SiLU) whose output is the TV channel plus a learned correction
(the last layer starts at zero, so the untrained model returns TV), inputs TV and UBP both
divided by TV's maximum absolute value ``s``, loss the squared error summed per crop
(``--loss sse``) or its log over TV's own (``--loss logratio``); the package's VAEs
(``ivae``, ``bvae``: convolutional; ``skip-ivae``, ``skip-bvae``: skip-connected, the
shipped kind), residual on the TV channel, each input channel over its own peak (as
:class:`oatomo.refine.Refiner` feeds them), the profiled likelihood, KL weight ``--beta``.
The target is the truth divided by ``s``; the answer is multiplied by ``s`` (so it is in
Pa and ``refine(a x) = a refine(x)``). The loop is the package's
:func:`oatomo.learn.patches.train_on_patches`: AdamW, lr 1e-3 with a cosine decay, batches
of 16 random 96 x 96 patches with random rotations by 90 deg and flips, each step's batch a
function of the step; seed 0; a checkpoint (and a kept snapshot) every 500 steps, and an
interrupted run resumes from the checkpoint to the same weights; under ``torchrun
--nproc-per-node N`` the N processes share each step's batch. The items are read again
every 500 steps (items written meanwhile join). ``data --environments arc-short,linear``
keeps only the items of those kinds of scanner in its range (more limited-view scans).

Scoring (``cache`` then ``score``): the report set and the tuning set of
``tv_refiner.py`` (same scans, same truth; the tuning set is the only one looked at while
choosing anything). PSNR (dB, range 1) after each image's best affine fit.

Run (one core each; ``data`` and ``cache`` resume)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/tv_residual.py \\
        data out/tv_residual/data --start 0 --count 192     # and --start 700 --count 165
    .venv/bin/python benchmarks/refinement/tv_residual.py train out/tv_residual/data \\
        out/tv_residual/model.pt --steps 1500
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/tv_residual.py \\
        cache out/tv_residual/report            # add --tuning for the tuning set
    .venv/bin/python benchmarks/refinement/tv_residual.py score out/tv_residual/model.pt \\
        out/tv_residual/report
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "calibration"))
sys.path.insert(0, str(ROOT / "benchmarks" / "refinement"))

import heldout_default as H  # noqa: E402

MM = 1e-3
KINDS = ("tree", "tree", "forest", "walk", "blobs", "disks", "texture", "mixture")


# --- training data -------------------------------------------------------------------


def draw_geometry(rng: np.random.Generator) -> H.Geometry:
    """A random scanner of the training family (exact positions)."""
    u = rng.uniform()
    if u < 0.45:
        n = int(round(math.exp(rng.uniform(math.log(16), math.log(384)))))
        return H.Geometry("ring", n, rng.uniform(18, 50) * MM)
    if u < 0.8:
        n = int(round(math.exp(rng.uniform(math.log(24), math.log(256)))))
        return H.Geometry("ring", n, rng.uniform(18, 45) * MM, rng.uniform(90, 330) * H.DEG)
    n = int(rng.integers(64, 257))
    return H.Geometry("linear", n, rng.uniform(6, 14) * MM, pitch=rng.uniform(0.1, 0.3) * MM)


def phantom_draws(kind: str, rng: np.random.Generator) -> dict:
    """The random parameters of a phantom of ``kind`` (its seed; depth and vessel width
    of a tree), drawn from ``rng``."""
    draws = {"seed": int(rng.integers(2**31))}
    if kind == "tree":
        draws.update(depth=int(rng.integers(3, 7)), width=float(rng.uniform(0.12, 0.8)))
    return draws


def draw_phantom(kind: str, fine, rng: np.random.Generator) -> np.ndarray:
    from oatomo import phantoms as P

    d = phantom_draws(kind, rng)
    if kind == "tree":
        return P.vessel_tree(fine, d["seed"], depth=d["depth"], width=d["width"] * MM)
    if kind == "forest":
        return P.vessel_forest(fine, d["seed"])
    if kind == "walk":
        return P.vessel_walk(fine, d["seed"])
    return P.make(kind, fine, d["seed"])


#: Items numbered from here are self-calibrated scans (:func:`make_calibrated_item`).
CALIBRATED_FROM = 100_000


def item_rng(i: int) -> np.random.Generator:
    """The random stream of item ``i`` (another one for the self-calibrated items)."""
    return np.random.default_rng([i, 77001 if i < CALIBRATED_FROM
                                  else 77002 if i < MICROSPHERES_FROM else 77003])


#: Items numbered from here are scans of microspheres (:func:`microspheres`), a kind the
#: other items lack: point-like absorbers.
MICROSPHERES_FROM = 400_000


def microspheres(grid, rng: np.random.Generator) -> np.ndarray:
    """3-20 uniform spheres of radius 0.02-0.12 mm (beads, a resolution phantom's
    absorbers), each projected onto the plane (``sqrt(r^2 - d^2)``, so a sphere's
    projection, not a disk) with value 0.3-1 at its centre, anywhere within 90 % of the
    field of view; max 1."""
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape)
    half = grid.fov / 2
    for _ in range(int(rng.integers(3, 21))):
        cx, cy = rng.uniform(-0.9 * half, 0.9 * half, size=2)
        r = rng.uniform(0.02, 0.12) * MM
        d2 = (X - cx) ** 2 + (Y - cy) ** 2
        img += rng.uniform(0.3, 1.0) * np.sqrt(np.clip(r * r - d2, 0, None)) / r
    return (img / img.max()).astype(np.float32)


def draw_scene(i: int):
    """The first draws of item ``i``: its random stream (left after the draws), the image
    and simulation grids, the phantom kind, the fine p0, the truth on the image grid and
    the scanner."""
    from oatomo.geometry import Grid

    rng = item_rng(i)
    grid = Grid(H.N_IMAGE, H.FOV)
    fine = Grid(2 * H.N_IMAGE, H.FOV)
    if i >= MICROSPHERES_FROM:
        kind = "microspheres"
        p0 = microspheres(fine, rng)
        truth = H.block_mean(p0.astype(np.float64)).astype(np.float32)
        return rng, grid, fine, kind, p0, truth, draw_geometry(rng)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    p0 = draw_phantom(kind, fine, rng).astype(np.float32)
    truth = H.block_mean(p0.astype(np.float64)).astype(np.float32)
    return rng, grid, fine, kind, p0, truth, draw_geometry(rng)


def save_item(path: Path, tv, ubp, truth, kind: str, geo: str, noise: float,
              env: int | None = None) -> None:
    """Write one training item atomically (``env``: its environment, recorded when it is
    not the replayed one of :func:`item_environment`)."""
    tmp = path.with_suffix(".tmp.npz")
    extra = {} if env is None else {"env": env}
    np.savez(tmp, tv=tv.astype(np.float32), ubp=ubp.astype(np.float32), truth=truth,
             kind=kind, geo=geo, noise=noise, **extra)
    tmp.rename(path)


#: Items numbered from here are report-like scans (:func:`make_report_like`).
REPORT_LIKE_FROM = 200_000


def make_report_like(out: Path, geometries: list[str], kinds: list[str],
                     seeds: range) -> None:
    """Scans drawn exactly as the report set's (``tv_refiner.draw_case``: its geometries,
    phantom generators, band, noise and speed of sound) but with other seeds, as training
    items numbered from :data:`REPORT_LIKE_FROM` (in the order geometry, kind, seed), each
    in the environment of its kind of scanner. For a specialist: what a network of this
    kind learns when its training scans are drawn like the scans it is scored on."""
    import tempfile

    import tv_refiner as T

    i = REPORT_LIKE_FROM
    for g in geometries:
        geo = {**H.GEOMETRIES, **T.FRESH_GEOMETRIES}[g]
        env = geometry_environment(getattr(geo, "base", geo))
        for k in kinds:
            for seed in seeds:
                path = out / f"{i:06d}.npz"
                i += 1
                if path.exists():
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    T.run_case(_Identity(), g, k, seed, cache=Path(tmp))
                    z = np.load(Path(tmp) / f"{g}_{k}_{seed}.npz")
                    truth = T.draw_case(g, k, seed)[3].astype(np.float32)
                    save_item(path, z["tv"], z["ubp"], truth, k, g, 0.0, env)


#: Items numbered from here are self-calibrated report-like scans
#: (:func:`make_calibrated_report_like`): ``+ 10000 x geometry + 1000 x kind + seed % 1000``.
CALIBRATED_REPORT_LIKE_FROM = 300_000


def make_calibrated_report_like(out: Path, geometries: list[str], kinds: list[str],
                                seeds: range) -> None:
    """Wrong files drawn exactly as the calibration benchmark's
    (``heldout_default.make_case``: its arrays, phantom generators, position errors, band,
    noise and the file's speed of sound) with other seeds, self-calibrated by
    :func:`oatomo.calibrate`, and the UBP and TV images of the calibrated scan, as training
    items (numbered by :data:`CALIBRATED_REPORT_LIKE_FROM`; the geometry's and kind's
    places in the lists given), each in the environment of its kind of scanner: what a
    refiner of calibrated images learns when its training scans are drawn like the
    calibrated scans it is scored on (an upper bound on what such data can buy, not a
    model to ship). A scan the calibration refuses is recorded as skipped."""

    for gi, g in enumerate(geometries):
        env = geometry_environment(H._ALL_GEOMETRIES.get(g) or H.GEOMETRIES[g])
        for ki, k in enumerate(kinds):
            for seed in seeds:
                i = CALIBRATED_REPORT_LIKE_FROM + 10000 * gi + 1000 * ki + seed % 1000
                path = out / f"{i:06d}.npz"
                skipped = path.with_suffix(".skipped")
                if path.exists() or skipped.exists():
                    continue
                case = H.make_case(g, k, seed)
                made = calibrated_images(case.scan, case.grid, skipped)
                if made is None:
                    continue
                truth = (case.truth / case.truth.max()).astype(np.float32)
                save_item(path, *made, truth, k, f"{g}-calibrated", case.noise, env)


def make_item(i: int, out: Path, model_response: bool | str = "auto") -> None:
    """Training scan ``i`` (a pure function of ``i``) into ``out/<i>.npz``; the TV image
    with the pipeline's ``model_response`` (see ``tv_refiner.run_case``). Items from
    :data:`CALIBRATED_FROM` on are :func:`make_calibrated_item`."""
    if CALIBRATED_FROM <= i < MICROSPHERES_FROM:
        make_calibrated_item(i, out)
        return
    import oatomo
    from oatomo.forward import simulate
    from oatomo.io import Scan
    from oatomo.response import DetectorResponse

    path = out / f"{i:05d}.npz"
    if path.exists():
        return
    rng, grid, fine, kind, p0, truth, geo = draw_scene(i)
    true = geo.nominal()
    c = float(rng.uniform(1470, 1570))
    noise = float(math.exp(rng.uniform(math.log(0.004), math.log(0.03))))
    acq = H.acquisition_for([true], grid, [c])
    acq = type(acq)(acq.fs, acq.n_samples, speed_of_sound=c, t0=acq.t0)
    response = DetectorResponse(centre_frequency=float(rng.uniform(2.5e6, 6e6)),
                                bandwidth=float(rng.uniform(0.8, 1.5)))
    y = simulate(p0, fine, true, acq, thickness=grid.dx, noise_std=noise,
                 response=response, seed=int(rng.integers(2**63)))
    scan = Scan(y, true, acq, response=response)
    ubp = oatomo.reconstruct(scan, "ubp", grid=grid, calibrate=False, refine=False).image
    tv = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False, refine=False,
                            model_response=model_response).image
    save_item(path, tv, ubp, truth, kind, f"{geo.kind}{geo.n}", noise,
              geometry_environment(geo) if i >= MICROSPHERES_FROM else None)


def make_calibrated_item(i: int, out: Path) -> None:
    """Self-calibrated training scan ``i`` into ``out/<i>.npz``: a scanner, phantom, band
    and noise drawn as by :func:`make_item`, the sensors off their nominal positions (rings
    and arcs: radial 0.1-0.3 mm, angular 0.2-0.6 deg, jitter 0.02-0.08 mm per sensor;
    linear arrays: 0.05-0.15 mm per coordinate plus the jitter) and the file's speed of
    sound off by up to 2.5 %; the file (nominal positions, the file's c) self-calibrated by
    :func:`oatomo.calibrate`, and the UBP and TV images of the calibrated scan -- what
    ``oatomo reconstruct --refine`` refines on a file that fails the position check. A scan
    the calibration refuses (too little structure) is recorded as skipped."""
    from oatomo.forward import simulate
    from oatomo.geometry import SensorArray
    from oatomo.io import Scan
    from oatomo.response import DetectorResponse

    path = out / f"{i:05d}.npz"
    skipped = path.with_suffix(".skipped")
    if path.exists() or skipped.exists():
        return
    rng, grid, fine, kind, p0, truth, geo = draw_scene(i)
    nominal = geo.nominal()
    jitter = float(rng.uniform(0.02, 0.08)) * MM
    if geo.kind == "linear":
        d = rng.standard_normal((geo.n, 2)) * float(rng.uniform(0.05, 0.15)) * MM \
            + rng.standard_normal((geo.n, 2)) * jitter
        true = SensorArray(nominal.positions + d, nominal.normals)
    else:
        true = nominal.perturbed(radial_std=float(rng.uniform(0.1, 0.3)) * MM,
                                 angular_std=float(rng.uniform(0.2, 0.6)) * H.DEG,
                                 jitter_std=jitter, seed=rng)
    c_true = float(rng.uniform(1470, 1570))
    c_file = c_true * (1 + float(rng.uniform(-0.025, 0.025)))
    noise = float(math.exp(rng.uniform(math.log(0.004), math.log(0.03))))
    acq = H.acquisition_for([nominal, true], grid, [c_true, c_file])
    response = DetectorResponse(centre_frequency=float(rng.uniform(2.5e6, 6e6)),
                                bandwidth=float(rng.uniform(0.8, 1.5)))
    y = simulate(p0, fine, true, type(acq)(acq.fs, acq.n_samples, speed_of_sound=c_true,
                                           t0=acq.t0),
                 thickness=grid.dx, noise_std=noise, response=response,
                 seed=int(rng.integers(2**63)))
    scan = Scan(y, nominal, type(acq)(acq.fs, acq.n_samples, speed_of_sound=c_file,
                                      t0=acq.t0), response=response)
    made = calibrated_images(scan, grid, skipped)
    if made is not None:
        save_item(path, *made, truth, kind, f"{geo.kind}{geo.n}-calibrated", noise)


def calibrated_images(scan: Any, grid: Any, skipped: Path) -> tuple[Any, Any] | None:
    """The TV and UBP images of ``scan`` self-calibrated by :func:`oatomo.calibrate` (the
    calibrated scan's own, as ``oatomo reconstruct`` makes them); None, with the reason
    written to ``skipped``, when the calibration refuses the scan."""
    import oatomo
    from oatomo.calibration import apply_calibration
    from oatomo.errors import InputError

    try:
        cal = oatomo.calibrate(scan, grid)
    except InputError as exc:
        skipped.write_text(str(exc))
        return None
    cs = apply_calibration(scan, cal)
    ubp = oatomo.reconstruct(cs, "ubp", grid=grid, calibrate=False, refine=False).image
    tv = oatomo.reconstruct(cs, "mb-tv", grid=grid, calibrate=False, refine=False).image
    return tv, ubp


#: Training environments of the invariant model: the kind of scanner of an item.
ENVIRONMENTS = ("ring", "arc-wide", "arc-short", "linear")


_ENVIRONMENT_OF: dict[int, int] = {}


def item_environment(i: int) -> int:
    """The environment (index into :data:`ENVIRONMENTS`) of training item ``i``, by
    replaying its draws: full ring, arc of 180 deg or more, shorter arc, linear array
    (remembered: the trainer reloads its items every 500 steps)."""
    if i not in _ENVIRONMENT_OF:
        _ENVIRONMENT_OF[i] = _replay_environment(i)
    return _ENVIRONMENT_OF[i]


def item_geometry(i: int) -> H.Geometry:
    """The scanner of training item ``i`` (replaying its draws; not the self-calibrated
    items')."""
    rng = item_rng(i)
    phantom_draws(KINDS[int(rng.integers(len(KINDS)))], rng)
    return draw_geometry(rng)


_VIEW_OF: dict[int, np.ndarray] = {}


def item_view(i: int) -> np.ndarray:
    """The view channels (:func:`oatomo.refine.view.view_channels`) of item ``i``'s
    sensors on the image grid (remembered)."""
    if i not in _VIEW_OF:
        from oatomo.geometry import Grid
        from oatomo.refine.view import view_channels

        if i >= CALIBRATED_FROM:
            raise SystemExit("--view: the self-calibrated items are not supported")
        _VIEW_OF[i] = view_channels(item_geometry(i).nominal(), Grid(H.N_IMAGE, H.FOV))
    return _VIEW_OF[i]


def geometry_environment(geo: H.Geometry) -> int:
    """The environment (index into :data:`ENVIRONMENTS`) of a kind of scanner."""
    if geo.kind == "linear":
        return 3
    if geo.arc >= 2 * math.pi:
        return 0
    return 1 if geo.arc >= math.pi else 2


def _replay_environment(i: int) -> int:
    return geometry_environment(item_geometry(i))


# --- model ---------------------------------------------------------------------------


def norm_scale(tv: np.ndarray) -> float:
    """The divisor of both inputs and the target: TV's maximum absolute value."""
    return float(max(np.abs(tv).max(), 1e-12))


def build_model(channels=(32, 64, 128), shuffle: int = 2, loss_kind: str = "sse"):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch import cat

    def block(ci: int, co: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(ci, co, 3, padding=1), nn.GroupNorm(4, co), nn.SiLU(),
                             nn.Conv2d(co, co, 3, padding=1), nn.SiLU())

    class ResUNet(nn.Module):
        """TV plus a learned correction from (TV, UBP)."""

        def __init__(self) -> None:
            super().__init__()
            self.r = shuffle
            c = 2 * shuffle * shuffle
            self.down = nn.ModuleList()
            for co in channels:
                self.down.append(block(c, co))
                c = co
            self.up = nn.ModuleList()
            self.merge = nn.ModuleList()
            for co in reversed(channels[:-1]):
                self.up.append(nn.ConvTranspose2d(c, co, 2, stride=2))
                self.merge.append(block(2 * co, co))
                c = co
            self.head = nn.Conv2d(c, shuffle * shuffle, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def forward(self, x):
            h = F.pixel_unshuffle(x, self.r)
            skips = []
            for k, b in enumerate(self.down):
                h = b(h)
                if k < len(self.down) - 1:
                    skips.append(h)
                    h = F.avg_pool2d(h, 2)
            for up, m in zip(self.up, self.merge, strict=True):
                h = m(cat([up(h), skips.pop()], 1))
            return x[:, :1] + F.pixel_shuffle(self.head(h), self.r)

        def reconstruct(self, x):
            return self(x)

        def loss(self, x, env=None, target=None, generator=None):
            """``total``: times the pixels (the patch loop divides by them)."""
            err = (self(x) - target).pow(2).flatten(1).sum(1)
            if loss_kind == "logratio":
                err0 = (x[:, :1] - target).pow(2).flatten(1).sum(1)
                floor = 1e-6 * target.pow(2).flatten(1).sum(1) + 1e-8
                value = (torch.log(err + floor) - torch.log(err0 + floor)).mean()
            else:
                value = err.mean()
            return {"total": value * x.shape[-1] * x.shape[-2]}

    return ResUNet()


#: Default channels of the skip-connected VAEs' three levels (the first TV refiner's; the
#: shipped one's, 48/96/192, are passed by ``make model-tv-refiner``).
SKIP_CHANNELS = (32, 64, 128)


def build_vae(kind: str, width: int = 32, depth: int = 2, latent: int = 16,
              beta: float = 1.0, view: bool = False, seed: int = 0,
              channels: tuple[int, int, int] = SKIP_CHANNELS):
    """The package's convolutional VAE of ``kind`` ("ivae": the invariant multi-decoder
    model, one variant decoder per :data:`ENVIRONMENTS`; "bvae": the pooled beta-VAE),
    residual on the TV channel, with the profiled Gaussian likelihood; ``view``: the four
    view channels (:mod:`oatomo.refine.view`) are inputs after TV and UBP; ``channels``:
    the three levels' channels of the skip-connected ones (their capacity)."""
    from oatomo.learn.conv import ConvBetaVAE, ConvMultiDecoderIVAE, ConvVAEConfig
    from oatomo.learn.skipvae import SkipBetaVAE, SkipMultiDecoderIVAE, SkipVAEConfig

    if kind in ("skip-ivae", "skip-bvae"):
        scfg = SkipVAEConfig(in_channels=6 if view else 2, n_envs=len(ENVIRONMENTS),
                             beta=beta, channels=channels)
        return (SkipMultiDecoderIVAE if kind == "skip-ivae" else SkipBetaVAE)(scfg, seed=seed)
    cfg = ConvVAEConfig(in_channels=2, width=width, depth=depth, latent_dim=latent,
                        likelihood="profiled", n_envs=len(ENVIRONMENTS), residual=True,
                        beta=beta)
    return (ConvMultiDecoderIVAE if kind == "ivae" else ConvBetaVAE)(cfg, seed=seed)


def vae_of_checkpoint(ck: dict, arch: str):
    """The VAE a training checkpoint of :func:`train` holds, its weights loaded (the
    architecture, view channels and level channels from the checkpoint's entries)."""
    model = build_vae(arch, view=bool(ck.get("view", False)),
                      channels=tuple(ck.get("channels", SKIP_CHANNELS)))
    model.load_state_dict(ck["model"])
    return model


def model_of_checkpoint(ck: dict) -> tuple[str, Any]:
    """The architecture's name and the model (weights loaded, in evaluation mode) of a
    training checkpoint of :func:`train`; checkpoints without the ``arch`` entry are told
    apart by their weights' names (this file's U-Net, the invariant or the pooled VAE)."""
    keys = ck["model"].keys()
    arch = ck.get("arch") or ("resunet" if "head.weight" in keys else
                              "ivae" if "variant_decoders.0.net.0.weight" in keys else "bvae")
    if arch == "resunet":
        model = build_model()
        model.load_state_dict(ck["model"])
    else:
        model = vae_of_checkpoint(ck, arch)
    return arch, model.eval()


def inputs_of(tv: np.ndarray, ubp: np.ndarray, arch: str) -> tuple[np.ndarray, float]:
    """The network's input channels and the scale its output is multiplied by: TV's peak.
    The package's VAEs take each channel over its own peak (as
    :class:`oatomo.refine.Refiner` feeds them); the U-Net both over TV's."""
    s = norm_scale(tv)
    u = s if arch == "resunet" else norm_scale(ubp)
    return np.stack([tv / s, ubp / u]).astype(np.float32), s


def load_items(data: str, arch: str = "resunet", exclude: tuple[str, ...] = (),
               max_items: int | None = None, view: bool = False,
               kinds: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets and environments of every item of the directories ``data`` (comma
    separated; ``exclude``: leave out the items
    of these :data:`ENVIRONMENTS`, a held-out family; ``max_items``: only the items
    numbered below it; ``view``: the view channels of each item's scanner after TV and
    UBP; ``kinds``: only the items of these phantom kinds, e.g. ``tree,forest,walk``)."""
    X, Y, E = [], [], []
    files = sorted(f for d in data.split(",") for f in glob.glob(f"{d}/*.npz"))
    for f in files:
        if max_items is not None and int(Path(f).stem) >= max_items:
            continue
        z = np.load(f)
        if kinds and str(z["kind"]) not in kinds:
            continue
        env = (int(z["env"]) if "env" in z.files else
               item_environment(int(Path(f).stem)) if "ivae" in arch or exclude else 0)
        if ENVIRONMENTS[env] in exclude:
            continue
        x, s = inputs_of(z["tv"], z["ubp"], arch)
        if view:
            x = np.concatenate([x, item_view(int(Path(f).stem))])
        X.append(x)
        Y.append((z["truth"] / s)[None].astype(np.float32))
        E.append(env)
    return np.stack(X), np.stack(Y), np.asarray(E)


def train(data: str, out: str, steps: int, resume: bool = True, loss_kind: str = "sse",
          arch: str = "resunet", beta: float = 1.0, exclude: tuple[str, ...] = (),
          max_items: int | None = None, device: str = "cpu", view: bool = False,
          kinds: tuple[str, ...] = (), seed: int = 0,
          channels: tuple[int, int, int] = SKIP_CHANNELS) -> None:
    """Train a refiner of the TV image on ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``)
    with :func:`oatomo.learn.patches.train_on_patches` (batches of 16 random 96 x 96
    patches; under ``torchrun --nproc-per-node N`` with distributed data parallelism).

    ``arch`` "resunet" (this file's U-Net) with ``loss_kind`` "sse" (squared error per crop
    over TV's peak) or "logratio" (``log`` of the crop's squared error over TV's own: every
    crop counts by its PSNR change in dB, whatever TV's PSNR there); or the package's VAEs
    "ivae" / "bvae" / "skip-ivae" / "skip-bvae" (:func:`build_vae`), whose loss is their own
    (the profiled likelihood, with the gradient of "logratio"). ``seed`` draws the VAE's
    initial weights and its sampling noise (the batches depend on the step only): another
    seed trains another member of an ensemble of the same recipe. ``channels``: the skip-
    connected VAEs' level channels (the model's capacity).
    """
    import torch

    from oatomo.learn.patches import train_on_patches
    from oatomo.learn.train import dist_info

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    torch.manual_seed(seed)
    if view and arch == "resunet":
        raise SystemExit("--view: the package's VAEs only")
    model = (build_model(loss_kind=loss_kind) if arch == "resunet"
             else build_vae(arch, beta=beta, view=view, seed=seed, channels=channels))

    def load():
        items = load_items(data, arch, exclude, max_items, view, kinds)
        if dist_info()[0] == 0:
            print("items", len(items[0]), "environments", np.bincount(items[2]).tolist(),
                  flush=True)
        return items

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from oatomo.refine.view import channel_signs

    signs = channel_signs(2) if view else None
    train_on_patches(model, load, out, steps=steps, batch_size=16, patch=96, device=device,
                     resume=resume, signs=signs, seed=seed,
                     extra={"arch": arch, "view": view, "channels": list(channels)})


# --- the shipped form ----------------------------------------------------------------


def export(model_path: str, out: str, tta: int = 8) -> None:
    """Write a trained package model (``skip-ivae``, ``ivae``) as a refiner weights archive
    (``.npz`` and its JSON sidecar) that :func:`oatomo.refine.load_refiner` and the
    pipeline read: the family of the training scanners, the inputs (the pipeline's own
    default TV image and UBP, on the user's grid), the environments, the uncertainty mode
    ``decoders-edges`` (the spread of the variant decoders' images -- on the 60 report
    scans its correlation with the error equals that of ``both`` to 0.002, at a fifth of
    the time, because the posterior of this model, trained with beta = 0.01, is narrow --
    weighted by the refined image's edges, :func:`oatomo.refine.refiner.edge_weighted`),
    and test-time augmentation (``tta``: the refined image is the mean over ``tta`` turns
    (and mirrors) of the input, :data:`oatomo.refine.refiner.TTA_PASSES`)."""
    import torch

    from oatomo.learn.checkpoint import save_checkpoint
    from oatomo.refine.view import VIEW_NAMES
    from oatomo.scanners import FAMILY_KEY, ScannerFamily

    ck = torch.load(model_path, weights_only=True, map_location="cpu")
    arch = ck.get("arch", "skip-ivae")
    if arch not in ("skip-ivae", "ivae"):
        raise SystemExit(f"{model_path}: only the invariant models are exported, not {arch}")
    view = bool(ck.get("view", False))
    model = vae_of_checkpoint(ck, arch)
    family = ScannerFamily(sensors=(16, 512), radius=(0.018, 0.050),
                           min_coverage=0.5 * math.pi, pitch=(0.075e-3, 0.15e-3),
                           speed_of_sound=(1450.0, 1600.0), linear=True)
    meta = {"kind": "multi-decoder", "family": family.to_dict(), "pitch": H.FOV / H.N_IMAGE,
            "native_grid": True, "input_from_pipeline": True,
            "inputs": ["mb-tv", "ubp"], "env_names": list(ENVIRONMENTS),
            "uncertainty": "decoders-edges", "tta": True if tta == 8 else int(tta),
            "steps": int(ck["step"]),
            **({"view_channels": list(VIEW_NAMES)} if view else {}),
            "data": "benchmarks/refinement/tv_residual.py data (see its docstring)"}
    save_checkpoint(out, model.eval(), step=int(ck["step"]), train={FAMILY_KEY: meta})


def ensemble(out: str, archives: list[str], shared: bool = True,
             uncertainty: str | None = None) -> None:
    """Write an ensemble refiner: ``out`` holds the first archive's weights and, in its
    metadata, ``members`` naming the others, which are copied beside it as
    ``<out stem>_member<k>.npz`` (with their JSON sidecars); ``shared``: the 8 turns and
    mirrors are shared out among the networks (``tta_shared``), so the ensemble costs
    what one network with test-time augmentation costs; ``uncertainty``: the map's mode
    (default: the first archive's)."""
    from oatomo.learn.records import read_weights, write_weights
    from oatomo.scanners import FAMILY_KEY

    dest = Path(out)
    names = []
    for k, src in enumerate(archives[1:], start=1):
        meta, state = read_weights(src)
        if meta["train"][FAMILY_KEY].get("members"):
            raise SystemExit(f"{src}: a member must not have members of its own")
        target = dest.with_name(f"{dest.stem}_member{k}.npz")
        write_weights(target, meta, state)
        _write_sidecar(target, meta)
        names.append(target.name)
    meta, state = read_weights(archives[0])
    fam = meta["train"][FAMILY_KEY]
    fam["members"] = names
    fam["tta_shared"] = bool(shared)
    if uncertainty:
        fam["uncertainty"] = uncertainty
    write_weights(dest, meta, state)
    _write_sidecar(dest, meta)


def _write_sidecar(path: Path, meta: dict) -> None:
    """The JSON sidecar of a weights archive, written atomically (as
    :func:`oatomo.learn.checkpoint.save_checkpoint` writes it)."""
    from oatomo._atomic import atomic_path
    from oatomo.learn.checkpoint import sidecar_path

    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


# --- scoring -------------------------------------------------------------------------


class _Identity:
    """Stands in for a refiner in ``tv_refiner.run_case``: the refined image is TV."""

    def compatible(self, *a):
        return True, ""

    def refine_scan(self, y, s, acq, grid, **k):
        return argparse.Namespace(refined=k["images"]["mb-tv"])


def cache_set(cache: Path, tuning: bool, model_response: bool | str = "auto",
              geometries: list[str] | None = None, kinds: list[str] | None = None) -> None:
    """Write ``tv_refiner.py``'s scans' y, UBP and TV (its cache) and each truth
    (``geometries``: others of ``heldout_default.py``'s, e.g. ``ring64``; ``kinds``:
    phantom kinds instead of the set's, e.g. textures on the tuning geometries)."""
    import tv_refiner as T

    geos = geometries or (list(T.TUNING_GEOMETRIES) if tuning else list(T.GEOMETRIES))
    kinds = kinds or (T.TUNING_PHANTOMS if tuning else H.PHANTOMS)
    first = T.TUNING_SEED if tuning else H.FIRST_SEED
    for geometry in geos:
        for kind in kinds:
            for seed in (first, first + 1):
                out = cache / f"truth_{geometry}_{kind}_{seed}.npy"
                if out.exists():
                    continue
                row = T.run_case(_Identity(), geometry, kind, seed, cache=cache,
                                 model_response=model_response)
                np.save(out, T.draw_case(geometry, kind, seed)[3])
                print(geometry, kind, seed, round(row["psnr_ubp"], 2),
                      round(row["psnr_tv"], 2), flush=True)


def score(model_path: str, cache: Path, guard: bool = False) -> list[tuple]:
    """Per scan: geometry, kind, seed, PSNR of UBP / TV / refined, refinement and TV times
    and, with ``guard``, the PSNR of what the refinement guard of ``oatomo reconstruct``
    keeps (:func:`oatomo.refine.guard.check_refined` with the rule for a TV image: the
    refined image when it passes, else TV) and whether it passed."""
    import torch

    torch.set_num_threads(2)
    ck = torch.load(model_path, weights_only=True, map_location="cpu")
    arch, model = model_of_checkpoint(ck)
    view = bool(ck.get("view", False))
    run = model if arch == "resunet" else model.reconstruct  # the invariant decoder
    import tv_refiner as T

    from oatomo.refine.view import view_channels

    rows = []
    for geo, kind, seed, z, truth in T.cached_scans(cache):
        tv, ubp = z["tv"], z["ubp"]
        xn, s = inputs_of(tv, ubp, arch)
        # the scan's draws (grid, true positions, acquisition, response): for the view
        # channels and the guard
        case = T.draw_case(geo, kind, seed) if view or guard else None
        if view:
            xn = np.concatenate([xn, view_channels(case[4], case[0])])
        x = torch.from_numpy(xn[None])
        t = time.perf_counter()
        with torch.no_grad():
            ref = run(x)[0, 0].numpy() * s
        dt = time.perf_counter() - t
        row = (geo, kind, seed, H.score(ubp.astype(np.float64), truth),
               H.score(tv.astype(np.float64), truth),
               H.score(ref.astype(np.float64), truth), dt, float(z["t_tv"]))
        if guard:
            from oatomo.refine.guard import check_refined, guard_rule

            grid, _, _, _, true, acq, response, _, _ = case
            verdict = check_refined(ref, tv, z["y"], grid, true, acq, response=response,
                                    rule=guard_rule("mb-tv"))
            kept = ref if verdict.passed else tv
            row += (H.score(kept.astype(np.float64), truth), bool(verdict.passed))
        rows.append(row)
    return rows


def uncertainty(archive: str, cache: Path, samples: int = 16, mode: str | None = None
                ) -> list[dict]:
    """Per cached scan, through the shipped form (:func:`oatomo.refine.load_refiner` on the
    exported archive, :meth:`~oatomo.refine.Refiner.refine_images` with ``samples``
    posterior samples; ``mode`` the map's kind, default the archive's): the refined PSNR, the
    Pearson correlation of the uncertainty map with the absolute error of the refined image
    (after its affine fit) and the refinement's time (s), with the scan's view channels
    passed as :meth:`~oatomo.refine.Refiner.refine_scan` passes them."""
    from dataclasses import replace

    from oatomo.evaluation.metrics import affine_fit
    from oatomo.refine import load_refiner

    ref = load_refiner(archive)
    if mode:
        ref = replace(ref, uncertainty=mode)
    import tv_refiner as T

    from oatomo.refine.view import view_channels

    rows = []
    for geo, kind, seed, z, truth in T.cached_scans(cache):
        # the scan's view channels: a view model's input and, as refine_scan passes
        # them, the limited-view term of the edge-weighted map
        grid, true = (T.draw_case(geo, kind, seed)[i] for i in (0, 4))
        view = ref.view_inputs(true, grid)
        t = time.perf_counter()
        out = ref.refine_images(np.stack([z["tv"], z["ubp"]]), n_samples=samples, seed=0,
                                view=view,
                                map_view=view_channels(true, grid) if view is None else None)
        took = time.perf_counter() - t
        fit = affine_fit(out.refined.astype(np.float64)[None], truth[None])[0]
        r = float(np.corrcoef(out.std.ravel(), np.abs(fit - truth).ravel())[0, 1])
        rows.append({"geometry": geo, "phantom": kind, "seed": seed, "r": r, "s": took,
                     "refined": H.score(out.refined.astype(np.float64), truth),
                     "tv": H.score(z["tv"].astype(np.float64), truth)})
    return rows


def table(rows: list[tuple]) -> str:
    lines = ["| geometry | phantom | n | UBP | TV | refined | refined - TV |",
             "|---|---|---|---|---|---|---|"]
    agg = collections.defaultdict(list)
    for g, k, _, u, t, r, *_ in rows:
        agg[(g, k)].append((u, t, r))
    for (g, k), v in sorted(agg.items()):
        m = np.mean(v, axis=0)
        lines.append(f"| {g} | {k} | {len(v)} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | "
                     f"{m[2] - m[1]:+.2f} |")
    lines += ["", "| geometry | vessels: refined - TV | all: refined - TV | worst scan |",
              "|---|---|---|---|"]
    for g in sorted({r[0] for r in rows}):
        dv = [r[5] - r[4] for r in rows if r[0] == g and r[1].startswith("vessels")]
        da = [r[5] - r[4] for r in rows if r[0] == g]
        lines.append(f"| {g} | {np.mean(dv) if dv else float('nan'):+.2f} | "
                     f"{np.mean(da):+.2f} | {np.min(da):+.2f} |")
    d = np.array([r[5] - r[4] for r in rows])
    ratio = np.median([r[6] / r[7] for r in rows])
    lines += ["", f"All {len(rows)} scans: refined - TV mean {d.mean():+.2f} dB, worst "
              f"{d.min():+.2f}, best {d.max():+.2f}; refinement / TV50 time, median "
              f"{ratio:.3f}"]
    return "\n".join(lines)


def guard_table(rows: list[tuple]) -> str:
    """Guarded (what the pipeline would keep) minus TV, per geometry and kind."""
    lines = ["", "| geometry | phantom | n | passed | guarded - TV |", "|---|---|---|---|---|"]
    agg = collections.defaultdict(list)
    for r in rows:
        agg[(r[0], r[1])].append((r[8] - r[4], r[9]))
    for (g, k), v in sorted(agg.items()):
        lines.append(f"| {g} | {k} | {len(v)} | {sum(p for _, p in v)} | "
                     f"{np.mean([d for d, _ in v]):+.2f} |")
    d = np.array([r[8] - r[4] for r in rows])
    lines += ["", f"All {len(rows)} scans: guarded - TV mean {d.mean():+.2f} dB, worst "
              f"{d.min():+.2f}; passed {sum(r[9] for r in rows)} of {len(rows)}"]
    for g in sorted({r[0] for r in rows}):
        dv = [r[8] - r[4] for r in rows if r[0] == g and r[1].startswith("vessels")]
        lines.append(f"{g}: vessels guarded - TV {np.mean(dv) if dv else float('nan'):+.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("out")
    d.add_argument("--start", type=int, default=0)
    d.add_argument("--count", type=int, default=192)
    d.add_argument("--environments", default="",
                   help="comma list of environments to keep (of {}); the items of the "
                   "others in the range are skipped".format(", ".join(ENVIRONMENTS)))
    d.add_argument("--ignore-response", action="store_true",
                   help="TV without the detector response (the pipeline's default before "
                   "model_response='auto'; the 357/756/1456-scan runs)")
    r = sub.add_parser("report-like", help="training scans drawn like the report set's "
                       "(other seeds; make_report_like)")
    r.add_argument("out")
    r.add_argument("--geometries", default="arc120,linear128")
    r.add_argument("--kinds", default="vessels-thin,vessels-thick")
    r.add_argument("--seeds", default="5000:5100", help="first:end")
    r.add_argument("--calibrated", action="store_true",
                   help="wrong files of the calibration benchmark, self-calibrated "
                   "(make_calibrated_report_like)")
    t = sub.add_parser("train")
    t.add_argument("data")
    t.add_argument("model")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--loss", choices=("sse", "logratio"), default="sse",
                   help="training loss of the U-Net (see train)")
    t.add_argument("--arch", choices=("resunet", "ivae", "bvae", "skip-ivae", "skip-bvae"),
                   default="resunet")
    t.add_argument("--beta", type=float, default=1.0, help="KL weight of the VAEs")
    t.add_argument("--exclude", default="", help="comma list of environments to leave out "
                   "(a held-out family)")
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--max-items", type=int, default=None,
                   help="use only the items numbered below this")
    t.add_argument("--kinds", default="", help="comma list of phantom kinds to keep "
                   "(of {}); default all".format(", ".join(dict.fromkeys(KINDS))))
    t.add_argument("--view", action="store_true",
                   help="the view channels of each scanner are inputs too "
                   "(oatomo.refine.view)")
    t.add_argument("--seed", type=int, default=0,
                   help="initial weights and sampling noise (another ensemble member)")
    t.add_argument("--channels", default=",".join(map(str, SKIP_CHANNELS)),
                   help="the skip-connected VAEs' three level channels (capacity)")
    u = sub.add_parser("uncertainty", help="uncertainty map against the error (archive)")
    u.add_argument("archive")
    u.add_argument("cache")
    u.add_argument("--json")
    u.add_argument("--samples", type=int, default=16, help="posterior samples")
    u.add_argument("--mode", choices=("posterior", "decoders", "both", "decoders-edges",
                                      "ensemble-edges"),
                   help="the uncertainty map's kind (default: the archive's)")
    x = sub.add_parser("export", help="write the shipped form of a trained model")
    x.add_argument("model")
    x.add_argument("out")
    x.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=8,
                   help="passes of test-time augmentation (8: turns and mirrors, 4: turns)")
    e = sub.add_parser("ensemble", help="write an ensemble of exported archives")
    e.add_argument("out")
    e.add_argument("archives", nargs="+", help="the first network, then the members")
    e.add_argument("--every-turn", action="store_true",
                   help="every network takes all 8 turns and mirrors (default: shared)")
    e.add_argument("--uncertainty", choices=("decoders-edges", "ensemble-edges"))
    c = sub.add_parser("cache")
    c.add_argument("cache")
    c.add_argument("--tuning", action="store_true")
    c.add_argument("--geometries", default="",
                   help="comma list of heldout_default.py geometries instead of the set's")
    c.add_argument("--ignore-response", action="store_true",
                   help="as for data (the caches of the earlier runs)")
    c.add_argument("--kinds", default="",
                   help="comma list of phantom kinds instead of the set's")
    s = sub.add_parser("score")
    s.add_argument("model")
    s.add_argument("cache")
    s.add_argument("--json")
    s.add_argument("--guard", action="store_true",
                   help="also score what the refinement guard keeps")
    a = ap.parse_args(argv)
    if a.cmd == "data":
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        keep = {ENVIRONMENTS.index(e) for e in a.environments.split(",") if e}
        for i in range(a.start, a.start + a.count):
            if not keep or item_environment(i) in keep:
                make_item(i, out, False if a.ignore_response else "auto")
    elif a.cmd == "report-like":
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        lo, hi = (int(v) for v in a.seeds.split(":"))
        make = make_calibrated_report_like if a.calibrated else make_report_like
        make(out, a.geometries.split(","), a.kinds.split(","), range(lo, hi))
    elif a.cmd == "train":
        from oatomo.errors import InputError

        try:
            train(a.data, a.model, a.steps, loss_kind=a.loss, arch=a.arch,
                  beta=a.beta, exclude=tuple(e for e in a.exclude.split(",") if e),
                  max_items=a.max_items, device=a.device, view=a.view,
                  kinds=tuple(k for k in a.kinds.split(",") if k), seed=a.seed,
                  channels=tuple(int(c) for c in a.channels.split(",")))
        except InputError as exc:  # e.g. --device cuda on a machine without CUDA
            print(f"tv_residual.py train: error: {exc}", file=sys.stderr)
            return 2
    elif a.cmd == "ensemble":
        ensemble(a.out, a.archives, shared=not a.every_turn, uncertainty=a.uncertainty)
    elif a.cmd == "uncertainty":
        rows = uncertainty(a.archive, Path(a.cache), a.samples, a.mode)
        rs = np.array([r["r"] for r in rows])
        for g in dict.fromkeys(r["geometry"] for r in rows):
            sel = [r["r"] for r in rows if r["geometry"] == g]
            print(f"{g}: r median {np.median(sel):.2f}, min {min(sel):.2f}")
        print(f"all {len(rows)}: r median {np.median(rs):.2f}, mean {rs.mean():.2f}, "
              f"min {rs.min():.2f}, {int((rs >= 0.5).sum())} of {len(rs)} >= 0.5; "
              f"median time {np.median([r['s'] for r in rows]):.3f} s")
        if a.json:
            Path(a.json).write_text(json.dumps(rows, indent=1))
    elif a.cmd == "export":
        export(a.model, a.out, a.tta)
    elif a.cmd == "cache":
        cache_set(Path(a.cache), a.tuning, False if a.ignore_response else "auto",
                  [g for g in a.geometries.split(",") if g] or None,
                  [k for k in a.kinds.split(",") if k] or None)
    else:
        rows = score(a.model, Path(a.cache), a.guard)
        print(table(rows))
        if a.guard:
            print(guard_table(rows))
        if a.json:
            Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
