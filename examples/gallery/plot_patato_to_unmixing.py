"""
A PATATO file: reconstruct every wavelength, export, unmix
==========================================================

A two-wavelength scan in PATATO's HDF5 layout (``raw_data`` as (frames, wavelengths,
detectors, samples), ``GEOMETRY``, ``fs``, ``speedofsound``, ``wavelengths`` and the
detectors' impulse response ``irf``) is written here from a simulation, so the example needs
no download. oatomo reads it, removes the detector response (Wiener deconvolution),
reconstructs both wavelengths, writes an image file that keeps the wavelength axis (in
metres, with units on every dataset), and a linear spectral unmixing recovers the two
absorbers.
"""

import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

import oatomo
from oatomo.response import DetectorResponse

grid = oatomo.Grid(96, 0.0096)
ring = oatomo.ring_array(64, 0.02)
acq = oatomo.Acquisition(40e6, 1200, speed_of_sound=1500.0)
wavelengths = np.array([750e-9, 850e-9])

# two absorbers with different spectra (arbitrary units)
a = oatomo.phantoms.disk(grid, 1.5e-3, (-1.5e-3, 0.0))
b = oatomo.phantoms.disk(grid, 1.2e-3, (1.8e-3, 1.0e-3))
spectra = np.array([[1.0, 0.35],    # absorber a at 750, 850 nm
                    [0.3, 1.0]])    # absorber b
# the detectors' impulse response, sampled at fs with time zero in the middle (PATATO)
response = DetectorResponse(centre_frequency=4e6, bandwidth=0.8)
t = (np.arange(64) - 32) / acq.fs
irf = response.impulse(t) / acq.fs
measured = DetectorResponse(impulse_response=irf, fs=acq.fs)
raw = np.stack([oatomo.simulate(spectra[0, k] * a + spectra[1, k] * b, grid, ring, acq,
                                response=measured, noise_std=0.003, seed=k)
                for k in range(2)])[None]  # (1 frame, 2 wavelengths, 64, 1200)

work = Path(tempfile.mkdtemp())
with h5py.File(work / "scan.hdf5", "w") as f:
    f.attrs["fs"], f.attrs["speedofsound"] = acq.fs, acq.speed_of_sound
    f["raw_data"] = raw
    f["GEOMETRY"] = np.c_[ring.positions, np.zeros(len(ring))]
    f["wavelengths"] = wavelengths
    f["irf"] = irf

# %%
# Reconstruct both wavelengths after removing the file's detector response.
rec = oatomo.reconstruct(work / "scan.hdf5", "mb-tv", grid, deconvolve=True, iters=30,
                         refine=False)
images = rec.images["mb-tv"]
print(images.shape, rec.provenance["axes"], rec.provenance["wavelengths"])

# %%
# The image file keeps the wavelength axis and its values (m); every dataset has units.
oatomo.io.save_images(work / "images.h5", dict(rec.images), rec.grid, attrs=rec.attrs())
with h5py.File(work / "images.h5") as f:
    d = f["images/mb-tv"]
    print(d.attrs["axes"], d.attrs["units"], f["wavelengths"][...], f["wavelengths"].attrs["units"])

# %%
# Linear unmixing: per pixel, least squares of the two spectra against the two images.
stack = images.reshape(2, -1)
maps = np.linalg.lstsq(spectra.T, stack, rcond=None)[0].reshape(2, *grid.shape)
fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
for ax, (title, img) in zip(axes, [("750 nm", images[0]), ("850 nm", images[1]),
                                   ("unmixed a", maps[0]), ("unmixed b", maps[1])], strict=True):
    im = ax.imshow(img, origin="lower", cmap="inferno")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()
for name, m, truth in (("a", maps[0], a), ("b", maps[1], b)):
    r = oatomo.evaluation.metrics.pearson(m, truth)
    print(name, "Pearson r with the truth:", round(float(r), 3))
