"""
Two wavelengths: reconstruct, hand over to PATATO, unmix sO2
============================================================

Two vessels, one at 40 % and one at 95 % oxygen saturation, are imaged at 750 and 850 nm
(their absorption from PATATO's own haemoglobin spectra, a uniform fluence). oatomo
reconstructs both wavelengths and writes the scan with its images in PATATO's layout
(:func:`oatomo.io.save_patato`); PATATO opens that file, places the images on its own
coordinates and unmixes them into haemoglobin, oxyhaemoglobin and sO2 with its linear
unmixer (what ``patato-unmix FILE`` runs). Without PATATO installed (``pip install
patato``) the example stops after the export.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import oatomo
from oatomo.io import save_patato

try:
    import patato
    from patato.unmixing.spectra import Haemoglobin, OxyHaemoglobin
    from patato.utils.pipeline import run_pipeline
except ImportError:  # PATATO is optional: the export is still written
    patato = None

grid = oatomo.Grid(96, 0.0096)
ring = oatomo.ring_array(64, 0.02)
acq = oatomo.Acquisition(40e6, 1200, speed_of_sound=1500.0)
wavelengths = np.array([750e-9, 850e-9])

# %%
# The absorbers: absorption of each vessel at each wavelength from the haemoglobin spectra
# (PATATO tabulates them in nm; without PATATO, Prahl's values at 750 and 850 nm).
if patato is not None:
    eps = np.array([Haemoglobin.get_spectrum(wavelengths * 1e9),
                    OxyHaemoglobin.get_spectrum(wavelengths * 1e9)])  # (Hb/HbO2, wavelength)
else:
    eps = np.array([[1405.24, 691.32], [518.0, 1058.0]])
so2_true = {"left": 0.40, "right": 0.95}
centres = {"left": (-1.8e-3, 0.0), "right": (1.8e-3, 1.0e-3)}
radii = {"left": 1.5e-3, "right": 1.2e-3}
p0 = np.zeros((2,) + grid.shape)
for name, centre in centres.items():
    mu_a = eps.T @ np.array([1 - so2_true[name], so2_true[name]])  # per wavelength
    p0 += mu_a[:, None, None] / eps.max() * oatomo.phantoms.disk(grid, radii[name], centre)
sino = np.stack([oatomo.simulate(p0[k], grid, ring, acq, noise_std=0.002, seed=k)
                 for k in range(2)])
scan = oatomo.Scan(sino, ring, acq, wavelengths=wavelengths)

# %%
# Reconstruct both wavelengths (non-negative TV), then export scan and images for PATATO:
# ``recons/mb-tv/0`` of shape (frames, wavelengths, 1, ny, nx) with its field of view.
rec = oatomo.reconstruct(scan, "mb-tv", grid, iters=30, refine=False)
images = rec.images["mb-tv"]
path = save_patato(Path(tempfile.mkdtemp()) / "scan.hdf5", scan, images, grid,
                   algorithm="mb-tv", units=rec.units["mb-tv"])
print(images.shape, "->", path.name)

# %%
# PATATO reads the export: wavelengths (nm), the reconstruction on its coordinates, and
# unmixes it (full resolution here; ``patato-unmix`` would also write the maps into the
# file).
if patato is not None:
    pa = patato.PAData.from_hdf5(str(path))
    print("PATATO wavelengths:", pa.get_wavelengths())
    recon = pa.get_scan_reconstructions()[("mb-tv", "0")]
    print("PATATO extent (m):", np.round(recon.extent, 6), "oatomo pixel centres:",
          grid.x[0], grid.x[-1])
    preset = {"RESOLUTION_REDUCE": 1, "WAVELENGTH_RANGE": [700, 900],
              "SPECTRA": ["Hb", "HbO2"], "SO2": True, "SUFFIX": ""}
    results, _ = run_pipeline(patato.read_unmixing_preset(preset, pa), recon, pa,
                              save_results=False)
    so2 = next(r for r in results if r.get_hdf5_group_name() == "so2")
    so2_map = np.asarray(so2.raw_data)[0, 0, 0]  # (y, x), as oatomo's images
    for name, centre in centres.items():
        inner = oatomo.phantoms.disk(grid, 0.6e-3, centre) > 0  # away from the edges
        print(f"{name} vessel: sO2 {np.nanmedian(so2_map[inner]):.2f} "
              f"(true {so2_true[name]:.2f})")
    pa.close()

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    extent = recon.extent
    unit = rec.units["mb-tv"]  # TV reads the initial pressure: Pa
    for ax, (title, img, cmap, label) in zip(axes, [
            ("750 nm", images[0], "inferno", unit), ("850 nm", images[1], "inferno", unit),
            ("sO2 (PATATO)", np.where(images.max(0) > 0.2 * images.max(), so2_map, np.nan),
             "RdBu_r", "sO2 (fraction)")], strict=True):
        im = ax.imshow(img, origin="lower", extent=np.multiply(extent, 1e3), cmap=cmap,
                       **({"vmin": 0, "vmax": 1} if cmap == "RdBu_r" else {}))
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
        ax.set_title(title)
        ax.set_xlabel("x (mm)")
    axes[0].set_ylabel("y (mm)")
    fig.tight_layout()
