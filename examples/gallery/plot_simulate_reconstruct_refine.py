"""
Simulate, reconstruct, refine
=============================

A scan of a bundled setup is simulated: a 32-sensor ring whose *true* sensor positions are
drawn from the setup's error distribution (0.15 mm jitter per axis), with 0.5 % noise. It is
reconstructed by universal backprojection with the *nominal* positions, as a user would,
and refined by the learned model shipped with oatomo, which also gives an uncertainty map.
"""

import matplotlib.pyplot as plt
import numpy as np

import oatomo
from oatomo.evaluation.metrics import pearson
from oatomo.figures import add_scale_bar
from oatomo.setups import load_setup

setup = load_setup("ring32_jitter")
p0 = oatomo.phantoms.make("vessels", setup.grid, 3)
true_sensors = setup.draw(3)
sinogram = oatomo.simulate(p0, setup.grid, true_sensors, setup.acquisition,
                           noise_std=setup.noise, seed=3)
scan = oatomo.Scan(sinogram, setup.array, setup.acquisition, p0=p0, grid=setup.grid)

# %%
# One call runs the pipeline: the linear image, then the refinement when the shipped
# model fits the scan (``refine="auto"``; the provenance says why it did or did not).
# ``calibrate=False``: this example shows the refiner; by default the pipeline would
# first find that these sensors are off and self-calibrate instead (see the README).
rec = oatomo.reconstruct(scan, "ubp", calibrate=False)
print(rec.provenance["refinement"]["reason"])
print({name: rec.units[name] for name in rec.images})

# %%
# The linear image, the refined one, its uncertainty (own scale) and the truth.
# Each colourbar carries the image's units: UBP is proportional to p0 only up to a factor
# ("a.u."), the truth is in Pa, and the refined image takes its input's units.
panels = [("UBP", "ubp", rec.linear), ("truth p0", "truth", p0)]
if rec.refined:
    panels[1:1] = [("refined", "refined", rec.images["refined"]),
                   ("uncertainty", "uncertainty", rec.images["uncertainty"])]
fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
for ax, (title, name, img) in zip(axes, panels, strict=True):
    im = ax.imshow(img, origin="lower", cmap="viridis" if title == "uncertainty" else "inferno")
    fig.colorbar(im, ax=ax, shrink=0.8, label=rec.units.get(name, "Pa"))
    add_scale_bar(ax, rec.grid, color="black" if title == "uncertainty" else "white")
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()

# %%
# Pearson correlation with the truth.
for name in ("ubp", "refined"):
    if name in rec.images:
        print(name, round(float(pearson(rec.images[name], p0)), 3))
print("sensor position error (rms, mm):",
      round(float(np.sqrt(np.mean(np.sum((true_sensors.positions - setup.array.positions)
                                         ** 2, axis=1)))) * 1e3, 3))
