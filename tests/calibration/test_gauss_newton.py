"""The joint Gauss-Newton step (image, gains, positions, speed of sound at once): the
stacked system's adjoint (dot-product test), known displacements and a known speed of
sound recovered in one step, and the step's place in the calibration."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from oatomo import Acquisition, Grid, ring_array
from oatomo.calibration import calibrate_sinogram, rigid_error, similarity_transform
from oatomo.calibration.estimate import angular_coverage
from oatomo.calibration.gauge import to_gauge
from oatomo.calibration.gauss_newton import joint_gauss_newton_step, stacked_system
from oatomo.calibration.joint import (
    COARSE_JOINT_ITERS,
    JOINT_STEP_COVERAGE,
    JOINT_STEPS,
    ROUNDS,
    joint_calibration,
)
from oatomo.calibration.levels import schedule
from oatomo.forward import simulate
from oatomo.phantoms import disks
from oatomo.recon.operators import operator_norm_sq
from oatomo.response import DetectorResponse

GRID = Grid(48, 0.0096)
ACQ = Acquisition(20e6, 400, speed_of_sound=1500.0)
RING = ring_array(24, 0.016)
RESPONSE = DetectorResponse(centre_frequency=3e6, bandwidth=1.2)


def _level(ring, positions: np.ndarray, c: float, response=None, seed: int = 3):
    """The full-band (finest) level of a noise-free scan of disks by ``ring``'s sensors
    at ``positions`` and speed of sound ``c``, with the file's ``ACQ``; the true image."""
    p0 = disks(GRID, seed=seed, count=5)
    y = simulate(p0, GRID, replace(ring, positions=positions),
                 replace(ACQ, speed_of_sound=c), response=response)
    return schedule(y, ACQ, GRID, 0.1e-3, 1)[0], p0


@pytest.mark.parametrize("damping, move", [(0.0, True), (0.3, True), (0.3, False)])
def test_stacked_system_adjoint_is_exact(damping, move) -> None:
    """<L z, v> = <z, L^T v> for random z, v (the image block's float32 projections set
    the tolerance), with and without the image change's Tikhonov rows, with and without
    the displacements."""
    pos = RING.positions.astype(np.float64)
    level, p0 = _level(RING, pos, 1500.0)
    norm = operator_norm_sq(GRID, RING, ACQ, n_iter=5)
    L, b, unpack, misfit = stacked_system(level, p0, pos, pos, 0.1e-3, norm, None,
                                          image_damping=damping, move_sensors=move)
    n_p = 48 if move else 0
    assert L.shape == (level.data.size + n_p + (GRID.n ** 2 if damping else 0),
                       GRID.n ** 2 + 24 + n_p + 1)
    rng = np.random.default_rng(0)
    z = rng.standard_normal(L.shape[1])
    v = rng.standard_normal(L.shape[0])
    lhs, rhs = float(L.matvec(z) @ v), float(z @ L.rmatvec(v))
    assert lhs == pytest.approx(rhs, rel=1e-4)
    assert b.shape == (L.shape[0],) and misfit.shape == (24,)
    assert np.all(misfit < 1e-6)  # the true image at the true geometry fits the records
    dx, da, dp, dlnc = unpack(np.ones(L.shape[1]))
    assert dx.shape == GRID.shape and da.shape == (24,) and dp.shape == (24, 2)


