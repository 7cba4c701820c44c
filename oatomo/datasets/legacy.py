"""Multi-environment training data: simulate scans of several setups, reconstruct them.

An *experiment* (a TOML file, see ``simulations/exp_*.toml``) lists setups — the
environments — a phantom family and a count per setup. For every item the true sensor
positions of the setup are drawn, the scan is simulated with the setup's noise and band,
and it is reconstructed with the *nominal* positions (UBP or DAS). The linear image (the
network input), the clean initial pressure (the target), the environment id, the item's
seed and its true sensor positions are stored in one chunked HDF5 file.

Every item is fully determined by ``(seed, environment index, item index)``, whatever the
sharding or the order of generation. Generation writes each finished chunk as a file of
its own into the directory ``<out>.partial`` (atomically: a full disk or a kill loses at
most the chunk in progress); an interrupted run resumes from there without redoing
finished chunks, and the HDF5 file is assembled from them (written atomically) when all
are done.

HDF5 layout (``oatomo_format = "dataset"``, ``format_version = 1``)::

    /inputs          float32 (M, n, n)  linear reconstruction with nominal positions
    /targets         float32 (M, n, n)  p0 (phantom), max 1
    /env             int16   (M,)       environment index into attrs["environments"]
    /index           int64   (M,)       item index within its environment
    /item_seed       uint64  (M,)       seed every random draw of the item derives from
    /true_positions  float64 (M, N, 2)  drawn sensor positions (m)
    /done            bool    (M/chunk,) finished chunks (generation bookkeeping)
    attrs: experiment (TOML text), environments (JSON list of setup names),
           setups (JSON list of setup dicts), seed, shard, grid_n, grid_fov, method
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._limits import MAX_COUNT, check_bytes
from oatomo.errors import InputError
from oatomo.errors import blame as _blame
from oatomo.geometry import Grid
from oatomo.recon.registry import Callback, linear_methods

logger = logging.getLogger(__name__)

__all__ = [
    "Experiment",
    "EnvironmentSpec",
    "load_experiment",
    "generate_dataset",
    "merge_datasets",
    "item_seed",
    "make_item",
    "TrainingData",
    "load_training_data",
    "DATASET_FORMAT_VERSION",
]

DATASET_FORMAT_VERSION = 1
_EXPERIMENT_KEYS = {"name", "description", "phantom", "method", "chunk", "environments"}
_ENV_KEYS = {"setup", "count"}


@dataclass(frozen=True)
class EnvironmentSpec:
    """One environment of an experiment: a setup and how many items to draw from it."""

    setup: Any  # oatomo.setups.Setup
    count: int


@dataclass(frozen=True)
class Experiment:
    """A list of environments sharing a phantom family and a linear reconstruction.

    Parameters
    ----------
    name
        Short name of the experiment.
    environments
        The setups and item counts.
    phantom
        Phantom family passed to :func:`oatomo.phantoms.make` (``"vessels"``,
        ``"vessel-tree"``, ...).
    method
        Linear reconstruction for the network input: ``"ubp"`` or ``"das"``.
    chunk
        Items per HDF5 chunk and per resumable unit of work.
    description
        Free text.
    source
        The TOML text the experiment was read from (stored in the dataset).
    """

    name: str
    environments: tuple[EnvironmentSpec, ...]
    phantom: str = "vessels"
    method: str = "ubp"
    chunk: int = 16
    description: str = ""
    source: str = field(default="", compare=False)

    @property
    def n_items(self) -> int:
        """Total number of items over all environments."""
        return sum(e.count for e in self.environments)

    @property
    def setup_names(self) -> list[str]:
        """Names of the environments' setups, in order."""
        return [e.setup.name for e in self.environments]


