"""Volumes: 3-D grids and sensor arrays, the 3-D forward model and its reconstructions.

* :mod:`oatomo.volume.geometry`: :class:`VolumeGrid`, :class:`SensorArray3D` and the
  arrays :func:`hemisphere_array`, :func:`spherical_cap_array`, :func:`planar_array`;
* :mod:`oatomo.volume.elements`: flat square or disc elements as points on their faces
  (:func:`element_points_3d`), used by the operators' ``element_size``;
* :mod:`oatomo.volume.forward`: the point-sensor forward model :class:`VolumeOperator`
  (exact adjoint) and :func:`simulate_volume`;
* :mod:`oatomo.volume.recon`: delay-and-sum and universal backprojection
  (:func:`backproject_volume`), Tikhonov and TV (:func:`reconstruct_volume_model_based`);
* :mod:`oatomo.volume.kernels`: their Numba kernels.
"""

from oatomo.volume.elements import ELEMENT_SHAPES, element_points_3d
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

__all__ = ["ELEMENT_SHAPES", "VOLUME_METHODS", "element_points_3d", "SensorArray3D",
           "backproject_volume",
           "reconstruct_volume_model_based", "VolumeGrid", "VolumeOperator", "as_sensors3d",
           "hemisphere_array", "planar_array", "simulate_volume", "spherical_cap_array"]