@pytest.mark.parametrize("displaced, c_rel", [(True, 0.0), (False, 0.005)])
def test_one_step_recovers_known_displacements_or_speed_of_sound(displaced, c_rel) -> None:
    """Records of 48 sensors displaced by 40-60 um (every direction), or of the file's
    array with a speed of sound 0.5 % above the file's (detector band 3 MHz, 120 %);
    linearised about the true image at the file's geometry, one joint step removes at
    least two thirds of the displacements (measured 47 -> 14 um; the rigid part is
    invisible), or all but 15 % of the speed of sound's error (measured 0.054 %)."""
    ring = ring_array(48, 0.016)
    nominal = ring.positions.astype(np.float64)
    d = np.zeros_like(nominal)
    if displaced:
        rng = np.random.default_rng(5)
        d = rng.standard_normal((48, 2))
        d *= (rng.uniform(40e-6, 60e-6, 48) / np.hypot(*d.T))[:, None]
    c_true = 1500.0 * (1 + c_rel)
    level, p0 = _level(ring, nominal + d, c_true, RESPONSE)
    norm = 1.1 * operator_norm_sq(GRID, ring, replace(ACQ, speed_of_sound=1450.0),
                                  n_iter=10, response=RESPONSE)
    new, c, info = joint_gauss_newton_step(level, p0, nominal, nominal, 0.1e-3, norm, None,
                                           RESPONSE)
    # c and the array's scale are one gauge (as the calibration maps it): the scale of the
    # similarity fit onto the file's array goes into c
    new, _, s, _ = to_gauge(new, nominal, nominal, np.zeros((48, 2, 2)), scale=True)
    truth_scale = similarity_transform(nominal + d, nominal)[0]
    c_err = abs(c * s / (c_true * truth_scale) - 1)
    if displaced:
        before = float(np.sqrt(np.mean(rigid_error(nominal, nominal + d) ** 2)))
        after = float(np.sqrt(np.mean(rigid_error(new, nominal + d) ** 2)))
        assert after < before / 3, (before, after)
        assert c_err < 2e-4
    else:
        assert c_err < 0.15 * c_rel, c_err
    assert info["lsqr_iters"] > 0 and info["step_rms"] > 0


def test_speed_step_holds_the_positions() -> None:
    """With ``move_sensors=False`` the step leaves every sensor where it is and still
    removes all but 15 % of a 0.5 % speed-of-sound error at the file's geometry
    (records of the file's array, linearised about the true image)."""
    nominal = RING.positions.astype(np.float64)
    level, p0 = _level(RING, nominal, 1500.0 * 1.005, RESPONSE)
    norm = 1.1 * operator_norm_sq(GRID, RING, replace(ACQ, speed_of_sound=1450.0),
                                  n_iter=10, response=RESPONSE)
    new, c, info = joint_gauss_newton_step(level, p0, nominal, nominal, 0.1e-3, norm, None,
                                           RESPONSE, move_sensors=False)
    assert np.array_equal(new, nominal) and info["step_rms"] == 0.0
    assert abs(c / (1500.0 * 1.005) - 1) < 0.15 * 0.005, c
    assert info["image_change"].shape == GRID.shape


def test_no_joint_step_and_bad_counts() -> None:
    """``joint_steps=0`` leaves the rounds alone (two history entries fewer: the steps
    after the finest level and before it), an arc of less than JOINT_STEP_COVERAGE gets
    only the coarse joint step by default, and a negative count is a one-line error."""
    from oatomo import InputError

    arc = ring_array(24, 0.016, arc=math.radians(200), start_angle=-math.radians(190))
    assert angular_coverage(arc.positions) < JOINT_STEP_COVERAGE
    y_arc = simulate(disks(GRID, seed=3, count=5), GRID, arc, ACQ, noise_std=0.01, seed=1)
    short = calibrate_sinogram(y_arc, arc, ACQ, GRID, n_levels=2, prior_std=0.1e-3,
                               speed_of_sound=False)
    assert len(short.history) == ROUNDS[0] + 1 + ROUNDS[1]
    assert [h["level"] for h in short.history] == [0] * (ROUNDS[0] + 1) + [1] * ROUNDS[1]
    y = simulate(disks(GRID, seed=3, count=5), GRID, RING, ACQ, noise_std=0.01, seed=1)
    kw = {"n_levels": 2, "prior_std": 0.1e-3, "speed_of_sound": False}
    on = calibrate_sinogram(y, RING, ACQ, GRID, **kw)
    off = calibrate_sinogram(y, RING, ACQ, GRID, joint_steps=0, **kw)
    assert len(on.history) == len(off.history) + JOINT_STEPS + 1 \
        == ROUNDS[0] + ROUNDS[1] + 2
    with pytest.raises(InputError, match="joint_steps"):
        calibrate_sinogram(y, RING, ACQ, GRID, joint_steps=-1, **kw)