def _load_toml(path: Path) -> dict[str, Any]:
    from oatomo.setups import read_toml

    return read_toml(path, "experiment")


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read an experiment TOML file.

    Setups are named relative to the experiment file's directory (``"ring32_radial"`` or
    ``"ring32_radial.toml"``), or as bundled setup names.

    Raises
    ------
    InputError
        Unknown or missing keys, wrong types, unknown setups, grids that differ between
        environments.
    """
    from oatomo.setups import load_setup

    path = Path(path)
    doc = _load_toml(path)
    unknown = sorted(set(doc) - _EXPERIMENT_KEYS)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} in experiment", path)
    envs_doc = doc.get("environments")
    if not isinstance(envs_doc, list) or not envs_doc:
        raise InputError("experiment needs at least one [[environments]] table", path)
    envs = []
    for k, e in enumerate(envs_doc):
        if not isinstance(e, dict):
            raise InputError(f"environments[{k}] must be a table", path)
        bad = sorted(set(e) - _ENV_KEYS)
        if bad:
            raise InputError(f"unknown key {bad[0]!r} in environments[{k}]", path)
        if not isinstance(e.get("setup"), str):
            raise InputError(f"environments[{k}].setup must be a string", path)
        count = e.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not \
                1 <= count <= MAX_COUNT:
            raise InputError(f"environments[{k}].count must be an integer in 1..{MAX_COUNT}, "
                             f"got {count!r}", path)
        name = e["setup"]
        local = path.parent / (name if name.endswith(".toml") else f"{name}.toml")
        with _blame(path):
            setup = load_setup(local if local.exists() else name)
        envs.append(EnvironmentSpec(setup=setup, count=count))
    grids = {(e.setup.grid, e.setup.array.n_sensors) for e in envs}
    if len(grids) != 1:
        raise InputError("all environments must share the image grid and sensor count", path)
    for key, typ in (("name", str), ("phantom", str), ("method", str),
                     ("description", str), ("chunk", int)):
        if key in doc and (not isinstance(doc[key], typ) or isinstance(doc[key], bool)):
            raise InputError(f"{key!r} must be of type {typ.__name__}", path)
    method = doc.get("method", "ubp")
    if method not in linear_methods():
        raise InputError(f"method must be one of {', '.join(linear_methods())}, got "
                         f"{method!r}", path)
    chunk = int(doc.get("chunk", 16))
    if not 1 <= chunk <= 4096:
        raise InputError("chunk must be in 1..4096", path)
    from oatomo.phantoms import check_name

    with _blame(path):
        check_name(doc.get("phantom", "vessels"))
    first = envs[0].setup
    check_bytes(4.0 * chunk * (first.grid.n ** 2 * 2 + first.array.n_sensors
                               * first.acquisition.n_samples), "one chunk of items", path)
    return Experiment(
        name=doc.get("name", path.stem),
        environments=tuple(envs),
        phantom=doc.get("phantom", "vessels"),
        method=method,
        chunk=chunk,
        description=doc.get("description", ""),
        source=path.read_text(),
    )


def item_seed(seed: int, env: int, index: int) -> int:
    """The 64-bit seed of one item: a function of (seed, environment, index) only."""
    ss = np.random.SeedSequence([int(seed), int(env), int(index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


def make_item(setup: Any, phantom: str, method: str, seed: int) -> dict[str, np.ndarray]:
    """Simulate and reconstruct one item of a setup.

    Parameters
    ----------
    setup
        An :class:`oatomo.setups.Setup`.
    phantom
        Phantom family name for :func:`oatomo.phantoms.make`.
    method
        ``"ubp"`` or ``"das"``: linear reconstruction with the nominal positions.
    seed
        The item's seed (see :func:`item_seed`); phantom, positions and noise derive from it.

    Returns
    -------
    dict
        ``input`` (n, n) float32, ``target`` (n, n) float32, ``true_positions`` (N, 2).
    """
    from oatomo.forward import simulate
    from oatomo.phantoms import make
    from oatomo.pipeline import reconstruct_sinogram

    s_phantom, s_draw, s_noise = np.random.SeedSequence(seed).generate_state(3)
    p0 = make(phantom, setup.grid, int(s_phantom))
    true = setup.draw(int(s_draw))
    sino = simulate(p0, setup.grid, true, setup.acquisition, thickness=setup.thickness,
                    noise_std=setup.noise, band=setup.band, response=setup.response,
                    element_width=setup.element_width, seed=int(s_noise))
    image = reconstruct_sinogram(sino, setup.grid, setup.array, setup.acquisition, method,
                                 band=setup.band)
    return {"input": image.astype(np.float32), "target": p0.astype(np.float32),
            "true_positions": true.positions}


def _fingerprint(exp: Experiment, seed: int, shard: tuple[int, int]) -> str:
    blob = json.dumps([exp.source, exp.setup_names, seed, list(shard)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shard_chunks(n_chunks: int, shard: tuple[int, int]) -> list[int]:
    k, n = shard
    return [c for c in range(n_chunks) if c % n == k - 1]


def _global_items(exp: Experiment) -> list[tuple[int, int]]:
    return [(e, i) for e, spec in enumerate(exp.environments) for i in range(spec.count)]


def generate_dataset(
    experiment: Experiment,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    shard: tuple[int, int] = (1, 1),
    callback: Callback | None = None,
    force: bool = False,
    max_chunks: int | None = None,
) -> Path | None:
    """Generate (or resume) a dataset file for an experiment.

    Parameters
    ----------
    experiment
        From :func:`load_experiment`.
    out
        Output HDF5 path. Work in progress (finished chunks) lives in the directory
        ``<out>.partial``.
    seed
        Experiment seed; every item derives its own seed from (seed, env, index).
    shard
        ``(k, n)``: generate only chunks ``c`` with ``c % n == k - 1`` (1-based ``k``).
        Shards are merged with :func:`merge_datasets`.
    callback
        ``callback("dataset", items_done, items_total)`` after each item of this shard.
    force
        Overwrite an existing finished ``out``.
    max_chunks
        Stop after this many chunks (they stay in ``.partial``; used to test resuming).

    Returns
    -------
    Path or None
        ``out`` when complete; None when stopped early by ``max_chunks``.
    """
    from oatomo._atomic import atomic_path, check_free_space, check_output_path, hdf5_for_writing

    k, n = shard
    if not (1 <= k <= n):
        raise InputError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")
    out = check_output_path(out, force=force)
    partial = out.with_name(out.name + ".partial")
    items = _global_items(experiment)
    chunk = experiment.chunk
    n_chunks = (len(items) + chunk - 1) // chunk
    mine = _shard_chunks(n_chunks, shard)
    fp = _fingerprint(experiment, seed, shard)
    first = experiment.environments[0].setup
    grid_n, n_sens = first.grid.n, first.array.n_sensors
    m = len(items)
    seeds = np.array([item_seed(seed, e, i) for e, i in items], np.uint64)

    per_item = 8.0 * grid_n * grid_n + 16.0 * n_sens + 64
    mine_items = sum(min(m, (c + 1) * chunk) - c * chunk for c in mine)
    done_bytes = (sum(p.stat().st_size for p in partial.glob("chunk_*.npz"))
                  if partial.is_dir() else 0)
    # the chunks, then the assembled file beside them
    check_free_space(out, 2.1 * mine_items * per_item + 2**20 - done_bytes)
    _start_partial(partial, fp)
    todo = [c for c in mine if not _chunk_file(partial, c).exists()]
    if len(todo) < len(mine):
        logger.info("resuming %s: %d of %d chunks already done", partial,
                    len(mine) - len(todo), len(mine))
    if max_chunks is not None:
        todo = todo[:max_chunks]
    total = sum(min(chunk, m - c * chunk) for c in mine)
    n_done = total - sum(min(chunk, m - c * chunk) for c in todo)
    for c in todo:
        lo, hi = c * chunk, min(m, (c + 1) * chunk)
        inp = np.empty((hi - lo, grid_n, grid_n), np.float32)
        tgt = np.empty_like(inp)
        pos = np.empty((hi - lo, n_sens, 2))
        for j, g in enumerate(range(lo, hi)):
            e, _ = items[g]
            spec = experiment.environments[e]
            it = make_item(spec.setup, experiment.phantom, experiment.method, int(seeds[g]))
            inp[j], tgt[j], pos[j] = it["input"], it["target"], it["true_positions"]
            n_done += 1
            if callback is not None:
                callback("dataset", n_done, total)
        with atomic_path(_chunk_file(partial, c)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, inputs=inp, targets=tgt, true_positions=pos)
    if not all(_chunk_file(partial, c).exists() for c in mine):
        return None
    done = np.zeros(n_chunks, bool)
    done[mine] = True
    with atomic_path(out) as tmp, hdf5_for_writing(tmp) as f:
        f.attrs["oatomo_format"] = "dataset"
        f.attrs["format_version"] = DATASET_FORMAT_VERSION
        f.attrs["fingerprint"] = fp
        f.attrs["experiment"] = experiment.source
        f.attrs["experiment_name"] = experiment.name
        f.attrs["environments"] = json.dumps(experiment.setup_names)
        f.attrs["setups"] = json.dumps([e.setup.to_dict() for e in experiment.environments])
        f.attrs["seed"] = int(seed)
        f.attrs["shard"] = f"{k}/{n}"
        f.attrs["grid_n"] = grid_n
        f.attrs["grid_fov"] = first.grid.fov
        f.attrs["method"] = experiment.method
        f.attrs["phantom"] = experiment.phantom
        f.attrs["chunk"] = chunk
        img_chunks = (min(chunk, m), grid_n, grid_n)
        f.create_dataset("inputs", (m, grid_n, grid_n), "f4", chunks=img_chunks)
        f.create_dataset("targets", (m, grid_n, grid_n), "f4", chunks=img_chunks)
        f.create_dataset("env", data=np.array([e for e, _ in items], np.int16))
        f.create_dataset("index", data=np.array([i for _, i in items], np.int64))
        f.create_dataset("item_seed", data=seeds)
        f.create_dataset("true_positions", (m, n_sens, 2), "f8",
                         chunks=(min(chunk, m), n_sens, 2), fillvalue=np.nan)
        f.create_dataset("done", data=done)
        for c in mine:
            lo, hi = c * chunk, min(m, (c + 1) * chunk)
            with np.load(_chunk_file(partial, c)) as z:
                f["inputs"][lo:hi] = z["inputs"]
                f["targets"][lo:hi] = z["targets"]
                f["true_positions"][lo:hi] = z["true_positions"]
        f.attrs["complete"] = True  # every chunk of this shard is done
    shutil.rmtree(partial, ignore_errors=True)
    return out


def _chunk_file(partial: Path, c: int) -> Path:
    return partial / f"chunk_{c:06d}.npz"


def _start_partial(partial: Path, fingerprint: str) -> None:
    """Keep ``partial`` (the directory of finished chunks) when it belongs to this
    experiment, seed and shard; otherwise start it afresh (it is this output's own
    work directory, named after it)."""
    from oatomo._atomic import atomic_path

    manifest = partial / "manifest.json"
    try:
        same = json.loads(manifest.read_text()).get("fingerprint") == fingerprint
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        same = False
    if same:
        return
    if partial.is_dir() and not partial.is_symlink():
        logger.warning("%s belongs to another experiment/seed/shard; starting over", partial)
        shutil.rmtree(partial)
    elif os.path.lexists(partial):  # an older layout (one HDF5 file) or a stray file
        logger.warning("%s is not a chunk directory; starting over", partial)
        partial.unlink()
    partial.mkdir()
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps({"format": "oatomo-dataset-chunks", "fingerprint":
                                   fingerprint}))


def merge_datasets(parts: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   force: bool = False) -> Path:
    """Merge the shards of one experiment (same experiment and seed) into one file.

    Raises
    ------
    InputError
        Shards of different experiments or seeds, missing or duplicated shards.
    """
    from oatomo._atomic import (
        atomic_path,
        check_free_space,
        check_input_file,
        check_output_path,
        hdf5_for_writing,
    )

    if not parts:
        raise InputError("no dataset shards given")
    out = check_output_path(out, force=force, inputs=tuple(parts))
    files = []
    for p in parts:
        check_input_file(p, "dataset shard")
        try:
            files.append(h5py.File(p, "r"))
        except FileNotFoundError:
            raise InputError("file not found", p) from None
        except OSError:
            raise InputError("not an HDF5 file (or truncated)", p) from None
    try:
        ref = files[0]
        for p, f in zip(parts, files, strict=True):
            if f.attrs.get("oatomo_format") != "dataset":
                raise InputError("not an oatomo dataset file", p)
            for key in ("experiment", "seed", "environments"):
                if f.attrs[key] != ref.attrs[key]:
                    raise InputError(f"shard differs from {parts[0]} in {key!r}", p)
        shards = sorted(f.attrs["shard"] for f in files)
        n = int(str(shards[0]).split("/")[1])
        if n != len(shards) or shards != sorted(f"{k}/{n}" for k in range(1, n + 1)):
            raise InputError(f"need exactly the shards 1/{n} .. {n}/{n}, got {shards}")
        m, chunk = ref["inputs"].shape[0], int(ref.attrs["chunk"])
        check_free_space(out, 1.05 * sum(ref[name].size * ref[name].dtype.itemsize
                                         for name in ("inputs", "targets", "true_positions"))
                         + 2**20)
        with atomic_path(out) as tmp, hdf5_for_writing(tmp) as g:
            for key, val in ref.attrs.items():
                g.attrs[key] = val
            g.attrs["shard"] = "1/1"
            g.attrs["complete"] = True
            for name in ("inputs", "targets", "true_positions"):
                d = ref[name]
                g.create_dataset(name, d.shape, d.dtype, chunks=d.chunks,
                                 fillvalue=d.fillvalue)
            for name in ("env", "index", "item_seed"):
                g.create_dataset(name, data=ref[name][...])
            done = np.zeros(ref["done"].shape, bool)
            for f in files:
                k = int(str(f.attrs["shard"]).split("/")[0])
                for c in _shard_chunks(done.size, (k, n)):
                    lo, hi = c * chunk, min(m, (c + 1) * chunk)
                    for name in ("inputs", "targets", "true_positions"):
                        g[name][lo:hi] = f[name][lo:hi]
                    done[c] = bool(f["done"][c])
            g.create_dataset("done", data=done)
            if not done.all():
                raise InputError("a shard is unfinished; resume it before merging")
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:120]
        raise InputError(f"malformed dataset shard ({type(exc).__name__}: {first})",
                         parts[0]) from None
    finally:
        for f in files:
            f.close()
    return out


@dataclass
class TrainingData:
    """The environments of a dataset file, ready for :func:`oatomo.learn.train`."""

    environments: list[tuple[np.ndarray, np.ndarray]]
    names: list[str]
    setups: list[dict[str, Any]]
    grid: Grid
    method: str
    item_seeds: list[np.ndarray] = field(default_factory=list)
    phantom: str = "vessels"


def load_training_data(path: str | os.PathLike, *, limit: int | None = None) -> TrainingData:
    """Read a dataset written by ``oatomo dataset`` into per-environment (x, target) pairs.

    ``x`` is the normalised linear image and ``target`` p0, each (N, 1, n, n) float32.
    ``limit`` keeps the first items of each environment.
    """
    import h5py

    from oatomo._atomic import check_input_file
    from oatomo.refine.legacy import normalise

    p = check_input_file(path, "dataset file")
    if limit is not None and not 1 <= limit <= MAX_COUNT:
        raise InputError(f"limit must be in 1..{MAX_COUNT}, got {limit}")
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise InputError("not an HDF5 file (or truncated)", p) from None
    with f:
        if f.attrs.get("oatomo_format") != "dataset":
            raise InputError("not an oatomo dataset (make one with 'oatomo dataset')", p)
        try:
            return _read_training_data(f, p, limit, normalise)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OSError) as exc:
            first = " ".join(str(exc).split())[:120]
            raise InputError(f"malformed dataset file ({type(exc).__name__}: {first})",
                             p) from None


def _read_training_data(f: Any, p: Path, limit: int | None, normalise: Any) -> TrainingData:
    """The body of :func:`load_training_data` on an open dataset file."""
    for name in ("inputs", "targets"):
        d = f[name]
        if d.dtype.kind != "f" or d.ndim != 3:
            raise InputError(f"{name} must be a float (M, n, n) array, got {d.dtype} "
                             f"{d.shape}", p)
        check_bytes(8.0 * d.size, f"reading {name} {d.shape}", p)
    if not bool(np.all(f["done"][...])):
        raise InputError("dataset is incomplete (resume or merge its shards first)", p)
    env = f["env"][...]
    inputs, targets, seeds = f["inputs"], f["targets"], f["item_seed"][...]
    names = json.loads(f.attrs["environments"])
    setups = json.loads(f.attrs["setups"])
    grid = Grid(int(f.attrs["grid_n"]), float(f.attrs["grid_fov"]))
    envs, item_seeds = [], []
    for e in range(len(names)):
        idx = np.flatnonzero(env == e)[:limit]
        x = normalise(inputs[idx[0]:idx[-1] + 1][idx - idx[0]])[:, None]
        t = np.asarray(targets[idx[0]:idx[-1] + 1][idx - idx[0]], np.float32)[:, None]
        envs.append((x, t))
        item_seeds.append(seeds[idx])
    if not envs or any(len(x) == 0 for x, _ in envs):
        raise InputError("dataset has an environment without items", p)
    method = str(f.attrs["method"])
    phantom = str(f.attrs.get("phantom", "vessels"))
    return TrainingData(envs, names, setups, grid, method, item_seeds, phantom)
