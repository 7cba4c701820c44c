"""Run under torchrun: train a tiny refiner for a few steps, save this rank's weights.

Arguments: DATA OUT_DIR EPOCHS [resume]."""

import sys

import torch
import torch.distributed as dist

from oatomo.learn.refiner import train_refiner

data, out_dir, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
model, result = train_refiner(data, "multi-decoder", f"{out_dir}/ddp.pt", epochs=epochs,
                              batch_size=4, seed=3, resume="resume" in sys.argv[4:],
                              model_args=dict(width=4, depth=1, latent=2))
torch.save({"state": model.state_dict(), "steps": result.step},
           f"{out_dir}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