def test_coarse_joint_step_in_the_calibration() -> None:
    """The joint step before the finest level: one round record at the coarser level,
    positions that differ from the calibration without it but stay in the prior box about
    the file's, the same bytes on a second run, and none with ``coarse_joint_iters=0``."""
    from oatomo.calibration.levels import BOX_STD

    y = simulate(disks(GRID, seed=3, count=5), GRID, RING, ACQ, noise_std=0.01, seed=1)
    levels = schedule(y, ACQ, GRID, 0.1e-3, 2)
    nominal = RING.positions.astype(np.float64)
    runs = [joint_calibration(levels, nominal, 1500.0, 0.1e-3, speed_of_sound=False,
                              joint_steps=0, coarse_joint_iters=k)
            for k in (0, COARSE_JOINT_ITERS, COARSE_JOINT_ITERS)]
    assert [h["level"] for h in runs[0][3]] == [0] * ROUNDS[0] + [1] * ROUNDS[1]
    assert [h["level"] for h in runs[1][3]] == [0] * (ROUNDS[0] + 1) + [1] * ROUNDS[1]
    assert runs[1][3][ROUNDS[0]]["round"] == ROUNDS[0]
    assert not np.array_equal(runs[0][0], runs[1][0])
    assert np.abs(runs[1][0] - nominal).max() <= BOX_STD * 0.1e-3 * math.sqrt(2) + 1e-12
    assert np.array_equal(runs[1][0], runs[2][0]) and np.array_equal(runs[1][4], runs[2][4])


def test_speed_steps_in_the_calibration() -> None:
    """Speed steps add a round each after the joint step, where ``c`` is estimated, and
    leave the positions of the calibration without them; none where ``c`` is held."""
    y = simulate(disks(GRID, seed=3, count=5), GRID, RING, ACQ, noise_std=0.01, seed=1)
    levels = schedule(y, ACQ, GRID, 0.1e-3, 2)
    nominal = RING.positions.astype(np.float64)
    runs = {(c, k): joint_calibration(levels, nominal, 1500.0, 0.1e-3, speed_of_sound=c,
                                      speed_steps=k)
            for c in (True, False) for k in (0, 2)}
    assert len(runs[True, 2][3]) == len(runs[True, 0][3]) + 2
    assert np.array_equal(runs[True, 2][0], runs[True, 0][0])
    assert runs[True, 2][3][-1]["speed_of_sound"] == runs[True, 2][1]
    assert len(runs[False, 2][3]) == len(runs[False, 0][3])
    assert runs[False, 2][1] == 1500.0


@pytest.mark.parametrize("c_rel", [0.0, 0.005])
def test_speed_probe_measures_a_speed_of_sound_error(c_rel) -> None:
    """At the file's geometry and the true image, the probe asks for the speed of sound's
    relative error (0.5 %: within 15 % of it; the records are linearised, a 1 % error
    gives 1.66 %) and for almost nothing when ``c`` is right."""
    from oatomo.calibration.joint import speed_probe

    nominal = RING.positions.astype(np.float64)
    level, p0 = _level(RING, nominal, 1500.0 * (1 + c_rel), RESPONSE)
    norm = 1.1 * operator_norm_sq(GRID, RING, replace(ACQ, speed_of_sound=1450.0),
                                  n_iter=10, response=RESPONSE)
    probe = speed_probe(level, p0, nominal, nominal, 0.1e-3, norm, 1500.0, None, RESPONSE)
    if c_rel:
        assert probe == pytest.approx(c_rel, rel=0.15)
    else:
        assert abs(probe) < 5e-4


def test_speed_probe_rule_keeps_the_file_speed(monkeypatch) -> None:
    """With a probe limit every short-aperture calibration exceeds (1e-9), the file's
    speed of sound is kept and the notes say why; with the default (no limit) the
    estimate stands."""
    import oatomo.calibration.estimate as E

    arc = ring_array(24, 0.016, arc=math.radians(150), start_angle=-math.radians(165))
    assert angular_coverage(arc.positions) < E.MIN_SPEED_COVERAGE
    y = simulate(disks(GRID, seed=3, count=5), GRID, arc,
                 replace(ACQ, speed_of_sound=1507.5), noise_std=0.01, seed=1)
    kw = {"n_levels": 2, "prior_std": 0.1e-3}
    free = calibrate_sinogram(y, arc, ACQ, GRID, **kw)
    assert free.speed_of_sound != 1500.0
    assert not any("records ask for" in n for n in free.notes)
    monkeypatch.setattr(E, "SPEED_PROBE_LIMIT", 1e-9)
    kept = calibrate_sinogram(y, arc, ACQ, GRID, **kw)
    assert kept.speed_of_sound == 1500.0
    assert any("records ask for" in n for n in kept.notes)
