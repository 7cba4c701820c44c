"""Run under torchrun: train a tiny skip-connected VAE on patches for a few steps, save
this rank's weights.

Arguments: OUT_DIR STEPS."""

import sys

import numpy as np
import torch
import torch.distributed as dist

from oatomo.learn.patches import train_on_patches
from oatomo.learn.skipvae import SkipMultiDecoderIVAE, SkipVAEConfig

out_dir, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
rng = np.random.default_rng(0)
x = rng.normal(size=(6, 2, 32, 32)).astype(np.float32)
model = SkipMultiDecoderIVAE(SkipVAEConfig(n_envs=2, channels=(4, 4, 8), latent_dim=4),
                             seed=0)
curve = train_on_patches(model, lambda: (x, 0.5 * x[:, :1], np.arange(6) % 2),
                         f"{out_dir}/ddp.pt", steps=steps, batch_size=4, patch=16,
                         log_every=1, snapshot_every=2)
torch.save({"state": model.state_dict(), "points": len(curve)},
           f"{out_dir}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
