"""The skip-connected invariant VAEs (:mod:`oatomo.learn.skipvae`)."""

from __future__ import annotations

import pytest
import torch

from oatomo.errors import InputError
from oatomo.learn.checkpoint import load_model, save_checkpoint
from oatomo.learn.skipvae import SkipBetaVAE, SkipMultiDecoderIVAE, SkipVAEConfig

SMALL = {"channels": (4, 8, 8), "latent_dim": 2, "n_envs": 3}


def _perturbed(model):
    with torch.no_grad():  # the residual heads start at zero: make every part count
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, 2, 16, 16, generator=g), torch.rand(4, 1, 16, 16, generator=g)


def test_residual_model_starts_as_its_first_channel():
    model = SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=0)
    x, target = _data()
    torch.testing.assert_close(model.reconstruct(x), x[:, :1])
    torch.testing.assert_close(model.reconstruct(x, 2), x[:, :1])
    for k in range(3):
        torch.testing.assert_close(model.reconstruct(x, k), x[:, :1])
    torch.testing.assert_close(model.posterior_samples(x, 2),
                               x[:, :1].expand(2, -1, -1, -1, -1))
    terms = model.loss(x, torch.tensor([0, 1, 2, 2]), target)
    # a zero correction: the profiled likelihood of target - x[:, :1], per image
    p = 16 * 16
    mse = (target - x[:, :1]).pow(2).flatten(1).mean(1)
    want = (0.5 * p * (torch.log(mse + 1e-10) + 1 + torch.log(torch.tensor(2 * torch.pi))))
    torch.testing.assert_close(terms["reconstruction"], want.mean())
    torch.testing.assert_close(terms["invariance"], want.mean())


def test_each_sample_goes_through_its_own_variant_decoder():
    """The batched loss equals the mean of the per-sample losses, each computed alone
    with its environment's decoder (the masking of the latent and of the skips)."""
    model = _perturbed(SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL, beta=0.0), seed=0))
    x, target = _data(1)
    env = torch.tensor([2, 0, 2, 1])
    model.eval()
    mu, _, skips = model.features(x)
    batched = model.decode(mu, skips, env)
    for i in range(4):
        alone = model.variant_decoders[int(env[i])](mu[i:i + 1], [s[i:i + 1] for s in skips])
        torch.testing.assert_close(batched[i:i + 1], alone)
    torch.testing.assert_close(model.reconstruct(x, env)[1:2], model.reconstruct(x[1:2], 0))
    assert not torch.allclose(model.reconstruct(x, 0), model.reconstruct(x, 1))


def test_training_fits_a_batch_and_every_part_learns():
    for cls in (SkipMultiDecoderIVAE, SkipBetaVAE):
        model = cls(SkipVAEConfig(**SMALL, beta=0.01), seed=0)
        x, target = _data(2)
        env = torch.tensor([0, 1, 2, 0])
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        first = None
        for _ in range(60):
            terms = model.loss(x, env, target, generator=g)
            opt.zero_grad()
            terms["total"].backward()
            if first is None:
                first = float(terms["reconstruction"].detach())
                grads = [p.grad for n, p in model.named_parameters()
                         if "variant" not in n or cls is SkipMultiDecoderIVAE]
                assert all(gr is not None for gr in grads)
            opt.step()
        # 50 nats per 256-pixel image: the mean squared error falls by a factor 1.5 or more
        assert float(terms["reconstruction"].detach()) < first - 50


def test_checkpoint_round_trip_and_seeding(tmp_path):
    a = _perturbed(SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=4))
    path = save_checkpoint(tmp_path / "s.npz", a)
    b = load_model(path, model_class="SkipMultiDecoderIVAE")
    x, _ = _data(3)
    torch.testing.assert_close(a.eval().reconstruct(x, 1), b.eval().reconstruct(x, 1))
    c = SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=4)
    d = SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), d.parameters(), strict=True))


def test_bad_input_is_one_line():
    with pytest.raises(InputError, match="three multiples of 4"):
        SkipVAEConfig(channels=(4, 8))
    with pytest.raises(InputError, match="unknown SkipVAEConfig keys"):
        SkipVAEConfig.from_dict({"width": 3})
    model = SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=0)
    x, target = _data()
    with pytest.raises(InputError, match="multiples of 8"):
        model.reconstruct(x[..., :12])
    with pytest.raises(InputError, match="needs the environment"):
        model.loss(x, None, target)
    with pytest.raises(InputError, match="env must lie in 0..2"):
        model.loss(x, 3, target)
    with pytest.raises(InputError, match="target must have shape"):
        model.loss(x, 0, target[:, :, :8])


