"""What a new user meets first: default output names that say the method, ``oatomo info``
on an image file, ``oatomo presets``, figure formats and resolution, and ``--help`` that
shows every default."""

import argparse
import re
import shutil
from pathlib import Path

import h5py
import pytest
from PIL import Image

import oatomo.pipeline
from oatomo.cli import build_parser, main
from oatomo.io import load_images
from oatomo.pipeline.presets import PRESETS_DIR

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DATA = Path(__file__).parents[1] / "data"
FAST = ["--no-refine", "--n", "16", "-q"]


@pytest.fixture
def scan(tmp_path):
    """A two-frame, two-wavelength PATATO scan beside nothing else."""
    path = tmp_path / "scan.h5"
    shutil.copy(DATA / "patato_ring16.hdf5", path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_default_names_say_the_method_and_do_not_clash(scan, capsys):
    d = scan.parent
    assert main(["reconstruct", str(scan), "--no-calibrate"] + FAST) == 0
    assert main(["reconstruct", str(scan), "--no-calibrate", "--method", "das"] + FAST) == 0
    assert sorted(p.name for p in d.iterdir()) == ["scan.h5", "scan_das.h5", "scan_das.png",
                                                   "scan_mb-tv.h5", "scan_mb-tv.png"]
    assert set(load_images(d / "scan_das.h5")[0]) == {"das"}
    assert set(load_images(d / "scan_mb-tv.h5")[0]) == {"mb-tv"}
    before = (d / "scan_mb-tv.h5").read_bytes()
    capsys.readouterr()
    assert main(["reconstruct", str(scan), "--no-calibrate"] + FAST) == 2
    err = _one_error_line(capsys)
    assert "scan_mb-tv.h5: output file exists" in err and "--force" in err and "-o" in err
    assert (d / "scan_mb-tv.h5").read_bytes() == before
    # the figure alone clashing is refused too, before any work
    (d / "scan_mb-tv.h5").unlink()
    assert main(["reconstruct", str(scan), "--no-calibrate"] + FAST) == 2
    assert "scan_mb-tv.png: output file exists" in _one_error_line(capsys)
    assert not (d / "scan_mb-tv.h5").exists()
    assert main(["reconstruct", str(scan), "--no-calibrate", "--force"] + FAST) == 0


def test_default_name_is_the_method_the_position_check_chose(scan, capsys):
    """The check finds the file's positions in disagreement with its data (a 16-sensor
    ring: the calibration then finds no better geometry and keeps the file's); the
    default is TV, named so; an existing file of that name is found after the check and
    nothing is written."""
    d = scan.parent
    (d / "scan_mb-tv.h5").write_bytes(b"keep")
    args = ["reconstruct", str(scan), "--iters", "3", "--n", "32", "--no-refine", "-q"]
    assert main(args) == 2
    assert "scan_mb-tv.h5: output file exists" in _one_error_line(capsys)
    assert sorted(p.name for p in d.iterdir()) == ["scan.h5", "scan_mb-tv.h5"]
    assert (d / "scan_mb-tv.h5").read_bytes() == b"keep"
    (d / "scan_mb-tv.h5").unlink()
    assert main(args) == 0
    assert "they disagree, not calibrated: the data do not identify a better geometry" in \
        capsys.readouterr().out
    assert sorted(p.name for p in d.iterdir()) == ["scan.h5", "scan_mb-tv.h5",
                                                   "scan_mb-tv.png"]
    assert set(load_images(d / "scan_mb-tv.h5")[0]) == {"mb-tv"}


def test_both_possible_default_names_taken_fails_before_the_work(scan, capsys, monkeypatch):
    def never(*args, **kw):
        raise AssertionError("reconstructed although every possible output exists")

    monkeypatch.setattr(oatomo.pipeline, "reconstruct", never)
    for name in ("scan_ubp.h5", "scan_mb-tv.h5"):
        (scan.parent / name).write_bytes(b"")
    assert main(["reconstruct", str(scan)] + FAST) == 2
    err = _one_error_line(capsys)
    assert "output file exists" in err and "--force" in err and "-o" in err


def test_info_describes_an_image_file(scan, capsys):
    out = scan.parent / "img.h5"
    assert main(["reconstruct", str(scan), "-o", str(out), "--png", "none",
                 "--no-calibrate", "--preset", "example-ring256-5mhz", "--method", "das",
                 "--speed-of-sound", "1520"]
                + FAST) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no sinogram" not in text
    assert "format:          oatomo image file" in text
    assert "image:           das 2x2x16x16 (frame, wavelength, y, x) in a.u." in text
    with h5py.File(out) as f:  # the grid as the file holds it
        n, fov = int(f.attrs["grid_n"]), float(f.attrs["grid_fov"])
    assert f"grid:            16x16 pixels, dx {fov / n * 1e3:.4g} mm, fov {fov * 1e3:.4g} mm" \
        in text and n == 16
    assert "wavelengths:     700, 800 nm" in text
    assert "method:          das, preset example-ring256-5mhz\n" in text
    assert f"source:          {scan} (patato, 16 sensors, c = 1520 m/s)" in text
    # a scan file is described as before
    assert main(["info", str(scan)]) == 0
    assert "format:          patato" in capsys.readouterr().out


def test_info_on_a_damaged_image_file_is_one_line(tmp_path, capsys):
    for name, fill in (("nogroup.h5", lambda f: None),
                       ("nogrid.h5", lambda f: f.create_dataset("images/a", data=[[1.0]]))):
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            f.attrs["oatomo_format"] = "image"
            fill(f)
        assert main(["info", str(path)]) == 2
        err = _one_error_line(capsys)
        assert err.startswith(f"oatomo info: error: {path}: ")
        assert ("images group" if name == "nogroup.h5" else "grid_n") in err


def test_presets_lists_the_bundled_presets(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted(PRESETS_DIR.glob("*.toml"))
    assert len(files) >= 2 and len(lines) == len(files) + 1
    for line, path in zip(lines, files, strict=False):
        doc = tomllib.loads(path.read_text())
        name, description = line.split(None, 1)
        assert name == path.stem and description == doc["description"]
    assert lines[-1].startswith(f"({len(files)} bundled presets in ")


@pytest.mark.parametrize("suffix, magic", [(".svg", (b"<?xml", b"<svg")), (".pdf", (b"%PDF",)),
                                           (".png", (b"\x89PNG",))])
def test_figure_format_is_the_suffix(scan, suffix, magic):
    fig = scan.parent / f"fig{suffix}"
    assert main(["reconstruct", str(scan), "-o", str(scan.parent / "img.h5"), "--figure",
                 str(fig), "--no-calibrate", "--method", "das"] + FAST) == 0
    assert fig.read_bytes().startswith(magic)


def test_dpi_sets_the_pixels_and_bad_figure_options_are_one_line(scan, capsys):
    sizes = []
    for dpi in (50, 100):
        fig = scan.parent / f"f{dpi}.png"
        assert main(["reconstruct", str(scan), "-o", str(scan.parent / f"i{dpi}.h5"),
                     "--png", str(fig), "--dpi", str(dpi), "--no-calibrate",
                     "--method", "das"] + FAST) == 0
        sizes.append(Image.open(fig).size)
    assert all(abs(b - 2 * a) <= 1 for a, b in zip(sizes[0], sizes[1], strict=True)), sizes
    for extra, message in ((["--png", "fig.jpg"], "--png must end in .png, .svg, .pdf"),
                           (["--figure", "fig"], "--png must end in .png, .svg, .pdf"),
                           (["--dpi", "0"], "--dpi must be an integer in 10..600"),
                           (["--dpi", "100000"], "--dpi must be an integer in 10..600")):
        assert main(["reconstruct", str(scan), "-o", str(scan.parent / "x.h5"), "--method",
                     "das"] + extra + FAST) == 2
        assert message in _one_error_line(capsys)
        assert not (scan.parent / "x.h5").exists()


def _help_blocks(command: str, capsys) -> dict[str, str]:
    """``oatomo COMMAND --help``: each option's help text (joined lines), by option."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out.split("options:", 1)[1]
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^  (-\S.*?)(?:  +(.*))?$", line)
        if m:
            current = m.group(1)
            blocks[current] = m.group(2) or ""
        elif current is not None:
            blocks[current] += " " + line.strip()
    return blocks


@pytest.mark.parametrize("command", ["simulate", "reconstruct"])
def test_help_shows_every_default(command, capsys):
    blocks = _help_blocks(command, capsys)
    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction)).choices[command]
    checked = 0
    for action in sub._actions:
        if not action.option_strings or action.default in (None, argparse.SUPPRESS) or \
                isinstance(action.default, bool):
            continue
        block = next(b for k, b in blocks.items() if action.option_strings[0] in k.split(", ")
                     or k.startswith(action.option_strings[0] + " "))
        assert re.search(rf"\(default: {re.escape(str(action.default))}\)", block), \
            (action.option_strings, block)
        checked += 1
    assert checked >= 3
    assert all(b.strip() for b in blocks.values()), blocks  # every option has help
    if command == "reconstruct":
        assert "absolute" in blocks["--lam LAM"] and "scaled to the data" in blocks["--lam LAM"]
        assert "(default: 150)" in blocks["--dpi DPI"]
