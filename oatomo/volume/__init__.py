"""Volumes: 3-D grids and sensor arrays, the 3-D forward model and its reconstructions.

* :mod:`oatomo.volume.geometry`: :class:`VolumeGrid`, :class:`SensorArray3D` and the
  arrays :func:`hemisphere_array`, :func:`spherical_cap_array`, :func:`planar_array`;
* :mod:`oatomo.volume.forward`: the point-sensor forward model :class:`VolumeOperator`
  (exact adjoint) and :func:`simulate_volume`;
* :mod:`oatomo.volume.recon`: delay-and-sum and universal backprojection
  (:func:`backproject_volume`), Tikhonov and TV (:func:`reconstruct_volume_model_based`);
* :mod:`oatomo.volume.kernels`: their Numba kernels.
"""

from oatomo.volume.forward import VolumeOperator, simulate_volume
from oatomo.volume.geometry import (
    SensorArray3D,
    VolumeGrid,
    as_sensors3d,
    hemisphere_array,
    planar_array,
    spherical_cap_array,
)
from oatomo.volume.recon import (
    VOLUME_METHODS,
    backproject_volume,
    reconstruct_volume_model_based,
)

__all__ = ["VOLUME_METHODS", "SensorArray3D", "backproject_volume",
           "reconstruct_volume_model_based", "VolumeGrid", "VolumeOperator", "as_sensors3d",
           "hemisphere_array", "planar_array", "simulate_volume", "spherical_cap_array"]
