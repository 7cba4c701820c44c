"""Units of images: the initial pressure in Pa, or arbitrary units where an image is
proportional to it only up to an unknown factor (which methods give which is recorded in
:data:`oatomo.recon.registry.METHODS`)."""

__all__ = ["UNITS_PA", "UNITS_ARBITRARY"]

#: Units of an image whose values are the initial pressure: a uniform disk of p0 = 1 Pa
#: reads 1 inside (measured on a 256-sensor ring: FBP 1.00, TV 1.02, Tikhonov 0.91).
UNITS_PA = "Pa"

#: Units of an image proportional to the initial pressure only up to an unknown factor
#: (the same disk reads 2.26 in UBP, whose weights do not match the slab model's
#: amplitude, and about 0 inside in DAS, a band-passed, bipolar image).
UNITS_ARBITRARY = "a.u."
