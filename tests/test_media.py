"""The 2-D line-source medium and power-law attenuation: closed forms, an independent 2-D
solution, dot tests of the operators that include them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import j0

from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo import forward as forward_module
from oatomo.errors import UnitWarning
from oatomo.forward import ForwardOperator, simulate
from oatomo.media import (
    Attenuation,
    attenuate,
    attenuate_adjoint,
    attenuation_bands,
    compensate,
    line_to_slab,
    slab_to_line,
)
from oatomo.recon.backprojection import backproject
from oatomo.response import DetectorResponse

C = 1500.0


def _edges(acq: Acquisition) -> np.ndarray:
    return acq.t0 + (np.arange(acq.n_samples + 1) - 0.5) / acq.fs


def test_disk_centre_closed_form_slab_to_line():
    """Circular means about a uniform disk's centre are q up to its radius a: the slab
    signal is a step of S = h q / (2c), the 2-D one q (1 - c t / sqrt(c^2 t^2 - a^2))."""
    acq, h, q, a = Acquisition(40e6, 1024, C), 1e-4, 2.0, 5e-3
    edges = _edges(acq)
    s = np.where(edges < a / C, h * q / (2 * C), 0.0)
    p_slab = np.diff(np.concatenate([[0.0], s[1:]])) * acq.fs
    p2d = slab_to_line(p_slab, acq, thickness=h)
    # interval means of the closed form, from its integral q (t - sqrt(t^2 - (a/c)^2))
    te, ta = np.maximum(edges, 0.0), a / C
    big_q = np.where(te < ta, q * te, q * (te - np.sqrt(np.maximum(te ** 2 - ta ** 2, 0.0))))
    exact = np.diff(big_q) * acq.fs
    t = acq.times
    # before the rim's wave: exact to 2e-3; after it, the step of S that one interval
    # cannot resolve decays like the kernel's singularity
    before = (t < ta - 10 / acq.fs) & (t > 20 / acq.fs)
    assert np.abs(p2d - exact)[before].max() < 2e-3 * q
    assert np.abs(p2d - exact)[t > ta + 40 / acq.fs].max() < 1e-2 * q


def test_disk_centre_closed_form_line_to_slab():
    acq, h, q, a = Acquisition(40e6, 1024, C), 1e-4, 1.0, 5e-3
    edges = np.maximum(_edges(acq), 0.0)
    ta = a / C
    big_q = np.where(edges < ta, q * edges, q * (edges - np.sqrt(np.maximum(edges ** 2 - ta ** 2,
                                                                            0.0))))
    p_slab = line_to_slab(np.diff(big_q) * acq.fs, acq, thickness=h)
    s = np.cumsum(p_slab) / acq.fs
    exact = np.where(edges[1:] < ta, h * q / (2 * C), 0.0)
    keep = (np.abs(edges[1:] - ta) > 5 / acq.fs) & (edges[1:] > 10 / acq.fs)
    assert np.abs(s - exact)[keep].max() < 2e-3 * h * q / (2 * C)


def test_round_trip_slab_line_slab():
    g = Grid(64, 0.0064)
    acq = Acquisition(20e6, 512, C)
    y = simulate(np.ones(g.shape), g, ring_array(8, 0.015), acq, band=(0, 6e6))
    back = line_to_slab(slab_to_line(y, acq, thickness=g.dx), acq, thickness=g.dx)
    assert np.linalg.norm(back - y) < 1e-4 * np.linalg.norm(y)


def test_line_source_medium_matches_2d_wave_solution():
    """A Gaussian blob in the 2-D medium against the exact 2-D wave solution (Hankel
    transform: p(r, t) = s^2 int k exp(-k^2 s^2 / 2) J0(k r) cos(c k t) dk)."""
    g, sig, x0 = Grid(128, 0.0064), 0.3e-3, np.array([0.5e-3, -0.3e-3])
    X, Y = g.coordinates()
    p0 = np.exp(-((X - x0[0]) ** 2 + (Y - x0[1]) ** 2) / (2 * sig ** 2))
    ring = ring_array(3, 0.01)
    acq = Acquisition(40e6, 600, C)
    y = ForwardOperator(g, ring, acq, medium="2d").forward(p0.astype(np.float32))
    k = np.linspace(0, 12 / sig, 12000)
    te = np.maximum(_edges(acq), 0.0)
    for s in range(3):
        r = np.hypot(*(ring.positions[s] - x0))
        w = sig ** 2 * np.exp(-(k * sig) ** 2 / 2) * j0(k * r)
        big_q = (w[None] * np.sin(C * k[None] * te[:, None]) / C).sum(1) * (k[1] - k[0])
        exact = np.diff(big_q) * acq.fs  # interval means
        assert np.linalg.norm(y[s] - exact) < 0.01 * np.linalg.norm(exact)


@pytest.mark.parametrize("kw", [
    {"medium": "2d"},
    {"attenuation": Attenuation(0.75, 1.0)},
    {"medium": "2d", "attenuation": Attenuation(0.5, 1.5), "element_width": 5e-4,
     "response": DetectorResponse(centre_frequency=5e6, bandwidth=0.8)},
])
def test_dot_test(kw):
    g = Grid(48, 0.0064)
    op = ForwardOperator(g, ring_array(12, 0.015), Acquisition(20e6, 400, C), **kw)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(g.shape).astype(np.float32)
    y = rng.standard_normal((12, 400)).astype(np.float32)
    lhs = float(np.sum(op.forward(x).astype(np.float64) * y))
    rhs = float(np.sum(x.astype(np.float64) * op.adjoint(y)))
    assert abs(lhs - rhs) <= 1e-4 * max(abs(lhs), abs(rhs))


def test_defaults_do_not_touch_the_new_operators(monkeypatch):
    """Without attenuation and in the slab the operator runs exactly today's arithmetic."""
    g = Grid(32, 0.0064)
    args = (g, ring_array(8, 0.015), Acquisition(20e6, 256, C))
    x = np.random.default_rng(0).random(g.shape).astype(np.float32)
    ref = ForwardOperator(*args)
    y, z = ref.forward(x), ref.adjoint(ref.forward(x))

    def boom(*_a, **_k):
        raise AssertionError("called")

    for name in ("attenuate", "attenuate_adjoint", "line_matrix"):
        monkeypatch.setattr(forward_module, name, boom)
    op = ForwardOperator(*args, medium="slab", attenuation=None)
    assert np.array_equal(op.forward(x), y) and np.array_equal(op.adjoint(op.forward(x)), z)


