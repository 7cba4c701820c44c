"""Patch training (the TV refiner's loop): the batches, exact resumption, distributed data
parallelism, one-line errors."""


import numpy as np
import pytest
import torch

from oatomo.errors import InputError
from oatomo.learn.patches import patch_batch, train_on_patches
from oatomo.learn.skipvae import SkipMultiDecoderIVAE, SkipVAEConfig

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 2, 32, 32)).astype(np.float32)
DATA = (X, 0.5 * X[:, :1], np.arange(6) % 2)
TINY = dict(steps=6, patch=16, batch_size=4, log_every=2, snapshot_every=3)


def tiny_model() -> SkipMultiDecoderIVAE:
    return SkipMultiDecoderIVAE(SkipVAEConfig(n_envs=2, channels=(4, 4, 8), latent_dim=4),
                                seed=0)


def test_batches_are_a_pure_function_of_step_and_rank():
    a = patch_batch(DATA, 5, 4, 16)
    b = patch_batch(DATA, 5, 4, 16)
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], patch_batch(DATA, 5, 4, 16, rank=1)[0])
    assert not np.array_equal(a[0], patch_batch(DATA, 6, 4, 16)[0])
    xb, yb, eb = a
    assert xb.shape == (4, 2, 16, 16) and yb.shape == (4, 1, 16, 16) and eb.shape == (4,)
    # inputs and targets are cut, rotated and flipped together (the target is 0.5 x input)
    np.testing.assert_array_equal(yb, 0.5 * xb[:, :1])
    # each patch is a window of its item, rotated and/or flipped
    for k in range(4):
        item = X[np.flatnonzero([np.isin(xb[k, 0], X[i, 0]).all() for i in range(6)])[0]]
        windows = [np.rot90(item[0], r)[..., ::f] for r in range(4) for f in (1, -1)]
        assert any(_contains(w, xb[k, 0]) for w in windows)
    # over many steps every rotation, flipped or not, occurs: no orientation is preferred
    seen = set()
    for step in range(60):
        (whole,), _, _ = patch_batch(DATA, step, 1, 32)
        seen |= {(r, f) for i in range(6) for r in range(4) for f in (1, -1)
                 if np.array_equal(np.rot90(X[i], r, (1, 2))[..., ::f], whole)}
    assert len(seen) == 8


def _contains(big: np.ndarray, small: np.ndarray) -> bool:
    h = small.shape[0]
    return any(np.array_equal(big[i:i + h, j:j + h], small)
               for i in range(big.shape[0] - h + 1) for j in range(big.shape[1] - h + 1))


def test_resumed_run_equals_uninterrupted(tmp_path):
    whole = tiny_model()
    curve = train_on_patches(whole, lambda: DATA, tmp_path / "a.pt", **TINY)
    assert [p["step"] for p in curve] == [2, 4, 6]
    assert (tmp_path / "a_3.pt").exists() and (tmp_path / "a.pt.curve.json").exists()

    class Stop(Exception):
        pass

    def stop(_what, done, _total):
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        train_on_patches(tiny_model(), lambda: DATA, tmp_path / "b.pt", callback=stop,
                         **TINY)
    part = tiny_model()
    train_on_patches(part, lambda: DATA, tmp_path / "b.pt", **TINY)
    for k, v in whole.state_dict().items():
        assert torch.equal(v, part.state_dict()[k]), k
    saved = torch.load(tmp_path / "a.pt", weights_only=True)
    assert saved["step"] == 6 and set(saved) >= {"model", "opt"}


def test_training_lowers_the_error_of_a_learnable_correction(tmp_path):
    torch.manual_seed(0)
    model = tiny_model()
    curve = train_on_patches(model, lambda: DATA, tmp_path / "m.pt", steps=120, patch=16,
                             batch_size=4, log_every=20, snapshot_every=120, lr=1e-2)
    assert curve[-1]["sse"] < 0.75 * curve[0]["sse"]  # measured 60.4 -> 39.6
    assert curve[-1]["gain_db"] > 1.0


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="patch 64 is larger"):
        train_on_patches(tiny_model(), lambda: DATA, tmp_path / "m.pt", steps=1, patch=64)
    with pytest.raises(InputError, match=">= 1"):
        train_on_patches(tiny_model(), lambda: DATA, tmp_path / "m.pt", steps=0)
    with pytest.raises(InputError, match="inputs"):
        train_on_patches(tiny_model(), lambda: (X, X[:3, :1], DATA[2]), tmp_path / "m.pt",
                         steps=1, patch=16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA build with a GPU")
def test_cuda_without_a_gpu_is_an_error_before_reading(tmp_path):
    def load():
        raise AssertionError("read before the device was checked")

    with pytest.raises(InputError, match="cuda"):
        train_on_patches(tiny_model(), load, tmp_path / "m.pt", steps=1, device="cuda")


def test_torchrun_two_processes_hold_identical_weights(torchrun_runs):
    out = torchrun_runs / "patches"  # trained by tests/helpers/ddp_runs.py, 4 steps
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert w0["points"] == w1["points"] == 4
    start = tiny_model().state_dict()
    moved = False
    for k, v in w0["state"].items():
        assert torch.equal(v, w1["state"][k]), k
        moved |= not torch.equal(v, start[k])
    assert moved  # the ranks trained, and stayed equal
    ck = torch.load(out / "ddp.pt", weights_only=True)
    assert ck["step"] == 4 and (out / "ddp_2.pt").exists()
    for k, v in ck["model"].items():
        assert torch.equal(v, w0["state"][k]), k
