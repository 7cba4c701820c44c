"""Tests that close mutation-testing holes: each fails for a plausible one-line bug that
the rest of the suite lets through."""

import math

import numpy as np
import pytest

from oatomo import Acquisition, Grid, ring_array
from oatomo.evaluation.metrics import psnr
from oatomo.forward import simulate
from oatomo.recon.backprojection import _UBP_GAIN, backproject
from oatomo.setups import Setup


def numpy_ubp(sino, grid, sensors, acq):
    """Independent UBP of a uniform full ring: b = 2p - 2t dp/dt, weight cos/d, each
    sensor standing for the chord to its neighbour 2 R sin(pi / N), normalised by 2 pi, in
    Pa via the documented gain."""
    t = acq.times
    b = 2 * sino - 2 * t * np.gradient(sino.astype(np.float64), 1 / acq.fs, axis=-1)
    n = len(sensors.positions)
    radius = float(np.hypot(*sensors.positions[0]))
    arc = 2 * radius * math.sin(math.pi / n)
    c = acq.speed_of_sound
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape)
    for s in range(n):
        (sx, sy), (nx, ny) = sensors.positions[s], sensors.normals[s]
        d = np.hypot(X - sx, Y - sy)
        w = np.maximum(((X - sx) * nx + (Y - sy) * ny) / d, 0) / d
        img += w * np.interp(d / c, t, b[s], left=0.0, right=0.0)
    return img * arc / (2 * math.pi) * (4 * math.pi * c / grid.dx) * _UBP_GAIN


def test_ubp_matches_numpy_reference():
    grid = Grid(32, 0.008)
    sensors = ring_array(24, 0.012)
    acq = Acquisition(20e6, 400, speed_of_sound=1500.0)
    sino = np.random.default_rng(3).standard_normal((24, 400)).astype(np.float32)
    ours = backproject(sino, grid, sensors, acq, method="ubp")
    ref = numpy_ubp(sino, grid, sensors, acq)
    np.testing.assert_allclose(ours, ref, atol=2e-4 * np.abs(ref).max())


def test_ubp_disk_amplitude_as_documented():
    """The documented calibration: a 3.84 mm-radius unit disk on 128 x 128 at 0.1 mm with
    a 256-sensor ring reconstructs to about 1 at its centre."""
    grid = Grid(128, 0.0128)
    sensors = ring_array(256, 0.0225)
    acq = Acquisition(40e6, 1400)
    X, Y = grid.coordinates()
    p0 = (np.hypot(X, Y) <= 3.84e-3).astype(np.float32)
    img = backproject(simulate(p0, grid, sensors, acq), grid, sensors, acq, method="ubp")
    centre = float(img[60:68, 60:68].mean())
    assert 0.9 < centre < 1.1, centre


def test_normals_turn_with_the_angular_errors_and_rotation():
    ring = ring_array(64, 0.02)
    true = ring.perturbed(angular_std=0.05, rotation=0.4, seed=1)
    inward = -true.positions / np.hypot(*true.positions.T)[:, None]
    np.testing.assert_allclose(true.normals, inward, atol=1e-12)
    # an array whose normals are not radial: they turn by the same angle as the positions
    tangent = np.stack([-ring.positions[:, 1], ring.positions[:, 0]], 1) / 0.02
    arr = type(ring)(ring.positions, tangent).perturbed(angular_std=0.05, rotation=-1.0,
                                                        seed=2)
    expected = np.stack([-arr.positions[:, 1], arr.positions[:, 0]], 1) / 0.02
    np.testing.assert_allclose(arr.normals, expected / np.hypot(*expected.T)[:, None],
                               atol=1e-9)


def _setup(**pert):
    return Setup(name="t", array=ring_array(2048, 0.02), acquisition=Acquisition(20e6, 64),
                 grid=Grid(16, 0.008), **pert)


