"""Build the hostile-input corpus: inputs a hostile or careless user can give.

Each case is a command line for ``oatomo.cli.main`` and the files it reads, in a
directory of its own. Every case must end with exit code 2 and one stderr line that names
the culprit (a file, or the option), with no traceback, no file created, changed or left
behind, and little memory. Run as a script to build the corpus into a directory and list
it::

    python tests/helpers/hostile_corpus.py /tmp/corpus
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

#: A small setup: 16 sensors, 256 samples, 32 x 32 pixels (fast to load and check).
SETUP = """name = "tiny"
description = "hostile-corpus base setup"

[array]
kind = "ring"
n_sensors = 16
radius = 0.006

[acquisition]
fs = 20e6
n_samples = 256
speed_of_sound = 1500.0

[grid]
n = 32
fov = 0.008

[perturbation]
jitter_std = 0.0

[noise]
relative_std = 0.0
"""

@dataclass
class Case:
    """One hostile input: ``argv`` for :func:`oatomo.cli.main`, run in ``directory``."""

    name: str
    kind: str  # segfault | overwrite | allocation | error | nan | escape | hang | traceback
    argv: list[str]
    needle: str  # must appear in the error line (the file or the option it is about)
    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # when set, must appear in the error line too


def _base_scan(path: Path) -> None:
    from oatomo import Acquisition, Grid, ring_array
    from oatomo.io import Scan, save_scan

    rng = np.random.default_rng(0)
    save_scan(path, Scan(sinogram=rng.standard_normal((16, 256)).astype(np.float32),
                         sensors=ring_array(16, 0.006), acquisition=Acquisition(20e6, 256),
                         p0=np.zeros((32, 32), np.float32), grid=Grid(32, 0.008)))


def _nan_model(path: Path) -> None:
    """A refiner whose scanner family holds the base scan, with NaN weights."""
    import dataclasses

    import torch

    from oatomo.learn import save_checkpoint
    from oatomo.learn.conv import ConvMultiDecoderIVAE, ConvVAEConfig
    from oatomo.scanners import CANONICAL_PITCH, FAMILY, FAMILY_KEY

    model = ConvMultiDecoderIVAE(ConvVAEConfig(in_channels=1, width=2, depth=0, latent_dim=2,
                                               n_envs=1), seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    family = dataclasses.replace(FAMILY, sensors=(16, 512), radius=(0.005, 0.05))
    save_checkpoint(path, model, train={FAMILY_KEY: {
        "kind": "multi-decoder", "family": family.to_dict(), "pitch": CANONICAL_PITCH,
        "inputs": ["ubp"], "env_names": ["tiny"]}})


def _edit_h5(path: Path, fn: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "a") as f:
        fn(f)


def _replace(f: h5py.File, name: str, data: object, **kw: object) -> None:
    del f[name]
    f.create_dataset(name, data=data, **kw)


def build(root: str | os.PathLike) -> list[Case]:
    """Write every case's files below ``root`` and return the cases."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = root / "_base"
    base.mkdir(exist_ok=True)
    scan0 = base / "scan.h5"
    if not scan0.exists():
        _base_scan(scan0)
    cases: list[Case] = []

    def case(name: str, kind: str, needle: str | None = None, *,
             env: dict[str, str] | None = None, reason: str = ""
             ) -> Callable[[Callable], None]:
        """Register a case; the decorated function gets the case directory and returns
        argv (file names relative to it are made absolute)."""
        def deco(fn: Callable[[Path], list[str]]) -> None:
            d = root / name
            d.mkdir(exist_ok=True)
            argv = fn(d)
            cases.append(Case(name, kind, argv, needle or "", d, env or {}, reason))
        return deco

    def scan_with(d: Path, fn: Callable[[h5py.File], None] | None = None,
                  name: str = "scan.h5") -> str:
        p = d / name
        shutil.copy(scan0, p)
        if fn is not None:
            _edit_h5(p, fn)
        return str(p)

    def setup_with(d: Path, old: str, new: str, name: str = "tiny.toml") -> str:
        text = SETUP.replace(old, new)
        assert text != SETUP or old == new, (old, new)
        (d / name).write_text(text)
        return str(d / name)

    # --- 1. values that crashed the Numba kernels (segfaults) --------------------------
    def scale_positions(factor: float) -> Callable[[h5py.File], None]:
        return lambda f: _replace(f, "sensors/positions", f["sensors/positions"][...] * factor)

    for method in ("mb-tikhonov", "das", "ubp"):
        @case(f"positions_1e40_{method}", "segfault", "scan.h5")
        def _(d, method=method):
            return ["reconstruct", scan_with(d, scale_positions(1e40)), "-o",
                    str(d / "x.h5"), "--method", method, "--iters", "2"]

    for key, value in (("t0", 1e300), ("t0", -1e300), ("fs", 1e300), ("fs", 1e-300),
                       ("speed_of_sound", 1e300), ("speed_of_sound", 1e-300),
                       ("fs", np.nan), ("t0", np.inf)):
        @case(f"acq_{key}_{value:g}", "segfault", "scan.h5")
        def _(d, key=key, value=value):
            return ["reconstruct", scan_with(d, lambda f: f["acquisition"].attrs.__setitem__(
                key, value)), "-o", str(d / "x.h5"), "--method", "das"]

    @case("positions_nan", "segfault", "scan.h5")
    def _(d):
        return ["reconstruct", scan_with(d, scale_positions(np.nan)), "-o", str(d / "x.h5")]

    @case("normals_nan", "nan", "scan.h5")
    def _(d):
        return ["reconstruct", scan_with(d, lambda f: _replace(
            f, "sensors/normals", np.full((16, 2), np.nan))), "-o", str(d / "x.h5")]

    @case("normals_huge", "nan", "scan.h5")
    def _(d):
        return ["reconstruct", scan_with(d, lambda f: _replace(
            f, "sensors/normals", np.full((16, 2), 1e300))), "-o", str(d / "x.h5")]

    for label, old, new in (
            ("jitter_1e300", "jitter_std = 0.0", "jitter_std = 1e300"),
            ("radial_1e300", "jitter_std = 0.0", "radial_std = 1e300"),
            ("offset_1e300", "jitter_std = 0.0", "offset = [1e300, 0.0]"),
            ("rotation_1e300", "jitter_std = 0.0", "rotation = 1e300"),
            ("angular_inf", "jitter_std = 0.0", "angular_std = inf"),
            ("offset_std_nan", "jitter_std = 0.0", "offset_std = nan"),
            ("radius_1e40", "radius = 0.006", "radius = 1e40"),
            ("fov_1e40", "fov = 0.008", "fov = 1e40"),
            ("t0_1e300", "speed_of_sound = 1500.0", "t0 = 1e300"),
            ("c_1e-300", "speed_of_sound = 1500.0", "speed_of_sound = 1e-300"),
            ("fs_1", "fs = 20e6", "fs = 1.0"),
            ("noise_1e300", "relative_std = 0.0", "relative_std = 1e300"),
            ("thickness_1e300", "[noise]", "[slab]\nthickness = 1e300\n[noise]")):
        @case(f"setup_{label}", "segfault", "tiny.toml")
        def _(d, old=old, new=new):
            return ["simulate", "--setup", setup_with(d, old, new), "--phantom", "disk",
                    "-o", str(d / "s.h5")]

    # --- 2. outputs that would overwrite inputs or each other --------------------------
    @case("simulate_over_setup", "overwrite", "tiny.toml")
    def _(d):
        s = setup_with(d, "", "")
        return ["simulate", "--setup", s, "--phantom", "disk", "-o", s, "--force"]

    @case("simulate_over_phantom", "overwrite", "p.npy")
    def _(d):
        np.save(d / "p.npy", np.ones((8, 8)))
        return ["simulate", "--setup", setup_with(d, "", ""), "--phantom", str(d / "p.npy"),
                "-o", str(d / "p.npy"), "--force"]

    @case("train_over_data", "overwrite", "ds")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        (d / "ds" / "manifest.json").write_text("{}")
        return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "ds"), "--force"]

    @case("train_sidecar_is_data", "overwrite", "d.json")
    def _(d):
        (d / "d.json").write_text("{}")
        return ["refiner", "train", "--data", str(d / "d.json"), "-o", str(d / "d.pt")]

    @case("train_output_is_sidecar", "overwrite", "m.json")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.json")]

    @case("train_sidecar_exists", "overwrite", "m.json")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        (d / "m.json").write_text("{}")
        return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt")]

    @case("reconstruct_output_png", "overwrite", "img.png")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "img.png")]

    @case("reconstruct_png_is_output", "overwrite", "x.h5")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--png", str(d / "x.h5")]

    @case("reconstruct_png_exists", "overwrite", "x.png")
    def _(d):
        (d / "x.png").write_bytes(b"an old figure")
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5")]

    @case("reconstruct_output_exists", "overwrite", "x.h5")
    def _(d):
        (d / "x.h5").write_bytes(b"an old image")
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--png", "none"]

    @case("reconstruct_over_symlink", "overwrite", "link.h5")
    def _(d):
        s = scan_with(d)
        (d / "link.h5").symlink_to(s)
        return ["reconstruct", s, "-o", str(d / "link.h5"), "--force", "--png", "none"]

    @case("reconstruct_over_hardlink", "overwrite", "hard.h5")
    def _(d):
        s = scan_with(d)
        os.link(s, d / "hard.h5")
        return ["reconstruct", s, "-o", str(d / "hard.h5"), "--force", "--png", "none"]

    @case("reconstruct_over_dotdot", "overwrite", "scan.h5")
    def _(d):
        s = scan_with(d)
        (d / "sub").mkdir(exist_ok=True)
        return ["reconstruct", s, "-o", str(d / "sub" / ".." / "scan.h5"), "--force"]

    @case("reconstruct_png_in_missing_dir", "overwrite", "no/such")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--png",
                str(d / "no/such/x.png")]

    @case("evaluate_outputs_exist", "overwrite", "evaluation.md")
    def _(d):
        (d / "m.pt").write_bytes(b"model")
        (d / "ev").mkdir(exist_ok=True)
        (d / "out").mkdir(exist_ok=True)
        (d / "out" / "evaluation.md").write_text("old results")
        return ["refiner", "evaluate", "--model", str(d / "m.pt"), "--data", str(d / "ev"),
                "--out", str(d / "out")]

    for force in ((), ("--force",)):
        @case(f"evaluate_over_model_sidecar{'_force' if force else ''}", "overwrite",
              "evaluation.json")
        def _(d, force=force):
            # the model's own sidecar is evaluation.json in the output directory
            (d / "evaluation.pt").write_bytes(b"model")
            (d / "evaluation.json").write_text('{"train": {}}')
            (d / "ev").mkdir(exist_ok=True)
            return ["refiner", "evaluate", "--model", str(d / "evaluation.pt"), "--data",
                    str(d / "ev"), "--out", str(d), *force]

    @case("evaluate_out_is_file", "overwrite", "out.txt")
    def _(d):
        (d / "m.pt").write_bytes(b"model")
        (d / "ev").mkdir(exist_ok=True)
        (d / "out.txt").write_text("a file")
        return ["refiner", "evaluate", "--model", str(d / "m.pt"), "--data", str(d / "ev"),
                "--out", str(d / "out.txt")]

    @case("cmnist_results_exist", "overwrite", "table.md")
    def _(d):
        (d / "out").mkdir(exist_ok=True)
        (d / "out" / "table.md").write_text("an earlier run's table")
        return ["cmnist", "--quick", "--out", str(d / "out")]

    @case("cmnist_out_is_file", "overwrite", "out.txt")
    def _(d):
        (d / "out.txt").write_text("a file")
        return ["cmnist", "--quick", "--out", str(d / "out.txt")]

    @case("autofocus_json_is_scan", "overwrite", "scan.h5")
    def _(d):
        s = scan_with(d)
        return ["autofocus", s, "--json", s, "--force"]

    @case("calibrate_over_scan", "overwrite", "scan.h5")
    def _(d):
        s = scan_with(d)
        return ["calibrate", s, "-o", s, "--force"]

    @case("export_over_checkpoint", "overwrite", "m.pt")
    def _(d):
        (d / "m.pt").write_bytes(b"model")
        return ["refiner", "export", str(d / "m.pt"), "-o", str(d / "m.pt"), "--force"]

    @case("family_data_into_foreign_directory", "overwrite", "mine", reason="not empty")
    def _(d):
        (d / "mine").mkdir(exist_ok=True)
        (d / "mine" / "notes.txt").write_text("the user's own file")
        return ["refiner", "data", "-o", str(d / "mine"), "--count", "1", "--size", "16"]

    @case("family_data_output_is_file", "overwrite", "data.npz", reason="not a directory")
    def _(d):
        (d / "data.npz").write_bytes(b"not a dataset directory")
        return ["refiner", "data", "-o", str(d / "data.npz"), "--count", "1", "--size", "16"]

    @case("family_data_corrupt_manifest", "error", "manifest.json", reason="unreadable")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        (d / "ds" / "manifest.json").write_text("{not json")
        return ["refiner", "data", "-o", str(d / "ds"), "--count", "1", "--size", "16"]

    @case("family_evalset_other_manifest", "overwrite", "manifest.json",
          reason="another job")
    def _(d):
        (d / "ev").mkdir(exist_ok=True)
        (d / "ev" / "manifest.json").write_text(json.dumps({"format": "oatomo-family-evalset",
                                                            "count": 99}))
        return ["refiner", "eval-set", "-o", str(d / "ev"), "--count", "1"]

    @case("simulate_output_is_directory", "overwrite", "outdir")
    def _(d):
        (d / "outdir").mkdir(exist_ok=True)
        return ["simulate", "--setup", setup_with(d, "", ""), "-o", str(d / "outdir"),
                "--force"]

    # --- 3. declared sizes beyond the memory limit ------------------------------------
    @case("declared_huge_sinogram", "allocation", "scan.h5", reason="OATOMO_MAX_BYTES")
    def _(d):
        def huge(f):  # one frame of 65536 sensors x 2^20 samples: 256 GiB
            n, t = 1 << 16, 1 << 20
            del f["sinogram"], f["sensors/positions"], f["sensors/normals"]
            f.create_dataset("sinogram", shape=(n, t), dtype="f4", chunks=(1, 4096),
                             compression="gzip")
            th = np.arange(n) * 2 * np.pi / n
            f["sensors/positions"] = 0.02 * np.stack([np.cos(th), np.sin(th)], 1)
            f["acquisition"].attrs["n_samples"] = t
        return ["reconstruct", scan_with(d, huge), "-o", str(d / "x.h5")]

    @case("declared_10M_frames", "allocation", "scan.h5", reason="OATOMO_MAX_BYTES")
    def _(d):
        def frames(f):  # frame by frame, but the 10^7 images alone are over the limit
            del f["sinogram"]
            f.create_dataset("sinogram", shape=(10**7, 16, 256), dtype="f4",
                             chunks=(1, 16, 256), compression="gzip")
        return ["reconstruct", scan_with(d, frames), "-o", str(d / "x.h5")]

    @case("checkpoint_tensors_over_limit", "allocation", "big.pt",
          env={"OATOMO_MAX_BYTES": "64K"}, reason="OATOMO_MAX_BYTES")
    def _(d):  # the archive's members (tensor storages) unpack to 1 MiB, over the limit
        import zipfile

        with zipfile.ZipFile(d / "big.pt", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("big/data.pkl", b"\x80\x02}q\x00.")
            z.writestr("big/data/0", bytes(1 << 20))
        # UBP: a reconstruction small enough for the limit, so the model is what fails
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--method", "ubp",
                "--refine", "--model", str(d / "big.pt")]

    @case("weights_over_limit", "allocation", "big.npz", env={"OATOMO_MAX_BYTES": "64K"},
          reason="OATOMO_MAX_BYTES")
    def _(d):  # a weights archive whose deflated 1 MiB member is over the limit
        import io
        import zipfile

        with zipfile.ZipFile(d / "big.npz", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("__meta__.npy", b"")
            buf = io.BytesIO()
            np.save(buf, np.zeros(1 << 18, np.float32))
            z.writestr("w.npy", buf.getvalue())
        # UBP: a reconstruction small enough for the limit, so the model is what fails
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--method", "ubp",
                "--refine", "--model", str(d / "big.npz")]

    @case("weights_declared_huge", "allocation", "lie.npz", reason="OATOMO_MAX_BYTES")
    def _(d):  # a .npy header declaring 10^11 floats over 16 bytes of data
        import io
        import zipfile

        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (10**11,)})
        meta = io.BytesIO()
        np.save(meta, np.frombuffer(b"{}", np.uint8))
        with zipfile.ZipFile(d / "lie.npz", "w") as z:
            z.writestr("__meta__.npy", meta.getvalue())
            z.writestr("w.npy", header.getvalue() + bytes(16))
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "lie.npz")]

    @case("memory_limit_env", "allocation", "scan.h5", env={"OATOMO_MAX_BYTES": "4K"},
          reason="OATOMO_MAX_BYTES")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5")]

    for limit in ("inf", "nan", "1e400G"):
        @case(f"memory_limit_env_{limit}", "allocation", "OATOMO_MAX_BYTES",
              env={"OATOMO_MAX_BYTES": limit}, reason="must be a number of bytes")
        def _(d):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5")]

    def no_frames(f: h5py.File) -> None:
        attrs = dict(f["sinogram"].attrs)
        _replace(f, "sinogram", np.zeros((0,) + f["sinogram"].shape, np.float32))
        f["sinogram"].attrs.update(attrs)

    for command in ("reconstruct", "info", "calibrate"):
        @case(f"zero_frames_{command}", "traceback", "scan.h5", reason="no frames")
        def _(d, command=command):
            args = [command, scan_with(d, no_frames)]
            return args + (["-o", str(d / "x.h5")] if command != "info" else [])

    @case("dataset_count_1e9", "allocation", "--count")
    def _(d):
        return ["refiner", "data", "-o", str(d / "ds"), "--count", "1000000000"]

    @case("dataset_size_1e9", "allocation", "--size")
    def _(d):
        return ["refiner", "data", "-o", str(d / "ds"), "--size", "1000000000"]

    @case("eval_set_count_1e20", "allocation", "--count")
    def _(d):
        return ["refiner", "eval-set", "-o", str(d / "ev"), "--count",
                "100000000000000000000"]

    @case("png_bomb_phantom", "allocation", "bomb.png", reason="OATOMO_MAX_BYTES")
    def _(d):
        head = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR"
        head += (200000).to_bytes(4, "big") * 2 + bytes([8, 6, 0, 0, 0]) + b"\0" * 4
        (d / "bomb.png").write_bytes(head + b"\0" * 64)
        return ["simulate", "--setup", setup_with(d, "", ""), "--phantom",
                str(d / "bomb.png"), "-o", str(d / "s.h5")]

    @case("npy_declared_huge", "allocation", "big.npy", reason="OATOMO_MAX_BYTES")
    def _(d):
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
        with open(d / "big.npy", "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
        return ["simulate", "--setup", setup_with(d, "", ""), "--phantom",
                str(d / "big.npy"), "-o", str(d / "s.h5")]

    @case("idx_gzip_bomb", "allocation", "train-images-idx3-ubyte.gz",
          env={"OATOMO_MAX_BYTES": "1M"}, reason="OATOMO_MAX_BYTES")
    def _(d):
        (d / "mnist").mkdir(exist_ok=True)
        n = 6000  # 6000 x 28 x 28 bytes: 4.5 MiB decompressed, a few KiB on disk
        for name, head, size in (
                ("train-images-idx3-ubyte.gz", bytes([0, 0, 8, 3]) + b"".join(
                    v.to_bytes(4, "big") for v in (n, 28, 28)), n * 784),
                ("train-labels-idx1-ubyte.gz", bytes([0, 0, 8, 1]) + n.to_bytes(4, "big"),
                 n)):
            with gzip.open(d / "mnist" / name, "wb", compresslevel=1) as f:
                f.write(head + b"\0" * size)
        return ["cmnist", "--mnist-dir", str(d / "mnist"), "--out", str(d / "o"), "-q"]

    for old, new in (("n_sensors = 16", "n_sensors = 1000000000"),
                     ("n_samples = 256", "n_samples = 100000000")):
        @case(f"setup_{new.replace(' ', '')}", "allocation", "tiny.toml")
        def _(d, old=old, new=new):
            return ["simulate", "--setup", setup_with(d, old, new), "-o", str(d / "s.h5")]

    @case("setup_record_over_limit", "allocation", "tiny.toml",
          env={"OATOMO_MAX_BYTES": "8K"}, reason="OATOMO_MAX_BYTES")
    def _(d):
        return ["simulate", "--setup", setup_with(d, "", ""), "-o", str(d / "s.h5")]

    for opt, value in (("--samples", "1000000000"), ("--iters", "0"), ("--fov", "1e300"),
                       ("--lam", "nan")):
        @case(f"reconstruct_{opt.strip('-')}_{value}", "allocation", opt)
        def _(d, opt=opt, value=value):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), opt, value]

    @case("ipasc_huge_sampling_rate_dataset", "allocation", "ipasc.h5")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = np.zeros((1, 64, 1, 1), np.float32)
            f.create_dataset("meta_data/ad_sampling_rate", shape=(10**9,), dtype="f8",
                             chunks=(4096,))
            f["meta_data_device/detectors/0000000000/detector_position"] = np.zeros(3)
        return ["info", str(d / "ipasc.h5")]

    @case("autofocus_steps_1e8", "allocation", "--steps")
    def _(d):
        return ["autofocus", scan_with(d), "--steps", "100000000"]

    # --- 4. everything else that raised a traceback ------------------------------------
    for label, data in (("string", np.array([["a"] * 256] * 16, dtype="S1")),
                        ("compound", np.zeros((16, 256), dtype=[("a", "f4"), ("b", "i4")])),
                        ("complex", np.zeros((16, 256), np.complex64)),
                        ("bool", np.zeros((16, 256), bool)),
                        ("scalar", np.float32(1.0))):
        @case(f"sinogram_{label}", "error", "scan.h5")
        def _(d, data=data):
            return ["reconstruct", scan_with(d, lambda f: _replace(f, "sinogram", data)),
                    "-o", str(d / "x.h5")]

    @case("sinogram_vlen", "error", "scan.h5")
    def _(d):
        def vlen(f):
            del f["sinogram"]
            ds = f.create_dataset("sinogram", (16,), dtype=h5py.vlen_dtype(np.float32))
            for i in range(16):
                ds[i] = np.zeros(256, np.float32)
        return ["info", scan_with(d, vlen)]

    @case("sinogram_is_group", "error", "scan.h5")
    def _(d):
        def group(f):
            del f["sinogram"]
            f.create_group("sinogram")
        return ["info", scan_with(d, group)]

    @case("positions_is_group", "error", "scan.h5")
    def _(d):
        def group(f):
            del f["sensors/positions"]
            f.create_group("sensors/positions")
        return ["info", scan_with(d, group)]

    for key, value in (("n_samples", "256"), ("n_samples", 256.5), ("fs", "fast")):
        @case(f"attr_{key}_{value}", "error", "scan.h5")
        def _(d, key=key, value=value):
            return ["info", scan_with(d, lambda f: f["acquisition"].attrs.__setitem__(
                key, value))]

    for key, value in (("seed", "zero"), ("metadata", "{not json"), ("metadata", "[1, 2]"),
                       ("format_version", "one"), ("setup_name", 5)):
        @case(f"root_{key}_{str(value)[:5].strip('{[')}", "error", "scan.h5")
        def _(d, key=key, value=value):
            return ["info", scan_with(d, lambda f: f.attrs.__setitem__(key, value))]

    @case("ipasc_detector_dataset", "error", "ipasc.h5")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = np.zeros((4, 64, 1, 1), np.float32)
            f["meta_data/ad_sampling_rate"] = 20e6
            f["meta_data_device/detectors/0000000000"] = np.zeros(3)
        return ["info", str(d / "ipasc.h5")]

    @case("warning_then_error", "error", "ipasc.h5", reason="NaN")
    def _(d):  # a 3-D IPASC file with a NaN sample: the error is the only line
        with h5py.File(d / "ipasc.h5", "w") as f:
            data = np.zeros((4, 64, 1, 1), np.float32)
            data[1, 5] = np.nan
            f["binary_time_series_data"] = data
            f["meta_data/ad_sampling_rate"] = 20e6
            for k in range(4):
                th = k * np.pi / 2
                f[f"meta_data_device/detectors/{k:010d}/detector_position"] = \
                    np.array([0.01 * np.cos(th), 0.01 * np.sin(th), 0.002])
        return ["reconstruct", str(d / "ipasc.h5"), "-o", str(d / "x.h5"), "--n", "16"]

    @case("ipasc_position_string", "error", "ipasc.h5")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = np.zeros((1, 64, 1, 1), np.float32)
            f["meta_data/ad_sampling_rate"] = 20e6
            f["meta_data_device/detectors/0000000000/detector_position"] = "here"
        return ["info", str(d / "ipasc.h5")]

    @case("text_file_as_model", "error", "model.pt")
    def _(d):
        (d / "model.pt").write_text("this is not a checkpoint\n")
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "model.pt")]

    @case("json_as_model", "error", "model.pt")
    def _(d):
        (d / "model.pt").write_text(json.dumps({"format": "oatomo-model"}))
        (d / "model.json").write_text("{broken")
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "model.pt")]

    def _weights(path: Path, meta: dict, members: dict) -> None:
        """A weights archive (.npz) whose members are written as given (deflated)."""
        import io
        import zipfile

        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, arr in {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8),
                              **members}.items():
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=True)
                z.writestr(f"{name}.npy", buf.getvalue())

    record = {"format": "oatomo-model", "version": 1, "model_class": "ConvBetaVAE",
              "config": {}}

    @case("weights_object_array", "error", "evil.npz", reason="Python objects")
    def _(d):  # loading an object array would unpickle it
        _weights(d / "evil.npz", record, {"w": np.array([print], dtype=object)})
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "evil.npz")]

    @case("weights_newer_version", "error", "new.npz", reason="not supported")
    def _(d):
        _weights(d / "new.npz", {**record, "version": 99}, {})
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "new.npz")]

    for label, old, new in (("positions_strings", 'kind = "ring"',
                             'kind = "positions"\npositions = [["a", "b"], ["c", "d"]]'),
                            ("offset_strings", "jitter_std = 0.0", 'offset = ["x", "y"]'),
                            ("offset_three", "jitter_std = 0.0", "offset = [0.0, 0.0, 0.0]"),
                            ("band_reversed", "[noise]", "[band]\nlow = 5e6\nhigh = 1e6\n"
                             "[noise]"),
                            ("n_samples_string", "n_samples = 256", 'n_samples = "256"'),
                            ("grid_bool", "n = 32", "n = true")):
        @case(f"setup_{label}", "error", "tiny.toml")
        def _(d, old=old, new=new):
            return ["simulate", "--setup", setup_with(d, old, new), "-o", str(d / "s.h5")]

    @case("binary_dataset_manifest", "error", "manifest.json", reason="unreadable")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        (d / "ds" / "manifest.json").write_bytes(bytes(range(256)) * 4)
        return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt")]

    @case("file_as_dataset_directory", "error", "ds.txt", reason="no manifest.json")
    def _(d):
        (d / "ds.txt").write_text("a file")
        return ["refiner", "train", "--data", str(d / "ds.txt"), "-o", str(d / "m.pt")]

    @case("directory_setup", "error", "tiny.toml")
    def _(d):
        (d / "tiny.toml").mkdir(exist_ok=True)
        return ["simulate", "--setup", str(d / "tiny.toml"), "-o", str(d / "s.h5")]

    @case("directory_scan", "error", "scan.h5")
    def _(d):
        (d / "scan.h5").mkdir(exist_ok=True)
        return ["info", str(d / "scan.h5")]

    @case("fifo_scan", "error", "fifo.h5")
    def _(d):
        if not (d / "fifo.h5").exists():
            os.mkfifo(d / "fifo.h5")
        return ["info", str(d / "fifo.h5")]

    @case("fifo_setup", "error", "fifo.toml")
    def _(d):
        if not (d / "fifo.toml").exists():
            os.mkfifo(d / "fifo.toml")
        return ["simulate", "--setup", str(d / "fifo.toml"), "-o", str(d / "s.h5")]

    @case("device_as_scan", "error", "null")
    def _(d):
        return ["info", "/dev/null"]

    @case("unknown_phantom_no_partial", "error", "unicorn")
    def _(d):
        return ["simulate", "--setup", setup_with(d, "", ""), "--phantom", "unicorn",
                "-o", str(d / "s.h5")]

    for opt, value in (("--batch-size", "0"), ("--width", "0"), ("--inputs", "tv")):
        @case(f"train_{opt.strip('-')}_{value}", "error", opt)
        def _(d, opt=opt, value=value):
            (d / "ds").mkdir(exist_ok=True)
            return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt"), opt,
                    value]

    for step, opt, value in (("data", "--count", "0"), ("data", "--size", "18"),
                             ("eval-set", "--count", "-1"), ("eval-set", "--tv-iter", "0"),
                             ("train", "--lr", "1e30"), ("train", "--epochs", "0"),
                             ("train", "--snapshot-every", "-5"),
                             ("evaluate", "--samples", "0")):
        @case(f"refiner_{step}_{opt.strip('-')}_{value}", "error", opt)
        def _(d, step=step, opt=opt, value=value):
            argv = {"data": ["-o", str(d / "ds")], "eval-set": ["-o", str(d / "ev")],
                    "train": ["--data", str(d / "ds"), "-o", str(d / "m.pt")],
                    "evaluate": ["--model", str(d / "m.pt"), "--data", str(d / "ev"),
                                 "--out", str(d / "o")]}[step]
            return ["refiner", step, *argv, opt, value]

    @case("train_cuda_without_cuda", "error", "cuda")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt"),
                "--device", "cuda:99"]

    @case("training_data_is_scan", "error", "d.h5", reason="no manifest.json")
    def _(d):
        scan_with(d, name="d.h5")
        return ["refiner", "train", "--data", str(d / "d.h5"), "-o", str(d / "m.pt")]

    # --- 5. values that made NaN images ------------------------------------------------
    @case("model_nan_weights", "nan", "nan.pt", reason="not finite")
    def _(d):
        _nan_model(d / "nan.pt")
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "nan.pt"), "--samples", "0"]

    @case("model_sidecar_malformed_family", "error", "m.pt", reason="malformed")
    def _(d):
        (d / "m.pt").write_bytes(b"model")
        (d / "m.json").write_text(json.dumps({"train": {"oatomo_family_refiner": {
            "family": 1}}}))
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "m.pt")]

    @case("sinogram_near_float32_max", "nan", "scan.h5", reason="exceed")
    def _(d):
        return ["reconstruct", scan_with(d, lambda f: _replace(
            f, "sinogram", np.full((16, 256), 3e38, np.float32))), "-o", str(d / "x.h5")]

    @case("sinogram_float64_overflow", "nan", "scan.h5")
    def _(d):
        return ["reconstruct", scan_with(d, lambda f: _replace(
            f, "sinogram", np.full((16, 256), 1e300))), "-o", str(d / "x.h5")]

    # --- 6. reads steered outside the named file (HDF5 links, FIFOs, devices) -----------
    def fifo(d: Path, name: str = "fifo") -> Path:
        if not (d / name).exists():
            os.mkfifo(d / name)
        return d / name

    def secret(d: Path) -> Path:
        """A scan the user did not name (a copy of the base scan)."""
        if not (d / "secret.h5").exists():
            shutil.copy(scan0, d / "secret.h5")
        return d / "secret.h5"

    def relink(name: str, link: Callable[[Path], object]) -> Callable[[Path], str]:
        def make(d: Path) -> str:
            def edit(f: h5py.File) -> None:
                del f[name]
                f[name] = link(d)
            return scan_with(d, edit)
        return make

    escapes = {
        "external_link_fifo": relink("sinogram", lambda d: h5py.ExternalLink(
            str(fifo(d)), "/sinogram")),
        "external_link_other_scan": relink("sinogram", lambda d: h5py.ExternalLink(
            str(secret(d)), "/sinogram")),
        "external_link_relative": relink("sinogram", lambda d: (secret(d), h5py.ExternalLink(
            "secret.h5", "/sinogram"))[1]),
        "external_link_group": relink("sensors", lambda d: h5py.ExternalLink(
            str(secret(d)), "/sensors")),
        "external_link_dev_zero": relink("sinogram", lambda d: h5py.ExternalLink(
            "/dev/zero", "/sinogram")),
        "soft_link_loop": relink("sinogram", lambda d: h5py.SoftLink("/sinogram")),
        "soft_link_missing": relink("sinogram", lambda d: h5py.SoftLink("/nowhere")),
    }

    def soft_pair(d: Path) -> str:
        def edit(f: h5py.File) -> None:
            del f["sinogram"]
            f["sinogram"] = h5py.SoftLink("/other")
            f["other"] = h5py.SoftLink("/sinogram")
        return scan_with(d, edit)

    def soft_through_external(d: Path) -> str:
        def edit(f: h5py.File) -> None:
            del f["sinogram"]
            f["away"] = h5py.ExternalLink(str(secret(d)), "/")
            f["sinogram"] = h5py.SoftLink("/away/sinogram")
        return scan_with(d, edit)

    def external_in_metadata(d: Path) -> str:  # never read by a format, still refused
        return scan_with(d, lambda f: f.__setitem__("notes", h5py.ExternalLink(
            str(fifo(d)), "/x")))

    def vds(source: Callable[[Path], tuple[str, str]]) -> Callable[[Path], str]:
        def make(d: Path) -> str:
            def edit(f: h5py.File) -> None:
                del f["sinogram"]
                layout = h5py.VirtualLayout(shape=(16, 256), dtype="f4")
                file, name = source(d)
                layout[:] = h5py.VirtualSource(file, name, shape=(16, 256))
                f.create_virtual_dataset("sinogram", layout, fillvalue=0)
            return scan_with(d, edit)
        return make

    def external_storage(target: Callable[[Path], str]) -> Callable[[Path], str]:
        def make(d: Path) -> str:
            def edit(f: h5py.File) -> None:
                del f["sinogram"]
                f.create_dataset("sinogram", shape=(16, 256), dtype="f4",
                                 external=[(target(d), 0, 16 * 256 * 4)])
            return scan_with(d, edit)
        return make

    def hardlink_cycle(d: Path) -> str:  # legal HDF5: the walk must still end
        def edit(f: h5py.File) -> None:
            f["sensors/up"] = f["/"]
            f["sinogram_alias"] = f["sinogram"]
            f["acquisition"].attrs["fs"] = -1.0
        return scan_with(d, edit)

    escapes.update({
        "soft_link_pair_loop": soft_pair, "soft_link_through_external": soft_through_external,
        "external_link_unused_group": external_in_metadata,
        "vds_self_loop": vds(lambda d: (".", "sinogram")),
        "vds_other_file": vds(lambda d: (str(secret(d)), "sinogram")),
        "vds_fifo": vds(lambda d: (str(fifo(d)), "sinogram")),
        "external_storage_fifo": external_storage(lambda d: str(fifo(d))),
        "external_storage_dev_zero": external_storage(lambda d: "/dev/zero"),
        "external_storage_other_file": external_storage(lambda d: str(secret(d))),
        "hardlink_cycle_bad_fs": hardlink_cycle,
    })
    for label, make in escapes.items():
        for command in ("info", "reconstruct", "calibrate"):
            if command == "calibrate" and label not in ("external_link_fifo", "vds_self_loop",
                                                        "external_storage_fifo"):
                continue
            @case(f"{label}_{command}", "escape", "scan.h5")
            def _(d, make=make, command=command):
                src = make(d)
                tail = {"info": [], "reconstruct": ["-o", str(d / "x.h5"), "--png", "none"],
                        "calibrate": ["-o", str(d / "c.h5")]}[command]
                return [command, src, *tail]

    @case("ipasc_external_link_fifo", "escape", "ipasc.h5")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = h5py.ExternalLink(str(fifo(d)), "/x")
            f["meta_data/ad_sampling_rate"] = 20e6
        return ["info", str(d / "ipasc.h5")]

    @case("ipasc_vds_self_loop", "escape", "ipasc.h5")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            layout = h5py.VirtualLayout(shape=(4, 64, 1, 1), dtype="f4")
            layout[:] = h5py.VirtualSource(".", "binary_time_series_data", shape=(4, 64, 1, 1))
            f.create_virtual_dataset("binary_time_series_data", layout, fillvalue=0)
            f["meta_data/ad_sampling_rate"] = 20e6
        return ["reconstruct", str(d / "ipasc.h5"), "-o", str(d / "x.h5")]

    @case("patato_external_raw_data", "escape", "patato.h5")
    def _(d):
        with h5py.File(d / "patato.h5", "w") as f:
            f.attrs["fs"] = 20e6
            f.attrs["speedofsound"] = 1500.0
            f.create_dataset("raw_data", shape=(1, 1, 16, 256), dtype="f4",
                             external=[(str(fifo(d)), 0, 16 * 256 * 4)])
            f["GEOMETRY"] = np.zeros((16, 3))
        return ["info", str(d / "patato.h5")]

    @case("image_file_external_link", "escape", "img.h5")
    def _(d):
        with h5py.File(d / "img.h5", "w") as f:
            f.attrs["oatomo_format"] = "image"
            f["images"] = h5py.ExternalLink(str(fifo(d)), "/images")
        return ["info", str(d / "img.h5")]

    # paths that name FIFOs or devices, directly or through symbolic links
    def symlink(d: Path, name: str, target: str | Path) -> str:
        if not (d / name).is_symlink():
            (d / name).symlink_to(target)
        return str(d / name)

    for label, target in (("fifo", None), ("dev_zero", "/dev/zero"),
                          ("dev_null", "/dev/null")):
        @case(f"symlink_scan_to_{label}", "escape", "link.h5")
        def _(d, target=target):
            return ["info", symlink(d, "link.h5", target or fifo(d))]

        @case(f"symlink_setup_to_{label}", "escape", "link.toml")
        def _(d, target=target):
            return ["simulate", "--setup", symlink(d, "link.toml", target or fifo(d)),
                    "-o", str(d / "s.h5")]

        @case(f"symlink_calibration_to_{label}", "escape", "cal.json")
        def _(d, target=target):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--calibration",
                    symlink(d, "cal.json", target or fifo(d))]

    @case("fifo_calibration", "escape", "cal.json")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--calibration",
                str(fifo(d, "cal.json"))]

    @case("fifo_preset", "escape", "p.toml")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--preset",
                str(fifo(d, "p.toml"))]

    @case("fifo_model", "escape", "m.pt")
    def _(d):
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(fifo(d, "m.pt"))]

    @case("fifo_model_sidecar", "escape", "m.pt")  # the FIFO sidecar is never opened
    def _(d):
        (d / "m.pt").write_bytes(b"model")
        fifo(d, "m.json")
        return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--refine", "--model",
                str(d / "m.pt")]

    @case("fifo_phantom", "escape", "p.npy")
    def _(d):
        return ["simulate", "--setup", setup_with(d, "", ""), "--phantom",
                str(fifo(d, "p.npy")), "-o", str(d / "s.h5")]

    @case("fifo_dataset_manifest", "escape", "manifest.json")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        fifo(d / "ds", "manifest.json")
        return ["refiner", "data", "-o", str(d / "ds"), "--count", "1", "--size", "16"]

    @case("fifo_training_manifest", "escape", "manifest.json")
    def _(d):
        (d / "ds").mkdir(exist_ok=True)
        fifo(d / "ds", "manifest.json")
        return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt")]

    # --- 7. work sized by a user's value, refused before it starts (no hang) ------------
    for count, envs in (("10000000", []), ("10000000", ["--environments", "arc/none"]),
                        ("1000000", [])):
        @case(f"refiner_data_count_{count}_{len(envs)}env_64M", "hang", "ds",
              env={"OATOMO_MAX_BYTES": "64M"}, reason="OATOMO_MAX_BYTES")
        def _(d, count=count, envs=envs):
            return ["refiner", "data", "-o", str(d / "ds"), "--count", count, *envs]

    for samples in ("10000000", "1025", "-1"):
        @case(f"refiner_evaluate_samples_{samples}", "hang", "--samples")
        def _(d, samples=samples):
            (d / "m.pt").write_bytes(b"model")
            (d / "ev").mkdir(exist_ok=True)
            return ["refiner", "evaluate", "--model", str(d / "m.pt"), "--data", str(d / "ev"),
                    "--out", str(d / "out"), "--samples", samples]

    # --- 8. values that raised tracebacks -----------------------------------------------
    for seed in ("-1", "18446744073709551616", "100000000000000000000000"):
        @case(f"simulate_seed_{seed[:12]}", "traceback", "--seed")
        def _(d, seed=seed):
            return ["simulate", "--setup", setup_with(d, "", ""), "-o", str(d / "s.h5"),
                    "--seed", seed]

        @case(f"refiner_data_seed_{seed[:12]}", "traceback", "--seed")
        def _(d, seed=seed):
            return ["refiner", "data", "-o", str(d / "ds"), "--count", "1", "--size", "16",
                    "--seed", seed, "--environments", "arc/none"]

        @case(f"refiner_eval_set_seed_{seed[:12]}", "traceback", "--seed")
        def _(d, seed=seed):
            return ["refiner", "eval-set", "-o", str(d / "ev"), "--count", "1", "--seed", seed]

    deep_toml = {"array": "x = " + "[" * 5000 + "]" * 5000,
                 "inline": "x = " + "{a = " * 3000 + "1" + "}" * 3000,
                 "dotted": "[" + ".".join(["a"] * 3000) + "]\nb = 1"}
    for label, body in deep_toml.items():
        @case(f"setup_deep_toml_{label}", "traceback", "tiny.toml", reason="nested")
        def _(d, body=body):
            (d / "tiny.toml").write_text(body + "\n" + SETUP)
            return ["simulate", "--setup", str(d / "tiny.toml"), "-o", str(d / "s.h5")]

        @case(f"preset_deep_toml_{label}", "traceback", "p.toml", reason="nested")
        def _(d, body=body):
            (d / "p.toml").write_text(body + "\n")
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--preset",
                    str(d / "p.toml")]

    deep_json = {"list": "[" * 100000 + "]" * 100000,
                 "object": '{"a": ' * 50000 + "1" + "}" * 50000}
    for label, body in deep_json.items():
        @case(f"calibration_deep_json_{label}", "traceback", "cal.json", reason="nested")
        def _(d, body=body):
            (d / "cal.json").write_text(body)
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--calibration",
                    str(d / "cal.json")]

        @case(f"scan_metadata_deep_json_{label}", "traceback", "scan.h5", reason="nested")
        def _(d, body=body):
            return ["info", scan_with(d, lambda f: f.attrs.__setitem__("metadata", body))]

        @case(f"dataset_manifest_deep_json_{label}", "traceback", "manifest.json",
              reason="nested")
        def _(d, body=body):
            (d / "ds").mkdir(exist_ok=True)
            (d / "ds" / "manifest.json").write_text(body)
            return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt")]

    for label, body in (("huge_int", '{"speed_of_sound": 1' + "0" * 400 + "}"),
                        ("float_overflow", '{"speed_of_sound": 1e400}'),
                        ("nan_literal", '{"t0": NaN}'),
                        ("string_number", '{"speed_of_sound": "1500"}')):
        @case(f"calibration_{label}", "traceback", "cal.json")
        def _(d, body=body):
            (d / "cal.json").write_text(body)
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--calibration",
                    str(d / "cal.json")]

    # values read from a file are reported with the file and the key that held them
    for label, body in (("speed_1e300", '{"speed_of_sound": 1e300}'),
                        ("speed_tiny", '{"speed_of_sound": 1e-300}'),
                        ("t0_huge", '{"t0": 5}'), ("t0_neg_huge", '{"t0": -1e300}')):
        @case(f"calibration_range_{label}", "error", "cal.json", reason="calibration key")
        def _(d, body=body):
            (d / "cal.json").write_text(body)
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--calibration",
                    str(d / "cal.json")]

    for key, value in (("speed_of_sound", "1e300"), ("speed_of_sound", "0.0"),
                       ("n", "0"), ("n", "1000000"), ("fov", "1e300"), ("fov", "-1.0"),
                       ("iters", "0"), ("lam", "-1.0"), ("lam", "1e300"),
                       # the command line's ranges: a tiny lam, more iterations than allowed
                       ("lam", "1e-300"), ("iters", "200000"), ("band", "[-1.0, 5e6]"),
                       ("band", "[0.0, 1e300]")):
        @case(f"preset_range_{key}_{value}", "error", "p.toml", reason=f"preset key '{key}'")
        def _(d, key=key, value=value):
            (d / "p.toml").write_text(f'name = "hostile"\n{key} = {value}\n')
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--preset",
                    str(d / "p.toml")]

    # --- 9. non-finite values that would be written -------------------------------------
    for label, value in (("nan", np.nan), ("inf", np.inf), ("minus_inf", -np.inf)):
        def truth(f: h5py.File, value: float = value) -> None:
            f["truth/p0"][3, 4] = value

        @case(f"truth_{label}_reconstruct", "nan", "scan.h5", reason="truth image")
        def _(d, truth=truth):
            return ["reconstruct", scan_with(d, truth), "-o", str(d / "x.h5"), "--png", "none"]

        @case(f"truth_{label}_calibrate", "nan", "scan.h5", reason="truth image")
        def _(d, truth=truth):
            return ["calibrate", scan_with(d, truth), "-o", str(d / "c.h5")]

    def wavelengths(values: list[float]) -> Callable[[h5py.File], None]:
        def edit(f: h5py.File) -> None:
            y = f["sinogram"][...]
            _replace(f, "sinogram", np.stack([y] * len(values)))
            f["wavelengths"] = np.asarray(values, np.float64)
        return edit

    for label, values in (("nan", [700e-9, np.nan]), ("inf", [np.inf, 800e-9]),
                          ("negative", [-700e-9, 800e-9]), ("zero", [0.0, 800e-9])):
        @case(f"wavelengths_{label}", "nan", "scan.h5", reason="wavelengths")
        def _(d, values=values):
            return ["reconstruct", scan_with(d, wavelengths(values)), "-o", str(d / "x.h5"),
                    "--png", "none"]

        @case(f"wavelengths_{label}_patato_export", "nan", "scan.h5", reason="wavelengths")
        def _(d, values=values):
            return ["reconstruct", scan_with(d, wavelengths(values)), "-o", str(d / "x.h5"),
                    "--png", "none", "--export-patato", str(d / "p.h5")]

    @case("wavelengths_nan_selected", "nan", "scan.h5", reason="wavelengths")
    def _(d):
        return ["reconstruct", scan_with(d, wavelengths([700e-9, np.nan])), "-o",
                str(d / "x.h5"), "--png", "none", "--wavelengths", "700e-9"]

    @case("ipasc_wavelengths_nan", "nan", "ipasc.h5", reason="wavelengths")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = np.zeros((4, 64, 2, 1), np.float32)
            f["meta_data/ad_sampling_rate"] = 20e6
            f["meta_data/acquisition_wavelengths"] = np.array([np.nan, 800e-9])
            for k in range(4):
                th = k * np.pi / 2
                f[f"meta_data_device/detectors/{k:010d}/detector_position"] = \
                    np.array([0.01 * np.cos(th), 0.01 * np.sin(th), 0.0])
        return ["reconstruct", str(d / "ipasc.h5"), "-o", str(d / "x.h5"), "--n", "16"]

    for band in ("nan:8e6", "0.1e6:nan", "inf:8e6", "0:inf", "1e-300:8e6", ":1e-300",
                 ":1e-3"):
        @case(f"band_{band}", "nan", "band")
        def _(d, band=band):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--png", "none",
                    "--band", band]

    for std in ("1e-12", "1e-300", "1e300", "inf", "nan", "0", "-1e-3"):
        @case(f"calibrate_prior_std_{std}", "nan", "--prior-std")
        def _(d, std=std):
            return ["calibrate", scan_with(d), "-o", str(d / "c.h5"), f"--prior-std={std}"]

    # --- 10. more inputs that raised tracebacks ------------------------------------------
    def one_sample(f: h5py.File) -> None:
        _replace(f, "sinogram", f["sinogram"][:, :1])
        f["acquisition"].attrs["n_samples"] = 1

    for command in ("reconstruct", "calibrate", "autofocus"):
        @case(f"one_sample_{command}", "traceback", "scan.h5", reason="at least 2")
        def _(d, command=command):
            tail = {"reconstruct": ["-o", str(d / "x.h5")],
                    "calibrate": ["-o", str(d / "c.h5")], "autofocus": []}[command]
            return [command, scan_with(d, one_sample), *tail]

    def unknown_filter(f: h5py.File) -> None:
        attrs, shape = dict(f["sinogram"].attrs), f["sinogram"].shape
        del f["sinogram"]
        d = f.create_dataset("sinogram", shape=shape, dtype="f4", chunks=shape,
                             compression=32001, allow_unknown_filter=True)
        d.id.write_direct_chunk((0,) * len(shape), bytes(64))
        d.attrs.update(attrs)

    for command in ("reconstruct", "info", "calibrate"):
        @case(f"unknown_hdf5_filter_{command}", "error", "scan.h5", reason="filter 32001")
        def _(d, command=command):
            args = [command, scan_with(d, unknown_filter)]
            return args + (["-o", str(d / "x.h5")] if command != "info" else [])

    def many_sensors_one_sample(f: h5py.File) -> None:
        n = 65536
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        pos = 0.0225 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        _replace(f, "sinogram", np.ones((n, 1), np.float32))
        _replace(f, "sensors/positions", pos)
        _replace(f, "sensors/normals", -pos / 0.0225)
        for name in ("truth/true_positions", "truth/true_normals"):
            if name in f:
                del f[name]
        f["acquisition"].attrs["n_samples"] = 1

    # (``oatomo info`` describes such a file correctly: it is not a case)
    for command in ("reconstruct", "calibrate"):
        @case(f"sensors_65536_one_sample_{command}", "traceback", "scan.h5",
              reason="at least 2")
        def _(d, command=command):
            return [command, scan_with(d, many_sensors_one_sample), "-o", str(d / "x.h5")]

    for frames in (["5"], ["0", "1"], ["7"]):
        @case(f"calibrate_frames_{'_'.join(frames)}", "traceback", "--frames")
        def _(d, frames=frames):
            return ["calibrate", scan_with(d), "-o", str(d / "c.h5"), "--frames", *frames]

    for lam in ("1e-300", "1e-31"):
        @case(f"reconstruct_tv_lam_{lam}", "traceback", "--lam")
        def _(d, lam=lam):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--method", "mb-tv",
                    "--lam", lam, "--iters", "2"]

    for response in ("5e6:1e-300", "5e6:1e-6", "5e6:0"):
        @case(f"reconstruct_response_{response}", "traceback", "bandwidth")
        def _(d, response=response):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--png", "none",
                    "--response", response]

    # --- 11. memory past the limit: sizes checked before anything is read or allocated --
    def sparse(path: Path, size: int) -> str:
        """A file of ``size`` bytes that takes no disk (its size is all that is checked)."""
        with open(path, "wb") as f:
            f.truncate(size)
        return str(path)

    m64 = {"OATOMO_MAX_BYTES": "64M"}
    for size, label in ((100 << 20, "100M"), (9 << 20, "9M")):
        @case(f"document_{label}_setup_64M", "allocation", "tiny.toml", env=m64)
        def _(d, size=size):
            return ["simulate", "--setup", sparse(d / "tiny.toml", size), "-o", str(d / "s.h5")]

        @case(f"document_{label}_preset_64M", "allocation", "p.toml", env=m64)
        def _(d, size=size):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--preset",
                    sparse(d / "p.toml", size)]

        @case(f"document_{label}_calibration_64M", "allocation", "cal.json", env=m64)
        def _(d, size=size):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--calibration",
                    sparse(d / "cal.json", size)]

        @case(f"document_{label}_manifest_64M", "allocation", "manifest.json", env=m64)
        def _(d, size=size):
            (d / "ds").mkdir(exist_ok=True)
            sparse(d / "ds" / "manifest.json", size)
            return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt")]

    for gz in ("", ".gz"):
        @case(f"cmnist_idx_header_20000{gz or '_raw'}_64M", "allocation",
              f"train-images-idx3-ubyte{gz}", env=m64, reason="Colored MNIST")
        def _(d, gz=gz):  # the headers alone: the colouring is checked before any digit
            (d / "mnist").mkdir(exist_ok=True)
            opener = gzip.open if gz else open
            for name, head in (("train-images-idx3-ubyte", bytes([0, 0, 8, 3]) + b"".join(
                    v.to_bytes(4, "big") for v in (20000, 28, 28))),
                    ("train-labels-idx1-ubyte", bytes([0, 0, 8, 1]) + (20000).to_bytes(4, "big"))):
                with opener(d / "mnist" / f"{name}{gz}", "wb") as f:
                    f.write(head)
            return ["cmnist", "--mnist-dir", str(d / "mnist"), "--out", str(d / "o"), "-q"]

    metadata_edits = {
        "metadata_attr": lambda f: f.attrs.__setitem__("metadata", '{"a": "' + "x" * (5 << 20)
                                                       + '"}'),
        "setup_attr": lambda f: f.attrs.__setitem__("setup", SETUP + "#" + "x" * (5 << 20)),
        "vlen_string_dataset": lambda f: f.create_dataset("notes", data="x" * (5 << 20),
                                                          dtype=h5py.string_dtype()),
        "many_attrs": lambda f: [f["acquisition"].attrs.__setitem__(f"k{i}", "y" * 4000)
                                 for i in range(1300)],
    }
    for label, edit in metadata_edits.items():
        for command in ("info", "reconstruct"):
            @case(f"scan_metadata_{label}_{command}_8M", "allocation", "scan.h5",
                  env={"OATOMO_MAX_BYTES": "8M"}, reason="metadata")
            def _(d, edit=edit, command=command):
                args = [command, scan_with(d, edit)]
                return args + (["-o", str(d / "x.h5")] if command != "info" else [])

    @case("ipasc_metadata_string_8M", "allocation", "ipasc.h5", env={"OATOMO_MAX_BYTES": "8M"},
          reason="metadata")
    def _(d):
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = np.zeros((4, 64, 1, 1), np.float32)
            f["meta_data/ad_sampling_rate"] = 20e6
            f.create_dataset("meta_data/notes", data="x" * (5 << 20), dtype=h5py.string_dtype())
            for k in range(4):
                th = k * np.pi / 2
                f[f"meta_data_device/detectors/{k:010d}/detector_position"] = \
                    np.array([0.01 * np.cos(th), 0.01 * np.sin(th), 0.0])
        return ["info", str(d / "ipasc.h5")]

    for label, extra, env in (
            ("das_n8192_figure_64M", ["--n", "8192", "--method", "das"], m64),
            ("das_n8192_no_figure_64M", ["--n", "8192", "--method", "das", "--png", "none"],
             m64),
            ("ubp_n4096_no_figure_64M", ["--n", "4096", "--png", "none"], m64),
            ("figure_dpi600_8M", ["--n", "64", "--dpi", "600"], {"OATOMO_MAX_BYTES": "8M"}),
            ("figure_n8192_256M", ["--n", "8192", "--dpi", "600"], {"OATOMO_MAX_BYTES": "256M"})):
        @case(f"reconstruct_{label}", "allocation", "would need", env=env,
              reason="OATOMO_MAX_BYTES")
        def _(d, extra=extra):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), *extra]

    for label, extra in (("deconvolve", ["--deconvolve"]),
                         ("model", ["--method", "mb-tikhonov", "--model-response",
                                    "--iters", "2"])):
        @case(f"response_support_{label}_64M", "allocation", "detector response", env=m64,
              reason="OATOMO_MAX_BYTES")
        def _(d, extra=extra):
            return ["reconstruct", scan_with(d), "-o", str(d / "x.h5"), "--png", "none",
                    "--response", "1e3:0.001", *extra]

    @case("setup_response_support_64M", "allocation", "detector response", env=m64,
          reason="OATOMO_MAX_BYTES")
    def _(d):
        return ["simulate", "--setup", setup_with(d, "[noise]", "[detector]\ncentre_frequency"
                                                  " = 1e3\nbandwidth = 0.001\n[noise]"),
                "-o", str(d / "s.h5")]

    @case("refiner_data_size_512_count_100000", "allocation", "ds", reason="OATOMO_MAX_BYTES")
    def _(d):
        return ["refiner", "data", "-o", str(d / "ds"), "--count", "100000", "--size", "512"]

    # --- 12. training options at their extremes: the one range table, then memory -------
    def manifest_only(d: Path, size: int = 96) -> str:
        """A dataset directory with a manifest and no data (nothing gets that far)."""
        (d / "ds").mkdir(exist_ok=True)
        (d / "ds" / "manifest.json").write_text(json.dumps({
            "format": "oatomo-family-data", "version": 1, "inputs": ["ubp", "das"],
            "environments": ["arc/none", "ring-dense/none"], "size": size}))
        return str(d / "ds")

    for group in ("refiner", "family"):
        for opt, value in (("--latent", "1000000"), ("--width", "100000"),
                           ("--depth", "100000"), ("--batch-size", "10000000"),
                           ("--batch-size", "0"), ("--epochs", "0"), ("--lr", "nan"),
                           ("--lr", "1e300"), ("--snapshot-every", "-1"),
                           ("--max-target", "inf"), ("--device", "meta"),
                           ("--device", "xla"), ("--batch-size", "60000")):
            @case(f"{group}_train_option_{opt.strip('-')}_{value}", "traceback", opt)
            def _(d, group=group, opt=opt, value=value):
                return [group, "train", "--data", manifest_only(d), "-o", str(d / "m.pt"),
                        opt, value]

    @case("refiner_train_width_256_16M", "traceback", "--width 256",
          env={"OATOMO_MAX_BYTES": "16M"}, reason="OATOMO_MAX_BYTES")
    def _(d):
        return ["refiner", "train", "--data", manifest_only(d), "-o", str(d / "m.pt"),
                "--width", "256"]

    for label, size in (("size_string", '"96"'), ("size_huge", "1000000000")):
        @case(f"refiner_train_manifest_{label}", "error", "manifest.json", reason="'size'")
        def _(d, size=size):
            (d / "ds").mkdir(exist_ok=True)
            (d / "ds" / "manifest.json").write_text(
                '{"format": "oatomo-family-data", "inputs": ["ubp", "das"], '
                f'"environments": ["arc/none"], "size": {size}}}')
            return ["refiner", "train", "--data", str(d / "ds"), "-o", str(d / "m.pt")]

    # --- 13. values from a scan file are reported with their HDF5 key --------------------
    def attr(name: str, key: str, value: object) -> Callable[[h5py.File], None]:
        return lambda f: f[name].attrs.__setitem__(key, value)

    scan_values = {
        "acquisition/fs": attr("acquisition", "fs", 1e300),
        "acquisition/speed_of_sound": attr("acquisition", "speed_of_sound", 0.0),
        "acquisition/t0": attr("acquisition", "t0", -5.0),
        "acquisition/n_samples": attr("acquisition", "n_samples", 0),
        "sensors/positions": scale_positions(1e40),
        "sensors/normals": lambda f: _replace(f, "sensors/normals", np.full((16, 2), np.nan)),
        "truth/p0/grid_fov": attr("truth/p0", "grid_fov", -1.0),
        "truth/p0/grid_n": attr("truth/p0", "grid_n", 0),
        "seed": lambda f: f.attrs.__setitem__("seed", -1),
        "detector/centre_frequency": lambda f: f.create_group("detector").attrs.update(
            {"centre_frequency": 1e300, "bandwidth": 0.5}),
        "detector/bandwidth": lambda f: f.create_group("detector").attrs.update(
            {"centre_frequency": 5e6, "bandwidth": np.nan}),
        "detector/impulse_response/fs": lambda f: f.create_dataset(
            "detector/impulse_response", data=np.ones(5)).attrs.__setitem__("fs", 0.0),
    }
    for key, edit in scan_values.items():
        @case(f"scan_key_{key.replace('/', '_')}", "error", "scan.h5", reason=f"'{key}'")
        def _(d, edit=edit):
            return ["info", scan_with(d, edit)]

    def ipasc(d: Path, fs: float = 20e6, c: float = 1500.0, scale: float = 1.0) -> str:
        with h5py.File(d / "ipasc.h5", "w") as f:
            f["binary_time_series_data"] = np.zeros((4, 64, 1, 1), np.float32)
            f["meta_data/ad_sampling_rate"] = fs
            f["meta_data/speed_of_sound"] = c
            for k in range(4):
                th = k * np.pi / 2
                f[f"meta_data_device/detectors/{k:010d}/detector_position"] = \
                    scale * np.array([0.01 * np.cos(th), 0.01 * np.sin(th), 0.0])
        return str(d / "ipasc.h5")

    for key, kw in (("meta_data/ad_sampling_rate", {"fs": 1e300}),
                    ("meta_data/speed_of_sound", {"c": -1.0}),
                    ("detector_position", {"scale": 1e40})):
        @case(f"ipasc_key_{key.split('/')[-1]}", "error", "ipasc.h5", reason=key)
        def _(d, kw=kw):
            return ["info", ipasc(d, **kw)]

    def patato(d: Path, fs: float = 20e6, c: float = 1500.0, scale: float = 1.0) -> str:
        with h5py.File(d / "patato.h5", "w") as f:
            raw = f.create_dataset("raw_data", data=np.zeros((1, 1, 4, 64), np.float32))
            raw.attrs["fs"] = fs
            raw.attrs["speedofsound"] = c
            th = np.arange(4) * np.pi / 2
            f["GEOMETRY"] = scale * 0.01 * np.stack([np.cos(th), np.sin(th), 0 * th], 1)
        return str(d / "patato.h5")

    for key, kw in (("raw_data/fs", {"fs": 1e300}), ("raw_data/speedofsound", {"c": np.nan}),
                    ("GEOMETRY", {"scale": 1e40})):
        @case(f"patato_key_{key.split('/')[-1]}", "error", "patato.h5", reason=key)
        def _(d, kw=kw):
            return ["info", patato(d, **kw)]

    return cases


if __name__ == "__main__":  # pragma: no cover - a listing for people
    built = build(sys.argv[1] if len(sys.argv) > 1 else "hostile_corpus")
    for c in built:
        print(f"{c.kind:10s} {c.name:36s} oatomo {' '.join(c.argv)}")
    print(f"{len(built)} cases")
