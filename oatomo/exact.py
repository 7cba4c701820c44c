"""Deprecated alias of :mod:`oatomo.recon.exact`, kept for one release."""

import warnings

from oatomo.recon.exact import *  # noqa: F403
from oatomo.recon.exact import __all__  # noqa: F401

warnings.warn("oatomo.exact is deprecated; use oatomo.recon.exact", DeprecationWarning,
              stacklevel=2)
