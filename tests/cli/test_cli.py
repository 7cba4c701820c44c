"""The oatomo command: end to end, and every bad input gives one line + exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from oatomo.cli import main
from oatomo.io import load_images, load_scan
from oatomo.setups import SIMULATIONS_DIR

DATA = Path(__file__).parents[1] / "data"
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "scan.h5"
    assert main(["simulate", "--setup", "ring32_jitter", "--phantom", "disks", "--seed", "4",
                 "-o", str(out)]) == 0
    return out


def test_simulate_writes_everything(scan_file):
    scan = load_scan(scan_file)
    assert scan.sinogram.shape == (32, 1024) and scan.sinogram.dtype == np.float32
    assert scan.setup_name == "ring32_jitter" and scan.seed == 4
    assert scan.p0 is not None and scan.p0.shape == (128, 128)
    err = np.hypot(*(scan.true_sensors.positions - scan.sensors.positions).T)
    assert 0.5e-4 < np.sqrt(np.mean(err**2)) < 4e-4  # jitter 0.15 mm per axis
    assert "jitter_std" in scan.setup_toml


def test_simulate_is_deterministic(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for p in (a, b):
        main(["simulate", "--setup", "ring32_radial", "--phantom", "vessel-tree", "--seed", "9",
              "-o", str(p)])
    assert load_scan(a).sinogram.tobytes() == load_scan(b).sinogram.tobytes()


def test_reconstruct_end_to_end(scan_file, tmp_path, capsys):
    before = scan_file.read_bytes()
    out = tmp_path / "img.h5"
    assert main(["reconstruct", str(scan_file), "-o", str(out), "--method", "ubp",
                 "--no-refine", "--no-calibrate"]) == 0
    assert scan_file.read_bytes() == before
    images, grid = load_images(out)
    assert grid.n == 128 and set(images) == {"ubp", "truth"}
    r = np.corrcoef(images["ubp"].ravel(), images["truth"].ravel())[0, 1]
    assert r > 0.3, r  # measured 0.35: 32 jittered sensors, UBP with nominal positions
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # existing output needs --force; default output beside the input
    assert main(["reconstruct", str(scan_file), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["reconstruct", str(scan_file), "--method", "das", "--png", "none",
                 "--no-calibrate"]) == 0
    assert scan_file.with_name("scan_das.h5").exists()


def test_info_and_peer_formats(capsys):
    for name, fmt in (("ipasc_ring16.hdf5", "ipasc"), ("patato_ring16.hdf5", "patato")):
        assert main(["info", str(DATA / name)]) == 0
        out = capsys.readouterr().out
        assert f"format:          {fmt}" in out and "sensors:         16" in out
        assert "20 MHz" in out and "1510 m/s" in out and "frames:          4" in out


def _scan_with(tmp_path, name, mutate):
    src = DATA / "patato_ring16.hdf5"
    path = tmp_path / name
    with h5py.File(src) as s, h5py.File(path, "w") as f:
        for k, v in s.attrs.items():
            f.attrs[k] = v
        for k in ("raw_data", "GEOMETRY"):
            f[k] = s[k][...]
        mutate(f)
    return path


def _bad_inputs(tmp_path):
    cases = {}
    cases["missing"] = (["info", str(tmp_path / "missing.h5")], "file not found")
    (tmp_path / "text.h5").write_text("not hdf5")
    cases["not_hdf5"] = (["info", str(tmp_path / "text.h5")], "not an HDF5 file")
    with h5py.File(tmp_path / "nosino.h5", "w") as f:
        f["something"] = np.zeros(3)
    cases["no_sinogram"] = (["info", str(tmp_path / "nosino.h5")], "no sinogram")

    def rows(f):
        del f["GEOMETRY"]
        f["GEOMETRY"] = np.zeros((15, 3))
    cases["rows"] = (["info", str(_scan_with(tmp_path, "rows.h5", rows))],
                     "16 rows but there are 15 sensors")

    def nan(f):
        d = f["raw_data"][...]
        d[0, 0, 3, 7] = np.nan
        del f["raw_data"]
        f["raw_data"] = d
    # info reads metadata only: the samples are checked where they are used
    cases["nan"] = (["reconstruct", str(_scan_with(tmp_path, "nan.h5", nan)), "-o",
                     str(tmp_path / "nan_out.h5")], "NaN or Inf")
    cases["fs"] = (["info", str(_scan_with(tmp_path, "fs.h5",
                                           lambda f: f.attrs.__setitem__("fs", 0.0)))],
                   "HDF5 key 'fs' must lie in")
    cases["c"] = (["info", str(_scan_with(tmp_path, "c.h5",
                                          lambda f: f.attrs.__setitem__("speedofsound", -5.0)))],
                  "HDF5 key 'speedofsound' must lie in")

    def nosens(f):
        del f["GEOMETRY"]
        f["GEOMETRY"] = np.zeros((0, 3))
    cases["no_sensors"] = (["info", str(_scan_with(tmp_path, "nosens.h5", nosens))],
                           "no sensors")
    good = _scan_with(tmp_path, "good.h5", lambda f: None)
    cases["huge_grid"] = (["reconstruct", str(good), "--n", "100000", "-o",
                           str(tmp_path / "o1.h5")], "MiB")
    toml = tmp_path / "unknown.toml"
    toml.write_text((SIMULATIONS_DIR / "ring32_r22.toml").read_text() + "\n[noise2]\nx = 1\n")
    cases["toml_key"] = (["simulate", "--setup", str(toml), "-o", str(tmp_path / "s1.h5")],
                         "unknown key 'noise2'")
    toml2 = tmp_path / "wrongtype.toml"
    toml2.write_text((SIMULATIONS_DIR / "ring32_r22.toml").read_text()
                     .replace("radius = 0.0225", 'radius = "wide"'))
    cases["toml_type"] = (["simulate", "--setup", str(toml2), "-o", str(tmp_path / "s2.h5")],
                          "'array.radius' must be a number")
    cases["out_dir"] = (["reconstruct", str(good), "-o", str(tmp_path / "no/such/dir/o.h5")],
                        "does not exist")
    full = (DATA / "patato_ring16.hdf5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(full[: len(full) // 2])
    cases["truncated"] = (["info", str(tmp_path / "cut.h5")], "truncated or corrupt")
    cases["into_input"] = (["reconstruct", str(good), "-o", str(good), "--force"],
                           "refusing to overwrite the input")
    return cases


CASES = ["missing", "not_hdf5", "no_sinogram", "rows", "nan", "fs", "c", "no_sensors",
         "huge_grid", "toml_key", "toml_type", "out_dir", "truncated", "into_input"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_exit_2(case, tmp_path, capsys):
    argv, needle = _bad_inputs(tmp_path)[case]
    files = [Path(a) for a in argv if Path(a).is_file()]
    before = {p: p.read_bytes() for p in files}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert needle in err, err
    named = [Path(a).name for a in argv if a.endswith((".h5", ".toml"))]
    if case == "huge_grid":  # the problem is the --n argument, and the message says so
        named = ["100000x100000"]
    assert any(n in err for n in named), err
    for p, b in before.items():
        assert p.read_bytes() == b  # inputs untouched


def test_console_script_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "oatomo", "info", str(tmp_path / "x.h5")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"oatomo info: error: {tmp_path / 'x.h5'}: file not found"


@pytest.mark.parametrize("method", ["fbp", "mb-tv", "mb-tikhonov"])
def test_reconstruct_other_methods(scan_file, tmp_path, method, capsys):
    out = tmp_path / f"{method}.h5"
    assert main(["reconstruct", str(scan_file), "-o", str(out), "--method", method,
                 "--iters", "5", "--no-refine", "--png", "none", "--no-calibrate"]) == 0
    images, _ = load_images(out)
    r = np.corrcoef(images[method].ravel(), images["truth"].ravel())[0, 1]
    assert r > 0.3, (method, r)
    assert f"with {method}" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["setups", "info"])
def test_closed_pipe_ends_quietly(command, scan_file):
    """``oatomo info scan.h5 | head -0``: the reader has gone before the output is written;
    the command's work is done, so it ends with 0 and says nothing."""
    read, write = os.pipe()
    os.close(read)
    argv = [command] + ([str(scan_file)] if command == "info" else [])
    proc = subprocess.run([sys.executable, "-m", "oatomo", *argv], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_verbosity_after_every_sub_command():
    """-q / -v are accepted after any sub-command, nested ones (`refiner data`) included,
    and keep the main parser's value when not given there."""
    import argparse

    from oatomo.cli import build_parser

    parser = build_parser()
    commands = []
    todo = [((name,), p) for name, p in next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.items()]
    while todo:
        path, p = todo.pop()
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        commands.append(path)
        for a in subs:
            todo.extend(((*path, n), q) for n, q in a.choices.items())
    assert ("refiner", "eval-set") in commands and len(commands) > 10
    for path in commands:
        opts = {s for a in _parser_for(parser, path)._actions for s in a.option_strings}
        assert {"-q", "--quiet", "-v", "--verbose"} <= opts, path


def _parser_for(parser, path):
    import argparse

    for name in path:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


@pytest.mark.parametrize("argv", [
    ["reconstruct", "scan.h5", "-o", "x.h5", "--n", "abc"],
    ["calibrate", "scan.h5", "--prior-std", "abc"],
    ["simulate", "--setup"],
    ["reconstruct", "scan.h5", "-o", "x.h5", "--method", "nope"],
    ["refiner", "data", "--count", "1"],
    ["refiner", "data", "-o", "d", "--count", "1e3"],
    ["refiner", "train", "--data", "d", "-o", "m.pt", "--unknown"],
    ["info"],
    ["no-such-command"],
])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err.count("\n") == 1 and "usage:" not in err, err
    command = " ".join(a for a in argv[:2] if a in ("refiner", "data", "train")) or argv[0]
    prefix = "oatomo: error:" if argv[0] == "no-such-command" else f"oatomo {command}: error:"
    assert err.startswith(prefix), err
