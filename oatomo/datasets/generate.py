"""Training and evaluation data over a scanner family (see :mod:`oatomo.scanners`).

A dataset holds the items of one or more environments (``"<geometry>/<perturbation>"``);
a single-setup dataset is one environment.

Each item: a phantom of a random kind on the canonical grid, one scanner drawn from an
environment (:func:`oatomo.scanners.draw_scan`), the scan simulated with the *true*
sensors and speed of sound (noise, band), and reconstructions with the *nominal* ones:
linear ones (``ubp``, ``das``) and the pipeline's model-based TV image (``mb-tv``: exactly
what ``oatomo.reconstruct(scan, "mb-tv")`` computes, 50 iterations). An item is a pure
function of ``(seed, environment index, item index)`` (:func:`item_seed`).

Against the inverse crime, ``oversample=k`` draws the phantom on a grid ``k`` times finer
over the same field of view and simulates the scan there (slab thickness the image
pitch); the target is the fine phantom averaged over k x k blocks. ``responses`` also
convolves half of the scans with a Gaussian detector response (drawn centre and
bandwidth) before the band and the noise. ``target="input"`` stores the truth divided by
the first input channel's divisor (the model then learns Pa relative to its input's peak,
and its output times that peak is in Pa); ``"max"`` (the default) the truth with maximum 1.

Storage: a directory of chunk files ``chunk_<env>_<k>.npz`` (``chunk`` items of one
environment each), every one written atomically, plus ``manifest.json``. An interrupted
generation resumes by skipping the chunks that exist. While a run writes the directory it
holds its lock (:func:`job_directory`): a second run on the same directory is refused.
Arrays per chunk::

    inputs   float32 (m, C, n, n)  reconstructions (channels: ``inputs`` names),
                                   each divided by its maximum absolute value
    targets  float32 (m, 1, n, n)  p0, max 1 (``target="input"``: p0 / scale[0])
    scale    float32 (m, C)        the divisors (Pa), to undo the normalisation
    seeds    uint64  (m,)          item seeds
    kinds    <U16    (m,)          phantom kind of each item
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import atomic_path, check_free_space
from oatomo._documents import read_json
from oatomo._limits import check_bytes, check_seed
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid
from oatomo.progress import Callback
from oatomo.scanners import (
    CANONICAL_PITCH,
    FAMILY_TV,
    Environment,
    draw_scan,
    environment,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)

__all__ = ["TRAIN_PHANTOMS", "HELDOUT_PHANTOMS", "LINEAR_INPUTS", "MODEL_INPUTS", "INPUTS",
           "TV_ITERS", "TARGETS", "item_seed", "make_item", "input_images", "block_mean",
           "generate_dataset", "load_dataset", "read_manifest", "resume_directory",
           "job_directory", "LOCK_NAME"]

#: The lock file a run keeps in the job directory it writes (removed when it ends).
LOCK_NAME = ".oatomo-job.lock"

#: Phantom kinds of the training data.
TRAIN_PHANTOMS = ("vessel-forest", "vessel-tree", "vessels", "blobs", "disks", "texture",
                  "mixture")
#: Phantom kinds kept out of training (evaluation only).
HELDOUT_PHANTOMS = ("vessel-walk", "texture-heldout")
#: Linear reconstructions an item can carry as input channels.
LINEAR_INPUTS = ("ubp", "das")
#: Model-based reconstructions an item can carry (the pipeline's method names).
MODEL_INPUTS = ("mb-tv",)
#: Every input channel an item can carry.
INPUTS = LINEAR_INPUTS + MODEL_INPUTS
#: Iterations of the ``mb-tv`` input: the pipeline's default.
TV_ITERS = 50
#: How targets are stored (see the module docstring).
TARGETS = ("max", "input")
#: Gaussian detector responses of ``responses=True``: centre (Hz) and fractional bandwidth.
RESPONSE_CENTRE, RESPONSE_BANDWIDTH = (2e6, 8e6), (0.6, 1.5)


def input_images(names: Sequence[str], sinogram: np.ndarray, grid: Grid, sensors: Any,
                 acquisition: Acquisition, *,
                 band: tuple[float | None, float | None] | None = None
                 ) -> dict[str, np.ndarray]:
    """The input channels (Pa) of one (N, T) sinogram on ``grid``, by name.

    Linear ones are :func:`oatomo.backproject` with ``band``; ``mb-tv`` is the method
    registry's TV image (:func:`oatomo.recon.registry.reconstruct_sinogram`, 50
    iterations, default weight) with the same ``band``, as the pipeline computes it.
    """
    # lazy: the numba kernels compile on first import
    from oatomo.recon.backprojection import backproject
    from oatomo.recon.registry import reconstruct_sinogram

    out = {}
    for m in names:
        if m in LINEAR_INPUTS:
            out[m] = backproject(sinogram, grid, sensors, acquisition, method=m, band=band)
        elif m in MODEL_INPUTS:
            out[m] = reconstruct_sinogram(sinogram, grid, sensors, acquisition, m, band=band,
                                          iters=TV_ITERS)
        else:
            raise InputError(f"unknown input {m!r}; choose from {', '.join(INPUTS)}")
    return out


def block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` (n k, n k) averaged over k x k blocks: (n, n)."""
    n = image.shape[-1] // k
    return image.reshape(n, k, n, k).mean(axis=(1, 3))


