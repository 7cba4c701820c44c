"""Volume reconstruction: delay-and-sum, universal backprojection, Tikhonov and TV.

* :func:`backproject_volume`: DAS ``vol(r) = sum_s p_s(|r - r_s| / c)`` and UBP (Xu & Wang
  2005), both on one Numba kernel (:func:`oatomo.volume.kernels.das_volume`);
* :func:`reconstruct_volume_model_based`: the Tikhonov and TV solvers of
  :func:`oatomo.recon.model_based.solve_model_based` on :class:`VolumeOperator`.

Every function takes one frame (N, T) or several (..., N, T) and returns volumes
(..., nz, ny, nx) in the axis order z, y, x of :class:`VolumeGrid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numba
import numpy as np

from oatomo.errors import InputError
from oatomo.forward import bandpass, check_sinogram
from oatomo.geometry import Acquisition
from oatomo.kernels import check_finite
from oatomo.recon.backprojection import ubp_filter
from oatomo.recon.model_based import MODEL_BASED_METHODS, solve_model_based
from oatomo.volume import kernels as K
from oatomo.volume.elements import element_points_3d
from oatomo.volume.forward import VolumeOperator, check_volume_geometry
from oatomo.volume.geometry import VolumeGrid

__all__ = ["backproject_volume", "reconstruct_volume_model_based", "VOLUME_METHODS"]

#: The ``method`` names of :func:`backproject_volume`.
VOLUME_METHODS = ("das", "ubp")


def backproject_volume(
    sinogram: np.ndarray,
    grid: VolumeGrid,
    sensors: Any,
    acquisition: Acquisition,
    method: str = "das",
    band: tuple[float | None, float | None] | None = None,
    *,
    speed_of_sound: float | None = None,
    element_size: float | None = None,
    element_shape: str = "square",
) -> np.ndarray:
    """Reconstruct a volume by delay-and-sum or universal backprojection.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T) for several frames.
    grid
        Output :class:`VolumeGrid`.
    sensors
        3-D sensor positions (a :class:`SensorArray3D` or (N, 3) positions in metres).
    acquisition
        Sampling of the signals.
    method
        ``"das"``: ``vol(r) = sum_s p_s(|r - r_s| / c)``, linear interpolation in time.
        ``"ubp"``: universal backprojection of ``b = 2p - 2t dp/dt``::

            p0(r) = sum_s w_s(r) b_s(|r - r_s| / c) / sum_s w_s(r),
            w_s(r) = a_s max(cos theta_s, 0) / |r - r_s|^2

        with ``a_s`` the sensor's area and ``theta_s`` the angle between its normal and
        the direction to ``r``: ``w_s`` is the solid angle the sensor's patch subtends at
        ``r``, and the sum of the weights is the total solid angle (``4 pi`` inside a
        closed surface, where UBP is exact; about ``2 pi`` at the centre of a hemisphere).
        The volume comes out in the units of ``p0`` (Pa).
    band
        Optional ``(f_low, f_high)`` Butterworth band-pass applied first (Hz).
    speed_of_sound
        Override the acquisition's speed of sound (m/s).
    element_size, element_shape
        Flat elements: the side of a square or the diameter of a disc in metres
        (:func:`oatomo.volume.elements.element_points_3d`). Each signal is backprojected
        from the points of its element's face with their weights (DAS: the weighted mean
        of the points' terms, the adjoint of the forward model's element; UBP: the
        element's area shared among its points), so the element's directivity weights
        the sum, as :func:`oatomo.backproject` does in 2-D. None: point sensors.

    Returns
    -------
    numpy.ndarray
        float32 (nz, ny, nx), or (..., nz, ny, nx) for multi-frame input.

    Notes
    -----
    Memory: the output volume and the signals' interpolation pairs (twice their size);
    the weights are computed on the fly, never stored per voxel and sensor. Elements of
    ``m`` points cost ``m`` point sensors each.
    """
    if method not in VOLUME_METHODS:
        raise InputError(f"unknown volume reconstruction method {method!r}; choose from "
                         f"{', '.join(VOLUME_METHODS)}")
    grid, sensors, acquisition = check_volume_geometry(grid, sensors, acquisition)
    y = check_sinogram(sinogram, sensors, acquisition)
    if speed_of_sound is not None:
        if not (speed_of_sound > 0 and math.isfinite(speed_of_sound)):
            raise InputError(f"speed of sound must be > 0 m/s, got {speed_of_sound}")
        acquisition = replace(acquisition, speed_of_sound=float(speed_of_sound))
    y = bandpass(y, acquisition.fs, band)
    lead = y.shape[:-2]
    n_s, n_t = y.shape[-2:]
    frames = y.reshape((-1, n_s, n_t))
    xs, ys, zs = (a.astype(np.float32) for a in (grid.x, grid.y, grid.z))
    if element_size is None:
        points, w = sensors.positions[:, None, :], np.ones(1)
    else:
        points, w = element_points_3d(sensors, element_size, acquisition, element_shape)
    m = len(w)
    sens = np.ascontiguousarray(points.reshape(-1, 3), dtype=np.float32)
    normals = np.ascontiguousarray(np.repeat(sensors.normals, m, axis=0), dtype=np.float32)
    owner = np.repeat(np.arange(n_s, dtype=np.int64), m)
    scale = np.tile(w, n_s).astype(np.float32)  # DAS: the weighted mean over each face
    weighted = method == "ubp"
    # the areas only matter relative to each other (UBP divides by their weighted sum)
    areas = (np.repeat(sensors.areas / sensors.areas.max(), m) * scale).astype(np.float32)
    t0fs = np.float32(acquisition.t0 * acquisition.fs)
    fs_over_c = np.float32(acquisition.fs / acquisition.speed_of_sound)
    check_finite(sensor_positions=sens, sensor_normals=normals, t0_times_fs=t0fs,
                 fs_over_speed_of_sound=fs_over_c, grid=xs)
    n_rows = grid.shape[0] * grid.shape[1]
    # blocks of up to 16 rows share each sensor's signal in cache; at least 4 per thread
    rows_per_block = max(1, min(64, n_rows // (4 * numba.get_num_threads())))
    out = np.empty((len(frames),) + grid.shape, np.float32)
    pairs = None
    for f, frame in enumerate(frames):
        sig = ubp_filter(frame, acquisition) if weighted else frame
        if pairs is None:  # after the filter's temporaries are gone
            pairs = np.empty((n_s, n_t + 3), np.complex64)
        K.interpolation_pairs(sig, pairs)
        del sig
        K.das_volume(pairs, owner, xs, ys, zs, sens, normals, areas,
                     scale, weighted, t0fs, fs_over_c, rows_per_block, out[f])
    return out.reshape(lead + grid.shape)


def reconstruct_volume_model_based(
    sinogram: np.ndarray,
    grid: VolumeGrid,
    sensors: Any,
    acquisition: Acquisition,
    *,
    method: str = "tikhonov",
    lam: float | None = None,
    n_iter: int = 50,
    nonneg: bool = True,
    x0: np.ndarray | None = None,
    tol: float = 1e-4,
    response: Any = None,
    element_size: float | None = None,
    element_shape: str = "square",
    on_iteration: Callable[[int, np.ndarray], Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Model-based volume reconstruction with Tikhonov or total-variation regularisation.

    The solvers are those of the 2-D images (:func:`oatomo.recon.model_based.
    solve_model_based`: LSQR for ``min ||A x - y||^2 + lam ||x||^2``, monotone FISTA with
    a constrained TV proximal step for ``min 1/2 ||A x - y||^2 + lam TV(x)``) on the
    volume operator ``A`` (:class:`VolumeOperator`, with ``response`` when given); TV is
    the isotropic total variation of the volume.

    Parameters
    ----------
    sinogram
        (N, T) signals (Pa), or (..., N, T): each frame is solved on its own, with the
        same operator (its norm is estimated once).
    grid, sensors, acquisition
        The geometry assumed for the reconstruction.
    method, lam, n_iter, nonneg, x0, tol, on_iteration
        As :func:`oatomo.reconstruct_model_based` (``lam`` None: scaled to the data).
    response
        The sensors' impulse response, made part of ``A``.
    element_size, element_shape
        Flat elements (square side or disc diameter in metres), made part of ``A``
        (:class:`VolumeOperator`); None: point sensors.

    Returns
    -------
    volume : numpy.ndarray
        float32 (nz, ny, nx), or (..., nz, ny, nx).
    record : dict
        The solver's record (of the last frame for multi-frame input), with
        ``"n_frames"``.
    """
    if method not in MODEL_BASED_METHODS:
        raise InputError(f"unknown model-based method {method!r}; choose from "
                         f"{', '.join(MODEL_BASED_METHODS)}")
    op = VolumeOperator(grid, sensors, acquisition, response=response,
                        element_size=element_size, element_shape=element_shape)
    y = check_sinogram(sinogram, op.sensors, acquisition)
    lead = y.shape[:-2]
    frames = y.reshape((-1,) + y.shape[-2:])
    out = np.empty((len(frames),) + grid.shape, np.float32)
    record: dict[str, Any] = {}
    for f, frame in enumerate(frames):
        out[f], record = solve_model_based(op, frame, method=method, lam=lam, n_iter=n_iter,
                                           nonneg=nonneg, x0=x0, tol=tol,
                                           on_iteration=on_iteration)
    record["n_frames"] = len(frames)
    return out.reshape(lead + grid.shape), record
