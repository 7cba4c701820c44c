"""The figure's memory check: its estimate covers what matplotlib draws, and a limit below
it refuses the figure before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError
from oatomo.figures import figure_bytes, scan_figure


def _draw(path, n=24):
    grid = Grid(n, 0.01)
    rng = np.random.default_rng(0)
    image = rng.random((2, n, n)).astype(np.float32)
    sino = rng.standard_normal((2, 8, 64)).astype(np.float32)
    scan_figure(path, sino, Acquisition(20e6, 64), image, grid,
                extra={"refined": image}, dpi=50)
    return figure_bytes(2, 2, n * n, 8 * 64, 50)


def test_the_estimate_covers_the_drawn_canvas(tmp_path):
    from matplotlib.image import imread

    estimate = _draw(tmp_path / "f.png")
    h, w = imread(tmp_path / "f.png").shape[:2]
    copy = 8 * max(24 * 24, 8 * 64)  # the largest panel's float64 copy
    # the canvas of figsize x dpi (the estimate in floating point, to a byte); some
    # matplotlib versions round a side down by one pixel
    assert 4 * h * w + copy - 1 <= estimate <= 4 * (h + 1) * (w + 1) + copy


def test_a_limit_below_the_estimate_refuses_before_writing(tmp_path, monkeypatch):
    estimate = _draw(tmp_path / "ok.png")
    monkeypatch.setenv("OATOMO_MAX_BYTES", str(int(estimate) - 1))
    with pytest.raises(InputError, match="OATOMO_MAX_BYTES"):
        _draw(tmp_path / "no.png")
    assert not (tmp_path / "no.png").exists()