def test_draw_spreads_match_the_setup():
    """Each per-sensor error has the setup's spread; the global rotation's spread over
    scans is rotation_std (each error ignored or swapped would show)."""
    r0 = 0.02
    radial = _setup(radial_std=1e-4).draw(0)
    np.testing.assert_allclose(np.std(np.hypot(*radial.positions.T) - r0), 1e-4, rtol=0.08)
    ang = _setup(angular_std=0.01).draw(0)
    d_angle = np.angle(np.exp(1j * (np.arctan2(*ang.positions.T[::-1])
                                    - np.arange(2048) * 2 * np.pi / 2048)))
    np.testing.assert_allclose(np.std(d_angle), 0.01, rtol=0.08)
    np.testing.assert_allclose(np.hypot(*ang.positions.T), r0, rtol=1e-12)
    jit = _setup(jitter_std=5e-5).draw(0)
    np.testing.assert_allclose(np.std(jit.positions - ring_array(2048, r0).positions), 5e-5,
                               rtol=0.08)
    small = Setup(name="t", array=ring_array(8, r0), acquisition=Acquisition(20e6, 64),
                  grid=Grid(16, 0.008), rotation_std=0.02)
    rot = [np.arctan2(*small.draw(s).positions[0][::-1]) for s in range(400)]
    np.testing.assert_allclose(np.std(rot), 0.02, rtol=0.15)


def test_draw_golden_values():
    """The draw order (sub-seed first, then global offset and rotation; radial, angular,
    then jitter per sensor) is part of every dataset's identity: frozen here."""
    s = Setup(name="t", array=ring_array(4, 0.02), acquisition=Acquisition(20e6, 64),
              grid=Grid(16, 0.008), radial_std=1e-4, angular_std=0.01, jitter_std=2e-5,
              offset_std=1e-4, rotation_std=0.01)
    got = s.draw(7).positions
    np.testing.assert_allclose(got, GOLDEN_DRAW, rtol=0, atol=1e-12)


GOLDEN_DRAW = np.array([[0.020172374202247993, -0.0002522021095096449],
                        [-0.0001390782501383737, 0.020003357152960956],
                        [-0.020112798509567414, 0.00016209662340018884],
                        [-0.00020707194591755923, -0.01991647368153292]])


def test_loss_uses_beta_and_gamma():
    torch = pytest.importorskip("torch")
    from oatomo.learn import MultiDecoderIVAE, MultiEncoderIVAE, VAEConfig

    x = torch.rand((6, 2, 8, 8), generator=torch.Generator().manual_seed(0))
    env = torch.tensor([0, 1, 0, 1, 0, 1])
    for cls in (MultiDecoderIVAE, MultiEncoderIVAE):
        model = cls(VAEConfig(in_shape=(2, 8, 8), latent_dim=4, channels=(4, 8), hidden=16,
                              n_envs=2, beta=0.3, gamma=2.5), seed=0)
        t = model.loss(x, env, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(t["total"], t["reconstruction"] + 0.3 * t["kl"]
                                   + 2.5 * t["invariance"])
        if cls is MultiEncoderIVAE:
            torch.testing.assert_close(t["invariance"], t["invariance_reconstruction"]
                                       + 0.3 * t["invariance_kl"])


def test_psnr_squares_the_data_range():
    rng = np.random.default_rng(0)
    target = rng.random((16, 16))
    pred = target + 0.05 * rng.standard_normal((16, 16))
    mse = np.mean((pred - target) ** 2)
    assert psnr(pred, target, data_range=3.0) == pytest.approx(10 * np.log10(9.0 / mse))
    assert psnr(pred, target, data_range=3.0) - psnr(pred, target, data_range=1.0) == \
        pytest.approx(20 * np.log10(3.0))


def test_refinement_is_scale_equivariant():
    """The model sees each channel divided by its maximum; its output comes back times the
    first channel's maximum (Pa), so scaling the input by 4 scales the refined image by 4
    (exact in float32: powers of two)."""
    pytest.importorskip("torch")
    from oatomo.learn.conv import ConvMultiDecoderIVAE, ConvVAEConfig
    from oatomo.refine import Refiner

    model = ConvMultiDecoderIVAE(ConvVAEConfig(in_channels=1, width=4, depth=1, latent_dim=2,
                                               n_envs=1), seed=0)
    ref = Refiner(model=model, kind="multi-decoder", inputs=("ubp",), env_names=("a",))
    x = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    a = ref.refine_images(x, n_samples=0).refined
    b = ref.refine_images(4 * x, n_samples=0).refined  # exact in float32
    np.testing.assert_array_equal(4 * a, b)
