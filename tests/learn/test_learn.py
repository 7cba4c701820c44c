"""The VAE family: shapes, KL, learning, checkpoints, deterministic resume, bad input."""

import json
import math

import pytest
import torch

from oatomo import InputError
from oatomo.learn import (
    BetaVAE,
    MultiDecoderIVAE,
    MultiEncoderIVAE,
    VAEConfig,
    kl_normal,
    load_checkpoint,
    load_model,
    resolve_device,
    save_checkpoint,
    train,
)
from oatomo.validation.cmnist.classifier import DigitClassifier, load_classifier

MODELS = (BetaVAE, MultiDecoderIVAE, MultiEncoderIVAE)
TINY = {"in_shape": (2, 8, 8), "latent_dim": 4, "channels": (4, 8), "hidden": 16}


def _data(n=16, shape=(2, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("spatial", [False, True])
def test_interface_shapes_and_dtypes(cls, spatial):
    cfg = VAEConfig(**TINY, spatial_latent=spatial)
    model = cls(cfg, seed=0)
    x = _data(6)
    env = torch.tensor([0, 1, 0, 1, 1, 0])
    terms = model.loss(x, env)
    assert {"reconstruction", "kl", "invariance", "total"} <= set(terms)
    assert all(t.shape == () and t.dtype == torch.float32 for t in terms.values())
    cfg_b = model.config
    expect = (cfg_b.beta * terms["kl"] + terms["reconstruction"]
              + (cfg_b.gamma * terms["invariance"] if cls is not BetaVAE else 0.0))
    torch.testing.assert_close(terms["total"], expect)
    latent = (4,) if not spatial else (4, 2, 2)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (6, *latent)
    for e in (None, 1, env):
        rec = model.reconstruct(x, e)
        assert rec.shape == x.shape and rec.dtype == torch.float32
        assert 0.0 <= float(rec.min()) and float(rec.max()) <= 1.0  # Bernoulli means
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 2, 8, 8)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())  # every part is trained


def test_denoising_gaussian_target_with_other_channels():
    cfg = VAEConfig(in_shape=(1, 16, 16), target_shape=(2, 16, 16), latent_dim=3,
                    spatial_latent=True, channels=(4, 4), likelihood="gaussian",
                    obs_sigma=0.1, n_envs=3)
    model = MultiDecoderIVAE(cfg, seed=1)
    x, target = _data(4, (1, 16, 16)), _data(4, (2, 16, 16), seed=1)
    terms = model.loss(x, torch.tensor([0, 1, 2, 2]), target)
    assert math.isfinite(float(terms["total"].detach()))
    assert model.reconstruct(x).shape == (4, 2, 16, 16)
    assert model.sample(2).shape == (2, 2, 16, 16)
    with pytest.raises(InputError, match="give a target"):
        model.loss(x, 0)
    with pytest.raises(InputError, match="target must have shape"):
        model.loss(x, 0, target[:, :1])


def test_gaussian_nll_is_exact():
    model = BetaVAE(VAEConfig(**TINY, likelihood="gaussian", obs_sigma=0.5), seed=0)
    out, target = torch.zeros(1, 2, 8, 8), torch.ones(1, 2, 8, 8)
    ref = -torch.distributions.Normal(out, 0.5).log_prob(target).sum()
    torch.testing.assert_close(model.nll(out, target), ref.reshape(1))


