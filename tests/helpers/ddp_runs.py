"""Run under torchrun: every distributed training the tests check, in one launch.

``python -m torch.distributed.run --nproc-per-node 2 ddp_runs.py DATA OUT_DIR`` trains, in
this order and in the same processes (one process group; each run builds its model and
reads its checkpoint from disk):

- ``OUT_DIR/whole``: a tiny refiner (:func:`oatomo.learn.refiner.train_refiner`) on the
  dataset ``DATA`` for 2 epochs;
- ``OUT_DIR/part``: the same training stopped after 1 epoch, then resumed from its
  checkpoint to 2 epochs (the resumed run must not depend on what the process did before:
  the global random state here is the one the whole run left, not a fresh process's);
- ``OUT_DIR/patches``: a tiny skip-connected VAE on patches
  (:func:`oatomo.learn.patches.train_on_patches`) for 4 steps.

Each run saves this rank's weights (and the resumed run the step it resumed from) as
``rank<R>.pt`` in its folder.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from oatomo.learn.patches import train_on_patches
from oatomo.learn.refiner import train_refiner
from oatomo.learn.skipvae import SkipMultiDecoderIVAE, SkipVAEConfig

data, out = sys.argv[1], Path(sys.argv[2])
torch.set_num_threads(1)


def save(folder: Path, **entries) -> None:
    torch.save(entries, folder / f"rank{dist.get_rank()}.pt")


def refiner(folder: Path, epochs: int, resume: bool):
    folder.mkdir(exist_ok=True)
    return train_refiner(data, "multi-decoder", folder / "ddp.pt", epochs=epochs,
                         batch_size=4, seed=3, resume=resume,
                         model_args=dict(width=4, depth=1, latent=2))


model, result = refiner(out / "whole", 2, False)
save(out / "whole", state=model.state_dict(), steps=result.step)
refiner(out / "part", 1, False)
model, result = refiner(out / "part", 2, True)
save(out / "part", state=model.state_dict(), steps=result.step,
     resumed_from=result.resumed_from)

rng = np.random.default_rng(0)
x = rng.normal(size=(6, 2, 32, 32)).astype(np.float32)
model = SkipMultiDecoderIVAE(SkipVAEConfig(n_envs=2, channels=(4, 4, 8), latent_dim=4),
                             seed=0)
(out / "patches").mkdir(exist_ok=True)
curve = train_on_patches(model, lambda: (x, 0.5 * x[:, :1], np.arange(6) % 2),
                         out / "patches" / "ddp.pt", steps=4, batch_size=4, patch=16,
                         log_every=1, snapshot_every=2)
save(out / "patches", state=model.state_dict(), points=len(curve))
dist.destroy_process_group()
