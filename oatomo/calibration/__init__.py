"""Self-calibration: sensor positions and speed of sound estimated from the scan itself.

A sensor's record fixes the *distances* from the sensor to the absorbers (in units of
``c t``), so per-sensor position errors are visible in the data; a rigid motion of the
whole array and a common scaling of positions and speed of sound are not.
:func:`calibrate` estimates the visible part jointly with the image:

1. **Held-out folds against lock-in.** The sensors are split into interleaved folds (every
   ``n_folds``-th sensor in angular order). Each fold's sensors are fitted against a TV
   image reconstructed *without* them, so the image cannot explain a sensor's data at the
   sensor's current position simply because it was made from it.
2. **Per-sensor search, coarse to fine.** For each sensor, the normalised correlation
   between its (band-limited) record and the record the held-out image predicts is
   evaluated on a grid of candidate positions around the current estimate (one forward
   projection of the image onto a "virtual array" of all candidates of all sensors at
   once); a quadratic fit around the best candidate gives the sub-grid optimum and the
   curvature. Levels go from large pixels and low frequencies, where the misfit is smooth
   in the positions and the search box is wide, to the full grid and band. The coarsest
   level searches along each sensor's line of sight only (a time shift of its record,
   well seen); the finer levels also search across it, over
   +-:data:`~oatomo.calibration.levels.ACROSS_STD` prior standard deviations (the across
   coordinate is seen only through off-centre structure, about object size / array
   radius as strongly, and converges slowly in small steps).
3. **A Gaussian prior** ``N(nominal, prior_std^2)`` per coordinate: the candidates lie
   within :data:`~oatomo.calibration.levels.BOX_STD` standard deviations of the nominal
   position, and the selected position minimises the data term (Gaussian likelihood,
   noise level taken from the residual) plus the prior term (MAP).
4. **The gauge, fixed explicitly.** After every round the estimate is mapped onto the
   nominal array by the least-squares similarity transform (rotation, translation and
   scale). A rotation or translation of the array only moves the image, so it is set to
   that of the nominal array. A common scale of the positions is exchangeable with the
   speed of sound (positions, ``c`` and the image all scale together), so the scale the
   sensors ask for is moved into ``c``: this is how the speed of sound is estimated,
   after a cross-validated 1-D search that brings it within the search box first.

``t0`` is taken from the file: for a ring it trades against ``c`` and the mean radius
almost exactly (a common time shift is a common radial shift), so it is not estimated.

The uncertainty of each sensor's estimate is the Laplace approximation of the posterior
at the optimum: the inverse of the curvature of (data term + prior term), with the data
term's noise level estimated from the sensor's residual and ``T_eff``, the number of
independent samples of its band-limited record.

The modules, one job each:

* :mod:`~oatomo.calibration.result`: :class:`Calibration` and :func:`apply_calibration`.
* :mod:`~oatomo.calibration.gauge`: the similarity transform that fixes the gauge and
  :func:`rigid_error`.
* :mod:`~oatomo.calibration.levels`: the coarse-to-fine schedule and its band limits.
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
    calibrate,
    calibrate_sinogram,
)
from oatomo.calibration.gauge import rigid_error, similarity_transform
from oatomo.calibration.levels import ACROSS_STD, BOX_STD, MAX_HALF_ACROSS, TEFF_SCALE
from oatomo.calibration.prior import DEFAULT_PRIOR_REL, SCOUT_RANGE, SCOUT_REL
from oatomo.calibration.result import Calibration, apply_calibration

__all__ = ["Calibration", "calibrate", "calibrate_sinogram", "apply_calibration",
           "check_positions", "PositionCheck", "similarity_transform", "rigid_error",
           "MIN_SENSORS", "FINE_FOLDS", "MIN_CORRELATION", "BOX_STD", "ACROSS_STD",
           "MAX_HALF_ACROSS", "TEFF_SCALE", "DEFAULT_PRIOR_REL", "SCOUT_REL", "SCOUT_RANGE",
           "CHECK_FOLDS", "CHECK_ITER", "CHECK_BOX_REL", "CHECK_PIXELS"]