def test_profiled_nll_is_the_gaussian_at_its_best_variance():
    """The profiled likelihood equals the Gaussian NLL at sigma^2 = the image's mean squared
    error, which is its minimum over sigma (closed form against torch.distributions)."""
    model = BetaVAE(VAEConfig(**TINY, likelihood="profiled"), seed=0)
    g = torch.Generator().manual_seed(3)
    out = torch.randn(2, 2, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randn(2, 2, 8, 8, generator=g, dtype=torch.float64)
    mse = (target - out).pow(2).flatten(1).mean(1)
    got = model.nll(out, target)
    for i in range(2):
        best = -torch.distributions.Normal(out[i], mse[i].sqrt()).log_prob(target[i]).sum()
        torch.testing.assert_close(got[i], best, rtol=1e-6, atol=1e-6)
        for f in (0.7, 1.3):  # any other variance is a worse fit
            other = torch.distributions.Normal(out[i], (f * mse[i]).sqrt())
            assert float(-other.log_prob(target[i]).sum()) > float(best)
    # scaling both by a shifts every image by P log a: the gradients do not see the scale
    torch.testing.assert_close(model.nll(3 * out, 3 * target) - got,
                               torch.full((2,), 128 * math.log(3.0), dtype=torch.float64))


def test_residual_conv_vae_starts_as_identity_and_fits_the_correction():
    from oatomo.learn.conv import ConvMultiDecoderIVAE, ConvVAEConfig

    cfg = ConvVAEConfig(in_channels=2, width=4, depth=1, latent_dim=2, n_envs=2,
                        likelihood="profiled", residual=True)
    model = ConvMultiDecoderIVAE(cfg, seed=0)
    g = torch.Generator().manual_seed(0)
    x, target = torch.rand(3, 2, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    torch.testing.assert_close(model.reconstruct(x), x[:, :1])
    torch.testing.assert_close(model.reconstruct(x, 1), x[:, :1])
    draws = model.posterior_samples(x, 2, generator=g)
    torch.testing.assert_close(draws, x[:, :1].expand(2, -1, -1, -1, -1))
    # the likelihood is that of the sum: the decoders are fitted to target - x[:, :1]
    terms = model.loss(x, torch.tensor([0, 1, 1]), target, generator=g)
    want = model.nll(torch.zeros_like(target), target - x[:, :1]).mean()
    torch.testing.assert_close(terms["reconstruction"], want)
    plain = ConvMultiDecoderIVAE(ConvVAEConfig(in_channels=2, width=4, depth=1, latent_dim=2,
                                               n_envs=2), seed=0)
    assert float(plain.reconstruct(x).abs().max()) > 0  # not residual: not the input
    assert not torch.allclose(plain.reconstruct(x), x[:, :1])


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.5
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(kl_normal(mu, logvar), mc, atol=0.03, rtol=0.0)


def test_multi_decoder_paths():
    model = MultiDecoderIVAE(VAEConfig(**TINY), seed=0)
    x = _data(4)
    inv, v0, v1 = model.reconstruct(x), model.reconstruct(x, 0), model.reconstruct(x, 1)
    assert not torch.allclose(inv, v0) and not torch.allclose(v0, v1)
    mixed = model.reconstruct(x, torch.tensor([0, 1, 0, 1]))
    torch.testing.assert_close(mixed[0], v0[0])
    torch.testing.assert_close(mixed[1], v1[1])
    with pytest.raises(InputError, match="needs the environment"):
        model.loss(x)
    with pytest.raises(InputError, match="env must lie in 0..1"):
        model.loss(x, 2)


def test_multi_encoder_shares_the_mean():
    model = MultiEncoderIVAE(VAEConfig(**TINY), seed=0)
    x = _data(4)
    mu, logvar = model.encode(x)
    mu0, logvar0 = model.encode_variant(x, 0)
    mu1, logvar1 = model.encode_variant(x, 1)
    torch.testing.assert_close(mu, mu0)
    torch.testing.assert_close(mu0, mu1)
    assert not torch.allclose(logvar0, logvar1) and not torch.allclose(logvar, logvar0)
    torch.testing.assert_close(model.reconstruct(x), model.reconstruct(x, 1))
    terms = model.loss(x, 0)
    torch.testing.assert_close(terms["invariance"], terms["invariance_reconstruction"]
                               + model.config.beta * terms["invariance_kl"])


@pytest.mark.parametrize("cls", MODELS)
def test_tiny_model_overfits_a_batch(cls):
    # 16 binary images: a 3x3 square at 16 positions, red or green (NLL floor ~0)
    x = torch.zeros(16, 2, 8, 8)
    for i in range(16):
        r, c = divmod(i, 4)
        x[i, i % 2, 2 * r:2 * r + 3, 2 * c:2 * c + 3] = 1.0
    model = cls(VAEConfig(**TINY, beta=0.1), seed=0)
    result = train(model, [x[:8], x[8:]], epochs=100, batch_size=16, lr=1e-2, seed=0,
                   device="cpu")
    first, last = result.history[0]["reconstruction"], result.history[-1]["reconstruction"]
    assert last < first / 3  # measured: 3.5x (beta-VAE, multi-encoder), 4.1x (multi-decoder)
    assert result.history[-1]["total"] < result.history[0]["total"] / 2


def test_seeded_and_deterministic():
    envs = [_data(12, seed=1), _data(12, seed=2)]
    a = MultiEncoderIVAE(VAEConfig(**TINY), seed=3)
    b = MultiEncoderIVAE(VAEConfig(**TINY), seed=3)
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    train(a, envs, epochs=2, batch_size=8, seed=5, device="cpu")
    train(b, envs, epochs=2, batch_size=8, seed=5, device="cpu")
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_checkpoint_round_trip(tmp_path):
    model = MultiDecoderIVAE(VAEConfig(**TINY, gamma=0.5), seed=0)
    path = tmp_path / "md.pt"
    train(model, [_data(8, seed=1), _data(8, seed=2)], epochs=2, batch_size=8, seed=0,
          device="cpu", checkpoint=path)
    raw = torch.load(path, weights_only=True)  # plain data only: never runs code
    assert raw["format"] == "oatomo-model" and raw["version"] == 1
    assert raw["model_class"] == "MultiDecoderIVAE" and raw["step"] == 4  # 2 epochs x 2
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"] == model.config.to_dict() and len(meta["history"]) == 2
    loaded = load_model(path)
    assert type(loaded) is MultiDecoderIVAE and loaded.config == model.config
    x = _data(3, seed=9)
    torch.testing.assert_close(loaded.reconstruct(x, 1), model.reconstruct(x, 1))
    assert isinstance(load_model(path, model_class=MultiDecoderIVAE), MultiDecoderIVAE)
    # the classifier uses the same format
    clf = DigitClassifier(seed=0)
    save_checkpoint(tmp_path / "clf.pt", clf)
    torch.testing.assert_close(load_model(tmp_path / "clf.pt").state_dict(), clf.state_dict())
    assert type(load_classifier(tmp_path / "clf.pt")) is DigitClassifier
    with pytest.raises(InputError, match="holds a MultiDecoderIVAE, expected a DigitClassifier"):
        load_classifier(path)


def test_checkpoint_bad_input(tmp_path):
    path = tmp_path / "beta.pt"
    save_checkpoint(path, BetaVAE(VAEConfig(**TINY), seed=0))
    with pytest.raises(InputError, match="holds a BetaVAE, expected a MultiEncoderIVAE") as e:
        load_model(path, model_class=MultiEncoderIVAE)
    assert "\n" not in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not an oatomo model checkpoint") as e:
        load_model(junk)
    assert "\n" not in str(e.value)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="format must be"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(InputError, match="missing.pt: file not found"):
        load_model(tmp_path / "missing.pt")
    # resuming a different model class from this checkpoint
    with pytest.raises(InputError, match="holds a BetaVAE"):
        train(MultiDecoderIVAE(VAEConfig(**TINY)), [_data(4), _data(4)], epochs=1,
              batch_size=4, device="cpu", checkpoint=path, resume=True)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    envs = [_data(10, seed=1), _data(14, seed=2)]  # unequal sizes: the smaller one cycles
    kwargs = {"epochs": 3, "batch_size": 8, "lr": 2e-3, "seed": 7, "device": "cpu"}
    ref = MultiEncoderIVAE(VAEConfig(**TINY), seed=0)
    ref_result = train(ref, envs, **kwargs)

    class Interrupt(Exception):
        pass

    def stop_at_7(step, terms):
        if step == 7:
            raise Interrupt

    path = tmp_path / "run.pt"
    model = MultiEncoderIVAE(VAEConfig(**TINY), seed=0)
    with pytest.raises(Interrupt):
        train(model, envs, checkpoint=path, checkpoint_every=3, on_step=stop_at_7, **kwargs)
    assert torch.load(path, weights_only=True)["step"] == 6  # last checkpoint before step 7
    fresh = MultiEncoderIVAE(VAEConfig(**TINY), seed=123)  # weights come from the checkpoint
    result = train(fresh, envs, checkpoint=path, resume=True, **kwargs)
    assert result.resumed_from == 6 and result.step == ref_result.step == 12
    torch.testing.assert_close(fresh.state_dict(), ref.state_dict(), rtol=0, atol=0)
    assert result.history == ref_result.history
    with pytest.raises(InputError, match="cannot resume: checkpoint has seed=7"):
        train(fresh, envs, checkpoint=path, resume=True, **{**kwargs, "seed": 8})


def test_train_accepts_datasets_with_targets():
    class Pairs(torch.utils.data.Dataset):
        def __init__(self, seed):
            self.x, self.t = _data(6, (1, 8, 8), seed), _data(6, (1, 8, 8), seed + 10)

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return self.x[i], self.t[i]

    model = MultiDecoderIVAE(VAEConfig(in_shape=(1, 8, 8), latent_dim=2, channels=(4,),
                                       hidden=0, likelihood="gaussian", obs_sigma=0.2), seed=0)
    result = train(model, [Pairs(0), Pairs(1)], epochs=2, batch_size=4, device="cpu")
    assert result.step == 2 * 3 and len(result.history) == 2


def test_train_bad_input():
    model = MultiDecoderIVAE(VAEConfig(**TINY))
    with pytest.raises(InputError, match="has 2 environments, got data for 3"):
        train(model, [_data(4)] * 3, epochs=1, batch_size=6, device="cpu")
    with pytest.raises(InputError, match="smaller than the number of environments"):
        train(model, [_data(4)] * 2, epochs=1, batch_size=1, device="cpu")
    with pytest.raises(InputError, match="divisible by 2\\^2"):
        VAEConfig(in_shape=(1, 10, 10), channels=(4, 4))
    with pytest.raises(InputError, match="x must be a tensor of shape"):
        model.loss(_data(2, (2, 16, 16)), 0)


def test_checkpoints_are_byte_reproducible(tmp_path):
    """Equal training runs give equal bytes (the archive holds no temporary file name)."""
    paths = []
    for k in range(2):
        d = tmp_path / f"run{k}"
        d.mkdir()
        model = MultiDecoderIVAE(VAEConfig(**TINY), seed=0)
        train(model, [_data(8, seed=1), _data(8, seed=2)], epochs=1, batch_size=8, seed=0,
              device="cpu", checkpoint=d / "m.pt")
        paths.append(d / "m.pt")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert b".tmp" not in paths[0].read_bytes()
