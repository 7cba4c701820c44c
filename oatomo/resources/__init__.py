"""Files shipped inside the package: bundled setups, the trained refiner, the MNIST subset.

Found with :func:`importlib.resources.files`, so an installed wheel behaves like the
repository.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["resource_path", "default_model_path", "SETUPS", "MODELS"]

#: Sub-directories of the package's resources.
SETUPS = "setups"
MODELS = "models"


def resource_path(*parts: str) -> Path:
    """Filesystem path of a bundled resource (it need not exist).

    oatomo is installed as a directory (never zipped), so the resource is a real file.
    """
    node = files(__name__)
    for part in parts:
        node = node.joinpath(part)
    return Path(str(node))


def default_model_path(method: str | None = None) -> Path:
    """The refinement model shipped with oatomo for images of ``method``: for ``mb-tv``
    the TV refiner (the pipeline's default TV image of a ring, arc or linear array scan,
    ``make model-tv-refiner``), else the scanner-family refiner of UBP and DAS images
    (any 2-D ring or arc scan, ``make model``)."""
    if method == "mb-tv":
        return resource_path(MODELS, "tv_refiner.npz")
    return resource_path(MODELS, "family_refiner.npz")
