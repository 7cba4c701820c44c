"""Deprecated alias of :mod:`oatomo.pipeline.presets`, kept for one release."""

import warnings

from oatomo.pipeline.presets import *  # noqa: F403
from oatomo.pipeline.presets import __all__  # noqa: F401

warnings.warn("oatomo.presets is deprecated; use oatomo.pipeline.presets", DeprecationWarning,
              stacklevel=2)
