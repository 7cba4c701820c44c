"""Training and evaluation data of the learned refiner (:mod:`oatomo.datasets.generate`).

:func:`generate_dataset` simulates a resumable dataset directory over scanner environments,
:func:`load_dataset` reads it, :func:`make_item` makes one seeded item.
"""

from oatomo.datasets.generate import (
    HELDOUT_PHANTOMS,
    INPUTS,
    LINEAR_INPUTS,
    LOCK_NAME,
    TRAIN_PHANTOMS,
    generate_dataset,
    input_images,
    item_seed,
    job_directory,
    load_dataset,
    make_item,
    read_manifest,
    resume_directory,
)

__all__ = ["generate_dataset", "load_dataset", "make_item", "item_seed", "resume_directory",
           "job_directory", "LOCK_NAME", "read_manifest", "input_images", "TRAIN_PHANTOMS",
           "HELDOUT_PHANTOMS", "LINEAR_INPUTS", "INPUTS"]
