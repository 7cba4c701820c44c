"""The delay-and-sum summation shared by every backprojection (DAS, UBP, exact FBP).

:func:`oatomo.recon.backprojection.backproject` and :func:`oatomo.recon.exact.fbp_circular`
validate and filter the signals, then call :func:`delay_and_sum`.
"""

from __future__ import annotations

import numpy as np

from oatomo import kernels as K
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.speed_map import SpeedMap


def delay_and_sum(frames: np.ndarray, grid: Grid, sensors: SensorArray,
                  acquisition: Acquisition, *, obliquity: bool = False,
                  speed_map: SpeedMap | None = None) -> np.ndarray:
    """Sum each sensor's (already filtered) signal at the time of flight to every pixel.

    Parameters
    ----------
    frames
        (F, N, T) float32 signals, validated by the caller.
    grid, sensors, acquisition
        Output grid, sensor positions and the sampling of ``frames``.
    obliquity
        Weight each term by ``cos(theta) / |r - r_s|`` (the UBP solid-angle weight).
    speed_map
        Two speeds of sound (:class:`oatomo.speed_map.SpeedMap`): the times of flight of
        straight two-segment rays (with its ``c0``); None: the acquisition's one speed.

    Returns
    -------
    numpy.ndarray
        (F, n, n) float32.
    """
    n_f, n_s, n_t = frames.shape
    xs = grid.x.astype(np.float32)
    ys = grid.y.astype(np.float32)
    sens = np.ascontiguousarray(sensors.positions, dtype=np.float32)
    t0fs = np.float32(acquisition.t0 * acquisition.fs)
    c = acquisition.speed_of_sound if speed_map is None else speed_map.c0
    fs_over_c = np.float32(acquisition.fs / c)
    normals = np.ascontiguousarray(sensors.normals, dtype=np.float32)
    K.check_finite(sensor_positions=sens, sensor_normals=normals, t0_times_fs=t0fs,
                   fs_over_speed_of_sound=fs_over_c, grid=xs)
    if n_f == 1 or obliquity:
        out = np.zeros((n_f,) + grid.shape, np.float32)
        padded = np.zeros((n_s, n_t + 3), np.float32)
        for f in range(n_f):
            padded[:, 1:n_t + 1] = frames[f]
            if speed_map is None:
                K.das(padded, xs, ys, sens, obliquity, normals, t0fs, fs_over_c, out[f])
            else:
                K.das_region(padded, xs, ys, sens, obliquity, normals, t0fs, fs_over_c,
                             speed_map.kernel_params(), out[f])
        return out
    tf = np.zeros((n_s, n_t + 3, n_f), np.float32)
    tf[:, 1:n_t + 1, :] = np.moveaxis(frames, 0, -1)
    acc = np.zeros(grid.shape + (n_f,), np.float32)
    if speed_map is None:
        K.das_frames(tf, xs, ys, sens, t0fs, fs_over_c, acc)
    else:
        K.das_frames_region(tf, xs, ys, sens, t0fs, fs_over_c, speed_map.kernel_params(),
                            acc)
    return np.ascontiguousarray(np.moveaxis(acc, -1, 0))
