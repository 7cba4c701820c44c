"""Deprecated alias of :mod:`oatomo.recon.registry`, kept for one release."""

import warnings

from oatomo.recon.registry import *  # noqa: F403
from oatomo.recon.registry import __all__  # noqa: F401

warnings.warn("oatomo.methods is deprecated; use oatomo.recon.registry", DeprecationWarning,
              stacklevel=2)
