"""Self-calibration: sensor positions and speed of sound estimated from the scan itself.

A sensor's record fixes the *distances* from the sensor to the absorbers (in units of
``c t``), so per-sensor position errors are visible in the data; a rigid motion of the
whole array and a common scaling of positions and speed of sound are not.
:func:`calibrate` estimates the visible part jointly with the image. The default
(``method="joint"``, :mod:`~oatomo.calibration.joint`):

1. **Speed of sound first.** At the coarsest level, a cross-validated 1-D search of ``c``
   (two interleaved folds, each predicted by the TV image of the other) brings a file
   that is off by a few percent within reach of the local steps.
2. **Alternating image and geometry steps, coarse to fine.** At each level (large pixels
   and low frequencies first) a few TV iterations with every sensor at its current
   estimate (warm-started; the TV weight three times a reconstruction's, so that the
   image explains less of the sensors' errors) alternate with one damped Gauss-Newton
   step per sensor on its own record with the image fixed: the records' derivatives with
   respect to each sensor's displacement along and across its line of sight come from one
   forward projection onto a virtual array of ``5 N`` points, and each sensor solves a 3 x 3 system
   (amplitude and two coordinates) under the prior. The first step of the coarsest level
   is a search along every line of sight over the prior box. The image absorbs part of
   each sensor's error (it was made from that sensor too), so each step recovers only part
   of the remaining error; an adaptive over-relaxation per sensor and coordinate makes up
   for it (:data:`~oatomo.calibration.joint.RELAX`). It can also hold a sensor at a
   wrong position whose record it fits there (a millimetre off, or where the file put
   it); ``reseat=True`` ends the finest level with a **held-out re-seat**
   (:func:`~oatomo.calibration.joint.heldout_reseat`): every sensor searched again along
   its line of sight over the prior box against the TV image of the other sensors (four
   interleaved folds), moved where its record fits that image better, and one more round
   of the finest level (about a quarter more time; not the default, as it changed the
   held-out benchmark's images by only +0.02 to +0.05 dB).
   The level before the finest ends with one **joint Gauss-Newton step**
   (:mod:`~oatomo.calibration.gauss_newton`): the records linearised about the last image
   and geometry, the image change (free on the grid), the gains, the displacements and
   ``ln c`` solved for at once by LSQR, so that a change of the image can no longer pass
   for a sensor's move (most of all the array's smooth deformations, which an image of the
   same sensors follows); on an array covering at least 300 deg the finest level ends
   with one more (``joint_steps``; 0 leaves both out).
3. **A Gaussian prior** ``N(nominal, prior_std^2)`` per coordinate (MAP), the noise level
   of each record taken from its residual.
4. **The gauge, fixed explicitly.** After every step the estimate is mapped onto the
   nominal array by the least-squares similarity transform (rotation, translation and
   scale). A rotation or translation of the array only moves the image, so it is set to
   that of the nominal array. A common scale of the positions is exchangeable with the
   speed of sound (positions, ``c`` and the image all scale together), so the scale the
   sensors ask for is moved into ``c``.

5. **What the data cannot identify.** Afterwards the estimate and the file's geometry
   predict held-out records at the coarsest level (each fold from the TV image of the
   other): :attr:`Calibration.heldout_misfit`. An estimate that is no better
   (:attr:`Calibration.improves_on_file` False) is not used by the default pipeline. On
   an array covering less than half a turn an estimate of ``c`` more than
   :data:`~oatomo.calibration.estimate.MAX_SPEED_CHANGE` from the file's is taken as a
   run-off along the scale-speed trade-off (the records hold ``c`` well, but this
   estimator does not find it there): the file's ``c`` is kept and the
   positions are calibrated again at it (at once, when ``c`` has already moved
   :data:`~oatomo.calibration.estimate.EARLY_SPEED_FACTOR` times that far by the end of
   the coarsest level: the same estimate, one schedule less). A sparse array (sensors
   :data:`~oatomo.calibration.estimate.SPARSE_PITCH` or more apart) is calibrated with a
   note that its positions are weakly identifiable (:attr:`Calibration.notes`).

``method="search"`` keeps the per-sensor candidate search against held-out images
(:mod:`~oatomo.calibration.search`: each fold of sensors fitted against the TV image of
the others, on a grid of candidate positions, coarse to fine). It is slower (10-30 TV
reconstructions) and no better on the held-out benchmark (docs/results/calibration.rst).

``t0`` is taken from the file: for a ring it trades against ``c`` and the mean radius
almost exactly (a common time shift is a common radial shift), so it is not estimated.

The uncertainty of each sensor's estimate is the Laplace approximation of the posterior
at the optimum: the inverse of the curvature of (data term + prior term), with the data
term's noise level estimated from the sensor's residual and ``T_eff``, the number of
independent samples of its band-limited record.

The joint method keeps its last image and a bound on ``||A||^2`` at the estimated
geometry (:attr:`Calibration.image`, :attr:`Calibration.operator_norm_sq`: the bound its
TV steps used, less the margin they add for the moving sensors): the TV that
:func:`oatomo.reconstruct` runs after calibrating starts from that image with that step
(at most :data:`oatomo.pipeline.policy.WARM_ITERS` iterations, fewer once its objective
stalls: :data:`oatomo.pipeline.policy.WARM_STALL_TOL`).

The modules, one job each:

* :mod:`~oatomo.calibration.result`: :class:`Calibration` and :func:`apply_calibration`.
* :mod:`~oatomo.calibration.gauge`: the similarity transform that fixes the gauge and
  :func:`rigid_error`.
* :mod:`~oatomo.calibration.levels`: the coarse-to-fine schedule and its band limits.
* :mod:`~oatomo.calibration.joint`: the joint estimate (the default).
* :mod:`~oatomo.calibration.search`: held-out folds, the per-sensor search, the search of
  ``c`` and the scout round.
* :mod:`~oatomo.calibration.prior`: the Gaussian prior (caller, setup, default or data).
* :mod:`~oatomo.calibration.estimate`: :func:`calibrate_sinogram` and :func:`calibrate`.
* :mod:`~oatomo.calibration.check`: the position check, :func:`check_positions`.
"""

from oatomo.calibration.check import (
    CHECK_BOX_REL,
    CHECK_FOLDS,
    CHECK_ITER,
    CHECK_PIXELS,
    PositionCheck,
    check_positions,
)
from oatomo.calibration.estimate import (
    FINE_FOLDS,
    MIN_CORRELATION,
    MIN_SENSORS,
    OBJECT_COVER,
    calibrate,
    calibrate_sinogram,
    calibration_grid,
)
from oatomo.calibration.gauge import rigid_error, similarity_transform
from oatomo.calibration.levels import ACROSS_STD, BOX_STD, MAX_HALF_ACROSS, TEFF_SCALE
from oatomo.calibration.prior import DEFAULT_PRIOR_REL, SCOUT_RANGE, SCOUT_REL
from oatomo.calibration.result import Calibration, apply_calibration

__all__ = ["Calibration", "calibrate", "calibrate_sinogram", "calibration_grid",
           "apply_calibration", "OBJECT_COVER",
           "check_positions", "PositionCheck", "similarity_transform", "rigid_error",
           "MIN_SENSORS", "FINE_FOLDS", "MIN_CORRELATION", "BOX_STD", "ACROSS_STD",
           "MAX_HALF_ACROSS", "TEFF_SCALE", "DEFAULT_PRIOR_REL", "SCOUT_REL", "SCOUT_RANGE",
           "CHECK_FOLDS", "CHECK_ITER", "CHECK_BOX_REL", "CHECK_PIXELS"]