@pytest.mark.parametrize("power", [0.5, 1.0, 1.5, 2.0])
def test_attenuation_amplitude_matches_exp_minus_alpha_d(power):
    acq = Acquisition(40e6, 2048, C)
    att = Attenuation(0.75, power)
    centres = attenuation_bands(acq, att)
    f = np.fft.rfftfreq(8192, 1 / acq.fs)
    keep = (f > 0.5e6) & (f < 15e6)  # (the record cuts the long tail of y < 1: DC)
    for k in (int(round(centres[len(centres) // 2])), 813):  # a band centre, and between
        x = np.zeros(acq.n_samples)
        x[k] = 1.0
        y = attenuate(x, acq, att).astype(np.float64)
        amp = np.abs(np.fft.rfft(y, 8192))
        exact = np.exp(-att.nepers_per_metre(f) * C * k / acq.fs)
        assert np.abs(amp - exact)[keep].max() < 2.5e-3
    # closed form of the unit: 0.75 dB/(MHz cm) at 5 MHz over 2 cm is 7.5 dB
    h = Attenuation(0.75, 1.0).transfer(np.array([5e6]), 0.02)[0]
    assert abs(h) == pytest.approx(10 ** (-7.5 / 20), rel=1e-12)


def test_attenuation_is_causal_and_adjoint():
    acq = Acquisition(40e6, 1024, C)
    att = Attenuation(0.75, 1.0)
    t = acq.times - 15e-6
    x = -t * np.exp(-(t / 0.1e-6) ** 2)  # a band-limited pulse at sample 600
    y = attenuate(x, acq, att)
    assert np.abs(y[:580]).max() < 1e-3 * np.abs(y).max()  # nothing before it arrives
    assert 590 <= np.argmax(np.abs(y)) < 620
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 5, acq.n_samples))
    lhs = np.sum(attenuate(a, acq, att).astype(np.float64) * b)
    rhs = np.sum(a * attenuate_adjoint(b, acq, att).astype(np.float64))
    assert abs(lhs - rhs) < 1e-5 * abs(lhs)


def test_compensation_restores_a_band_limited_pulse():
    acq = Acquisition(40e6, 2048, C)
    att = Attenuation(0.75, 1.0)
    t = acq.times - 20e-6  # 30 mm
    pulse = -t * np.exp(-(t / 0.1e-6) ** 2)
    pulse /= np.abs(pulse).max()
    damped = attenuate(pulse, acq, att)
    restored = compensate(damped, acq, att)
    before = np.linalg.norm(damped - pulse)
    assert np.linalg.norm(restored - pulse) < 0.25 * before
    gain = np.abs(compensate(np.random.default_rng(0).standard_normal(2048), acq, att,
                             max_gain=2.0)).std()
    assert gain < 2.5  # white noise gains at most max_gain


def test_attenuation_checks():
    with pytest.raises(InputError, match="power"):
        Attenuation(0.5, 3.0)
    with pytest.raises(InputError, match="alpha0"):
        Attenuation(-1.0)
    with pytest.warns(UnitWarning):
        Attenuation(50.0)
    with pytest.raises(InputError, match="preset"):
        Attenuation.preset("granite")
    assert Attenuation.preset("water").power == 2.0
    with pytest.raises(InputError, match="medium"):
        ForwardOperator(Grid(16, 0.0064), ring_array(8, 0.015), Acquisition(20e6, 64),
                        medium="3d")


def test_backprojection_of_line_source_data_matches_slab_data():
    g = Grid(64, 0.0064)
    ring = ring_array(64, 0.012)
    acq = Acquisition(20e6, 512, C)
    p0 = np.zeros(g.shape)
    p0[20:30, 30:40] = 1.0
    slab = simulate(p0, g, ring, acq)
    line = simulate(p0, g, ring, acq, medium="2d")
    a = backproject(slab, g, ring, acq, method="fbp")
    b = backproject(line, g, ring, acq, method="fbp", medium="2d")
    assert np.linalg.norm(a - b) < 1e-3 * np.linalg.norm(a)


def test_scan_files_record_the_medium(tmp_path):
    from oatomo.io import Scan, load_scan, save_scan

    g = Grid(32, 0.0064)
    ring = ring_array(8, 0.015)
    acq = Acquisition(20e6, 128, C)
    y = np.zeros((8, 128), np.float32)
    plain, marked = tmp_path / "plain.h5", tmp_path / "marked.h5"
    save_scan(plain, Scan(y, ring, acq, grid=g))
    save_scan(marked, Scan(y, ring, acq, medium="2d", attenuation=Attenuation(0.5, 1.1)))
    assert load_scan(plain).medium == "slab" and load_scan(plain).attenuation is None
    scan = load_scan(marked)
    assert scan.medium == "2d" and scan.attenuation == Attenuation(0.5, 1.1)
    with pytest.raises(InputError, match="medium"):
        Scan(y, ring, acq, medium="3d")


def test_cli_medium_and_attenuation(tmp_path, capsys):
    from oatomo.cli import main
    from oatomo.io import load_scan

    out = tmp_path / "s.h5"
    assert main(["simulate", "--setup", "ring32_r22", "--phantom", "disks", "--medium", "2d",
                 "--attenuation", "0.6", "--attenuation-power", "1.2", "-o", str(out)]) == 0
    scan = load_scan(out)
    assert scan.medium == "2d" and scan.attenuation == Attenuation(0.6, 1.2)
    assert main(["reconstruct", str(out), "--method", "ubp", "--png", "none",
                 "-o", str(tmp_path / "i.h5")]) == 0
    capsys.readouterr()
    for bad, word in ((["--attenuation", "500"], "--attenuation"),
                      (["--attenuation", "0.5", "--attenuation-power", "3"],
                       "--attenuation-power"),
                      (["--attenuation", "granite"], "--attenuation"),
                      (["--attenuation-power", "1"], "--attenuation")):
        assert main(["reconstruct", str(out), "-o", str(tmp_path / "x.h5"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0]


def test_presets_carry_the_medium(tmp_path):
    from oatomo.pipeline.presets import load_preset

    good = tmp_path / "p.toml"
    good.write_text('name = "p"\nmedium = "2d"\nattenuation = "soft-tissue"\n')
    preset = load_preset(good)
    assert preset.settings()["medium"] == "2d"
    assert preset.settings()["attenuation"] == Attenuation.preset("soft-tissue")
    for text, word in (('attenuation = 500.0', "attenuation"),
                       ('attenuation = 0.5\nattenuation_power = 3.0', "attenuation_power"),
                       ('medium = "3d"', "medium")):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'name = "b"\n{text}\n')
        with pytest.raises(InputError, match=word):
            load_preset(bad)
