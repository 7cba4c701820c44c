"""File guards: one output check for every command, atomic and exclusive writes."""

import errno
import os
from pathlib import Path

import pytest

from oatomo import InputError, _atomic
from oatomo._atomic import atomic_path, check_input_file, check_outputs, forget_outputs
from oatomo.cli import main


@pytest.fixture(autouse=True)
def _fresh_registry():
    forget_outputs()
    yield
    forget_outputs()


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        assert target.read_text() == "old"  # never written directly
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left


def test_new_output_is_never_replaced_by_a_concurrent_run(tmp_path):
    target = tmp_path / "out.txt"
    check_outputs([target])  # did not exist: registered as new
    target.write_text("the other run's result")  # a concurrent run finished first
    with pytest.raises(InputError, match="appeared while this command ran"), \
            atomic_path(target) as tmp:
        tmp.write_text("ours")
    assert target.read_text() == "the other run's result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    # written once by us, a second write of the same run replaces (checkpoint per epoch)
    other = tmp_path / "ckpt.txt"
    check_outputs([other])
    for text in ("epoch 1", "epoch 2"):
        with atomic_path(other) as tmp:
            tmp.write_text(text)
    assert other.read_text() == "epoch 2"


def test_stale_temporary_files_are_removed(tmp_path):
    target = tmp_path / "out.txt"
    dead = tmp_path / ".out.txt.999999999.abcd.tmp"  # no such process
    alive = tmp_path / f".out.txt.{os.getpid()}.efgh.tmp"
    dead.write_text("x")
    alive.write_text("y")
    with atomic_path(target) as tmp:
        tmp.write_text("z")
    assert not dead.exists() and alive.exists() and target.read_text() == "z"


def test_outputs_distinct_and_not_inputs(tmp_path):
    a = tmp_path / "a.h5"
    a.write_text("a")
    with pytest.raises(InputError, match="does not exist"):
        check_outputs([tmp_path / "sub" / ".." / "x.h5"], force=True)
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="another output"):
        check_outputs([tmp_path / "x.h5", tmp_path / "sub" / ".." / "x.h5"], force=True)
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        check_outputs([tmp_path / "sub" / ".." / "a.h5"], force=True, inputs=(a,))
    with pytest.raises(InputError, match="exists"):
        check_outputs([a])
    assert check_outputs([a, None], force=True) == [a]


def test_fifo_and_device_refused(tmp_path):
    os.mkfifo(tmp_path / "f")
    with pytest.raises(InputError, match="not a regular file"):
        check_input_file(tmp_path / "f")
    with pytest.raises(InputError, match="not a regular file"):
        check_input_file("/dev/null")
    with pytest.raises(InputError, match="is a directory"):
        check_input_file(tmp_path)


def _scan(tmp_path: Path) -> Path:
    from hostile_corpus import _base_scan

    p = tmp_path / "scan.h5"
    _base_scan(p)
    return p


def test_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    scan = _scan(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.h5"))

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", full)
    assert main(["reconstruct", str(scan), "-o", str(tmp_path / "x.h5"), "--png",
                 "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"oatomo reconstruct: error: {tmp_path / 'x.h5'}: No space left on device"


def test_failing_figure_leaves_no_image(tmp_path, capsys, monkeypatch):
    scan = _scan(tmp_path)
    import oatomo.figures

    def broken(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "x.png"))

    monkeypatch.setattr(oatomo.figures, "reconstruction_figure", broken)
    assert main(["reconstruct", str(scan), "-o", str(tmp_path / "x.h5")]) == 2
    assert "Read-only file system" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]


def test_unexpected_exception_keeps_traceback(tmp_path, monkeypatch):
    import oatomo.cli.scan

    def bug(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(oatomo.cli.scan, "run_info", bug)
    with pytest.raises(ZeroDivisionError):  # not turned into exit 2: a traceback, exit 1
        main(["info", str(tmp_path / "x.h5")])


def test_warnings_are_one_log_line_each(tmp_path, capsys, caplog):
    import h5py
    import numpy as np

    path = tmp_path / "ipasc.h5"
    with h5py.File(path, "w") as f:
        f["binary_time_series_data"] = np.zeros((4, 64, 1, 1), np.float32)
        f["meta_data/ad_sampling_rate"] = 20e6
        for k in range(4):
            th = k * np.pi / 2
            f[f"meta_data_device/detectors/{k:010d}/detector_position"] = \
                np.array([0.01 * np.cos(th), 0.01 * np.sin(th), 0.0])
        f["meta_data/odd"] = np.zeros(2, dtype=[("a", "f4"), ("b", "i4")])  # not carried
    assert main(["info", str(path)]) == 0
    assert capsys.readouterr().err == ""  # (pytest holds the log records)
    logged = [r for r in caplog.records if r.name == "oatomo"]
    assert len(logged) == 1 and logged[0].levelname == "WARNING"
    assert "not carried" in logged[0].getMessage() and "\n" not in logged[0].getMessage()


def test_dataset_refused_when_the_disk_is_too_small(tmp_path, capsys, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_atomic.shutil, "disk_usage", lambda p: usage(1 << 20, 1 << 20, 4096))
    assert main(["refiner", "data", "-o", str(tmp_path / "ds"), "--count", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oatomo refiner: error: {tmp_path / 'ds'}: needs about"), err
    assert list(tmp_path.iterdir()) == []