def test_refiner_runs_a_skip_model_scale_equivariant_on_any_canonical_size():
    """Through :class:`~oatomo.refine.Refiner`: a 20 x 20 input (not a multiple of 8) is
    padded and cut back, the refined image is the first channel plus the correction in
    its units, ``refine(a x) = a refine(x)``, and the uncertainty map is the spread of
    the posterior samples and of the variant decoders."""
    import numpy as np

    from oatomo.refine.refiner import Refiner, posterior_noise

    model = _perturbed(SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=0)).eval()
    ref = Refiner(model=model, kind="multi-decoder", inputs=("mb-tv", "ubp"),
                  env_names=("a", "b", "c"), uncertainty="both")
    x = np.abs(np.random.default_rng(0).standard_normal((2, 20, 20))).astype(np.float32)
    out = ref.refine_images(x, n_samples=3, seed=5)
    assert out.refined.shape == out.std.shape == (20, 20)
    peak = np.abs(x).reshape(2, -1).max(1)
    xn = np.zeros((1, 2, 24, 24), np.float32)
    xn[0, :, :20, :20] = x / peak[:, None, None]
    xt = torch.from_numpy(xn)
    want = model.reconstruct(xt)[0, 0, :20, :20].numpy() * peak[0]
    np.testing.assert_allclose(out.refined, want, rtol=1e-5, atol=1e-6 * peak[0])
    # the map, draw by draw: posterior samples through the invariant decoder, then the
    # variant decoders at the posterior mean
    with torch.no_grad():
        mu, logvar, skips = model.features(xt)
        eps = torch.from_numpy(posterior_noise(5, 3, tuple(mu.shape[1:])))
        draws = torch.stack([model.decoder(mu + torch.exp(0.5 * logvar) * eps[i], skips)[0, 0]
                             for i in range(3)])
        per_env = torch.stack([model.reconstruct(xt, k)[0, 0] for k in range(3)])
    var = draws.var(0, unbiased=False) + per_env.var(0, unbiased=False)
    np.testing.assert_allclose(out.std, var.sqrt()[:20, :20].numpy() * peak[0], rtol=1e-4,
                               atol=1e-6 * peak[0])
    for a in (0.3, 7.0):
        scaled = ref.refine_images(np.float32(a) * x, n_samples=3, seed=5)
        np.testing.assert_allclose(scaled.refined, a * out.refined, rtol=1e-4,
                                   atol=1e-5 * a * peak[0])


def test_numpy_inference_equals_pytorch(tmp_path):
    """The NumPy engine (an independent implementation of the layers: group norm, the
    transposed convolutions, the skips) against the PyTorch model, every decoder; and the
    Refiner gives the same images with both engines."""
    import numpy as np

    from oatomo.learn.records import read_weights
    from oatomo.refine import load_refiner
    from oatomo.refine.weights import _GN_EPS, _GROUPS, NumpySkipVAE, numpy_model

    model = _perturbed(SkipMultiDecoderIVAE(SkipVAEConfig(**SMALL), seed=0)).eval()
    gn = model.encoder.levels[0][1]
    assert (gn.num_groups, gn.eps) == (_GROUPS, _GN_EPS)
    path = save_checkpoint(tmp_path / "s.npz", model)
    net = numpy_model(*read_weights(path))
    assert isinstance(net, NumpySkipVAE) and net.n_envs == 3 and net.residual
    assert net.size_step == model.size_step == 8
    x = np.random.default_rng(0).standard_normal((2, 2, 16, 24)).astype(np.float32)
    xt = torch.from_numpy(x)
    mu, logvar, _ = model.features(xt)
    got_mu, got_lv, _ = net.features(x)
    np.testing.assert_allclose(got_mu, mu.detach().numpy(), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(got_lv, logvar.detach().numpy(), rtol=1e-4, atol=2e-5)
    for e in (None, 0, 2):
        np.testing.assert_allclose(net.reconstruct(x, e), model.reconstruct(xt, e).numpy(),
                                   rtol=1e-4, atol=2e-5)
    with pytest.raises(InputError, match="multiples of 8"):
        net.features(x[..., :12])
    with pytest.raises(InputError, match="env must lie in 0..2"):
        net.decode(got_mu, net.features(x)[2], 3)
    # the Refiner: the NumPy engine and the PyTorch one give the same refined image and map
    from oatomo.scanners import FAMILY, FAMILY_KEY

    meta = {"kind": "multi-decoder", "family": FAMILY.to_dict(), "pitch": 1e-4,
            "inputs": ["mb-tv", "ubp"], "env_names": ["a", "b", "c"], "uncertainty": "both"}
    path = save_checkpoint(tmp_path / "r.npz", model, train={FAMILY_KEY: meta})
    img = np.abs(np.random.default_rng(1).standard_normal((2, 20, 20))).astype(np.float32)
    a = load_refiner(path, backend="numpy").refine_images(img, n_samples=3, seed=2)
    b = load_refiner(path, backend="torch").refine_images(img, n_samples=3, seed=2)
    np.testing.assert_allclose(a.refined, b.refined, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-3, atol=1e-5)
