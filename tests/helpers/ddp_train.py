"""Run under torchrun: train a tiny refiner for a few steps, save this rank's weights."""

import sys

import torch
import torch.distributed as dist

from oatomo.learn.fit import train_refiner

data, out_dir = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
model, result = train_refiner(data, "multi-decoder", f"{out_dir}/ddp.pt", epochs=2,
                              batch_size=4, limit=4, latent=2, channels=(4, 8, 8),
                              device="cpu", seed=3)
torch.save({"state": model.state_dict(), "steps": result.step},
           f"{out_dir}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
