"""The calibration tests' small case: a 32-sensor ring (r 22.5 mm) around six disks on a
64 x 64, 0.2 mm grid, recorded at 20 MHz with 0.5 % noise."""

from dataclasses import replace

import numpy as np

from oatomo import Acquisition, Grid, SensorArray, ring_array
from oatomo.forward import simulate
from oatomo.phantoms import disks

GRID = Grid(64, 0.0128)
ACQ = Acquisition(20e6, 512, speed_of_sound=1500.0)
NOMINAL = ring_array(32, 0.0225)
P0 = disks(GRID, seed=3, count=6)


def signals(true: SensorArray, c_true: float = 1500.0, seed: int = 0,
            acq: Acquisition = ACQ) -> np.ndarray:
    """The record of :data:`P0` by sensors at ``true`` in a medium at ``c_true``."""
    return simulate(P0, GRID, true, replace(acq, speed_of_sound=c_true), noise_std=0.005,
                    seed=seed)
