"""Reconstruction: the method registry, backprojection, exact inversion, model-based
inversion and autofocus."""

from oatomo.recon.backprojection import backproject

__all__ = ["backproject"]