def item_seed(seed: int, env: int, index: int) -> int:
    """The 64-bit seed of one item: a function of (seed, environment, index) only."""
    ss = np.random.SeedSequence([int(seed), int(env), int(index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def make_item(env: Environment, grid: Grid, seed: int, *,
              phantoms: Sequence[str] = TRAIN_PHANTOMS,
              inputs: Sequence[str] = ("ubp",),
              keep_scan: bool = False, oversample: int = 1, responses: bool = False,
              target: str = "max") -> dict[str, Any]:
    """Simulate and reconstruct one item of an environment (seeded).

    Parameters
    ----------
    env, grid, seed
        The environment, the image grid and the item's seed.
    phantoms, inputs
        Phantom kinds drawn uniformly; input channels (:data:`INPUTS`).
    keep_scan
        Also return the simulated scan.
    oversample, responses, target
        Simulation on a grid ``oversample`` times finer; Gaussian detector responses on
        half of the scans; how the target is stored (see the module docstring).

    Returns
    -------
    dict
        ``input`` (C, n, n) float32 normalised per channel, ``scale`` (C,), ``target``
        (1, n, n), ``kind`` (phantom kind), ``draw`` (:class:`oatomo.scanners.ScanDraw`),
        ``response`` (the detector response or None); with ``keep_scan`` also
        ``sinogram`` (the simulated scan, Pa).
    """
    # lazy: the numba kernels compile on first import
    from oatomo.forward import simulate
    from oatomo.phantoms import make
    from oatomo.response import DetectorResponse

    for m in inputs:
        if m not in INPUTS:
            raise InputError(f"unknown input {m!r}; choose from {', '.join(INPUTS)}")
    if target not in TARGETS:
        raise InputError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if isinstance(oversample, bool) or not isinstance(oversample, (int, np.integer)) \
            or not 1 <= oversample <= 4:
        raise InputError(f"oversample must be an integer from 1 to 4, got {oversample!r}")
    s_kind, s_phantom, s_scan, s_noise = np.random.SeedSequence(seed).generate_state(4)
    kind = phantoms[int(s_kind % len(phantoms))]
    fine = Grid(grid.n * oversample, grid.fov) if oversample > 1 else grid
    p0_fine = make(kind, fine, int(s_phantom))
    draw = draw_scan(env, grid, int(s_scan))
    acq = draw.acquisition
    response = None
    if responses:  # its own stream: the draws above stay those of older datasets
        rng = np.random.default_rng([int(seed), 1])
        if rng.uniform() < 0.5:
            centre = min(float(rng.uniform(*RESPONSE_CENTRE)), 0.3 * acq.fs)
            response = DetectorResponse(centre_frequency=centre,
                                        bandwidth=float(rng.uniform(*RESPONSE_BANDWIDTH)))
    true_acq = Acquisition(acq.fs, acq.n_samples, draw.true_speed, acq.t0)
    sino = simulate(p0_fine, fine, draw.true, true_acq, noise_std=draw.noise, band=draw.band,
                    seed=int(s_noise), response=response,
                    thickness=grid.dx if oversample > 1 else None)
    p0 = block_mean(p0_fine, oversample) if oversample > 1 else p0_fine
    images = {m: input_images([m], sino, grid, draw.nominal, acq,
                              band=None if m in MODEL_INPUTS else draw.band)[m]
              for m in inputs}
    chans, scales = [], []
    for m in inputs:
        s = float(np.abs(images[m]).max()) or 1.0
        chans.append(images[m] / s)
        scales.append(s)
    if target == "input":
        p0 = p0 / scales[0]
    elif oversample > 1:
        p0 = p0 / (float(p0.max()) or 1.0)
    out = {"input": np.stack(chans).astype(np.float32),
           "scale": np.asarray(scales, np.float32),
           "target": p0[None].astype(np.float32), "kind": kind, "draw": draw,
           "response": response}
    if keep_scan:
        out["sinogram"] = sino
    return out


def _chunk_path(root: Path, env: int, k: int) -> Path:
    return root / f"chunk_{env:03d}_{k:05d}.npz"


def generate_dataset(out: str | os.PathLike, environments: Sequence[str], *,
                     count: int, seed: int = 0, size: int = 96, chunk: int = 32,
                     phantoms: Sequence[str] = TRAIN_PHANTOMS,
                     inputs: Sequence[str] = ("ubp",), oversample: int = 1,
                     responses: bool = False, target: str = "max",
                     callback: Callback | None = None) -> Path:
    """Generate (or resume) a dataset directory.

    Parameters
    ----------
    out
        Output directory (created).
    environments
        Environment names (``"<geometry>/<perturbation>"``), in order (one for a
        single-setup dataset).
    count
        Items per environment.
    seed
        Dataset seed; item ``i`` of environment ``e`` uses ``item_seed(seed, e, i)``.
    size
        Image size in pixels at the canonical pitch.
    chunk
        Items per chunk file (the unit of resumption).
    phantoms, inputs
        Phantom kinds drawn uniformly; reconstructions stored as channels
        (:data:`INPUTS`).
    oversample, responses, target
        As in :func:`make_item` (recorded in the manifest when not the defaults).
    callback
        Progress (:data:`oatomo.progress.Callback`): ``callback("scans", done, total)``
        after every chunk.

    Raises
    ------
    InputError
        An unknown environment or input, another job's directory, or too little free
        disk space for the chunks still to write (checked before anything is written).
    """
    root = Path(out)
    seed = check_seed(seed)
    envs = [environment(n) for n in environments]
    grid = Grid(size, size * CANONICAL_PITCH)
    manifest = {"format": "oatomo-family-data", "version": 1, "environments": list(environments),
                "count": count, "seed": seed, "size": size, "pitch": CANONICAL_PITCH,
                "chunk": chunk, "phantoms": list(phantoms), "inputs": list(inputs)}
    for m in inputs:
        if m not in INPUTS:
            raise InputError(f"unknown input {m!r}; choose from {', '.join(INPUTS)}")
    opts = {"oversample": oversample, "responses": responses, "target": target}
    manifest.update({k: v for k, v, d in zip(opts, opts.values(), (1, False, "max"),
                                             strict=True) if v != d})
    if any(e.geometry.name in ("arc-short", "linear") for e in envs):
        manifest["family"] = FAMILY_TV.to_dict()
    per_item = 4 * (len(inputs) + 1) * size * size + 4 * len(inputs) + 8 + 64
    # training loads the whole dataset: refuse one that could never be loaded, before work
    check_bytes(float(len(envs)) * count * per_item, f"a dataset of {len(envs)} x {count} "
                f"items of {size} x {size} pixels (loaded whole for training)", root)
    n_chunks = (count + chunk - 1) // chunk
    todo = sum(min(count, (k + 1) * chunk) - k * chunk for k in range(n_chunks)
               for e in range(len(envs)) if not _chunk_path(root, e, k).exists())
    check_free_space(root, 1.05 * todo * per_item + 2**16)
    with job_directory(root, manifest):
        total, done = len(envs) * count, 0
        # interleave environments so a partial dataset is balanced
        for k in range(n_chunks):
            for e, env in enumerate(envs):
                lo, hi = k * chunk, min(count, (k + 1) * chunk)
                path = _chunk_path(root, e, k)
                if not path.exists():
                    items = [make_item(env, grid, item_seed(seed, e, i), phantoms=phantoms,
                                       inputs=inputs, **opts) for i in range(lo, hi)]
                    with atomic_path(path) as tmp, open(tmp, "wb") as f:
                        np.savez(f, inputs=np.stack([it["input"] for it in items]),
                                 targets=np.stack([it["target"] for it in items]),
                                 scale=np.stack([it["scale"] for it in items]),
                                 seeds=np.array([item_seed(seed, e, i)
                                                 for i in range(lo, hi)], np.uint64),
                                 kinds=np.array([it["kind"] for it in items], "<U16"))
                done += hi - lo
                if callback is not None:
                    callback("scans", done, total)
    return root


def _lock(root: Path) -> int:
    """Take the lock of the job directory ``root``: the open lock file's descriptor, with
    this process's id written in it. Another live holder is an :class:`InputError`."""
    path = root / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif os.fstat(fd).st_size:  # pragma: no cover - no fcntl: a pid means taken
                raise BlockingIOError(errno.EAGAIN, "locked")
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(f"{root} is being written by another run (pid {pid})") from None
        try:  # the holder before may have removed the file between our open and lock
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def job_directory(root: str | os.PathLike, manifest: dict[str, Any]) -> Iterator[Path]:
    """The output directory of a resumable job, held by this run while the block runs.

    The directory is created when missing, locked (a lock file, :data:`LOCK_NAME`, holding
    this process's id under an exclusive ``flock``, which the system releases if the process
    dies), then checked by :func:`resume_directory`. On the way out the lock file is removed;
    a directory this run created is removed again when it is still empty (a refused or
    failed job). Nothing else in the directory is ever deleted.

    Raises
    ------
    InputError
        Another run holds the directory ("... is being written by another run (pid N)"),
        or :func:`resume_directory` refuses it.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError("exists and is not a directory", root)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    fd = None
    try:
        fd = _lock(root)
        resume_directory(root, manifest)
        yield root
    finally:
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (root / LOCK_NAME).unlink()
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()  # only when empty: whatever the job wrote stays


def _read_manifest(path: Path) -> Any:
    """A job directory's ``manifest.json``; an unreadable one is an :class:`InputError`."""
    try:
        return read_json(path, "manifest")
    except InputError as exc:
        raise InputError(f"unreadable manifest ({exc.problem})", path) from None


def resume_directory(root: Path, manifest: dict[str, Any]) -> None:
    """Create the output directory ``root`` of a resumable job, or check that it holds the
    same job: its ``manifest.json`` must equal ``manifest`` (then finished parts are
    kept). A new directory gets the manifest first.

    Raises
    ------
    InputError
        ``root`` is not a directory, holds files but no manifest (not ours: nothing is
        written into it), or holds another job's or an unreadable manifest.
    """
    mpath = root / "manifest.json"
    if root.exists() and not root.is_dir():
        raise InputError("exists and is not a directory", root)
    if mpath.exists():
        old = _read_manifest(mpath)
        if old != manifest:
            raise InputError("directory holds another job's output (different manifest: "
                             "choose another directory)", mpath)
        return
    if root.is_dir() and any(p.name != LOCK_NAME for p in root.iterdir()):
        raise InputError("directory is not empty and has no manifest.json: choose a new "
                         "directory", root)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(mpath) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a dataset directory (``manifest.json``).

    Raises
    ------
    InputError
        No manifest, or an unreadable one.
    """
    mpath = Path(path) / "manifest.json"
    if not mpath.is_file():
        raise InputError("not a family dataset (no manifest.json)", path)
    man = _read_manifest(mpath)
    if not isinstance(man, dict) or not isinstance(man.get("inputs"), list):
        raise InputError("unreadable manifest (not a manifest)", mpath)
    return man


def load_dataset(path: str | os.PathLike, *, limit: int | None = None,
                 channels: Sequence[int] | None = None, partial: bool = False
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """Read a dataset: per environment ``(inputs, targets)`` and the manifest.

    ``limit`` keeps the first items of each environment, ``channels`` selects input
    channels, ``partial`` accepts an unfinished directory (whatever chunks exist).

    Raises
    ------
    InputError
        Not a dataset directory (no manifest, or an unreadable one), or an unfinished
        one without ``partial``.
    """
    root = Path(path)
    mpath = root / "manifest.json"
    man = read_manifest(root)
    try:
        n_chunks = (man["count"] + man["chunk"] - 1) // man["chunk"]
        names = list(man["environments"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"unreadable manifest ({type(exc).__name__})", mpath) from None
    envs = []
    for e in range(len(names)):
        xs, ts = [], []
        for k in range(n_chunks):
            p = _chunk_path(root, e, k)
            if not p.exists():
                if partial:
                    break
                raise InputError(f"dataset is incomplete (missing {p.name}); resume it", root)
            with np.load(p, allow_pickle=False) as z:
                x = z["inputs"]
                xs.append(x if channels is None else x[:, list(channels)])
                ts.append(z["targets"])
            if limit is not None and sum(len(v) for v in xs) >= limit:
                break
        if not xs:
            raise InputError(f"no data for environment {names[e]}", root)
        envs.append((np.concatenate(xs)[:limit], np.concatenate(ts)[:limit]))
    return envs, man
