"""Weights archives (.npz) and the NumPy inference of the convolutional VAEs.

The NumPy back end is an independent implementation of the PyTorch layers: every test
compares it with the PyTorch model it was exported from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from oatomo.errors import InputError
from oatomo.io import read_image_info
from oatomo.learn.checkpoint import load_model, save_checkpoint, sidecar_path
from oatomo.learn.conv import ConvBetaVAE, ConvMultiDecoderIVAE, ConvVAEConfig
from oatomo.learn.records import META_KEY, is_weights_archive, read_weights, write_weights
from oatomo.refine.weights import NumpyConvVAE


def _model(cls, **kw):
    cfg = ConvVAEConfig(**{**dict(n_envs=3, depth=2, width=8, latent_dim=4), **kw})
    model = cls(cfg, seed=0).eval()
    with torch.no_grad():  # biases are zero at initialisation: make every term count
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


@pytest.mark.parametrize("cls,likelihood,residual", [(ConvMultiDecoderIVAE, "gaussian", False),
                                                     (ConvBetaVAE, "bernoulli", False),
                                                     (ConvMultiDecoderIVAE, "profiled", True)])
def test_numpy_inference_equals_pytorch(cls, likelihood, residual, tmp_path):
    model = _model(cls, likelihood=likelihood, residual=residual)
    path = save_checkpoint(tmp_path / "m.npz", model)
    net, meta = NumpyConvVAE.load(path)
    assert meta["model_class"] == cls.__name__ and net.likelihood == likelihood
    assert net.residual is residual
    x = np.random.default_rng(0).standard_normal((3, 2, 20, 36)).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        mu, logvar = model.encode(xt)
        want = {None: model.reconstruct(xt)}
        for e in range(net.n_envs):
            want[e] = model.reconstruct(xt, e)
    got_mu, got_logvar = net.encode(x)
    np.testing.assert_allclose(got_mu, mu.numpy(), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(got_logvar, logvar.numpy(), atol=2e-5, rtol=1e-4)
    assert len(want) == (4 if cls is ConvMultiDecoderIVAE else 1)
    for e, ref in want.items():
        got = net.reconstruct(x, e)
        assert got.shape == (3, 1, 20, 36) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref.numpy(), atol=2e-5, rtol=1e-4)
    bad = (3, "env must lie in 0..2") if net.n_envs else (0, "has no variant decoders")
    with pytest.raises(InputError, match=bad[1]):
        net.decode(got_mu, bad[0])
    with pytest.raises(InputError, match="multiples of 4"):
        net.encode(x[:, :, :18])


def test_archive_round_trip_and_same_bytes(tmp_path):
    model = _model(ConvMultiDecoderIVAE)
    a = save_checkpoint(tmp_path / "a.npz", model, step=7, history=[{"epoch": 1}])
    b = save_checkpoint(tmp_path / "b.npz", model, step=7, history=[{"epoch": 1}])
    assert a.read_bytes() == b.read_bytes() and is_weights_archive(a)
    assert json.loads(sidecar_path(a).read_text())["step"] == 7
    back = load_model(a, model_class="ConvMultiDecoderIVAE")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items(),
                                strict=True):
        assert k == k2 and torch.equal(v, v2)
    with pytest.raises(InputError, match="holds no training state"):
        save_checkpoint(tmp_path / "c.npz", model,
                        optimizer=torch.optim.Adam(model.parameters()))
    save_checkpoint(tmp_path / "m.pt", model)
    assert not is_weights_archive(tmp_path / "m.pt")


def _archive(path, meta, arrays):
    write_weights(path, meta, {})
    with zipfile.ZipFile(path, "a") as z:
        for name, arr in arrays.items():
            import io
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=True)
            z.writestr(f"{name}.npy", buf.getvalue())
    return path


def test_bad_archives_are_one_line_errors(tmp_path, monkeypatch):
    good = {"format": "oatomo-model", "version": 1, "model_class": "ConvBetaVAE",
            "config": ConvVAEConfig(depth=0, width=4, latent_dim=2).to_dict()}
    text = tmp_path / "t.npz"
    text.write_text("not a zip")
    with pytest.raises(InputError, match="not a zip file"):
        read_weights(text)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(3))
    with pytest.raises(InputError, match=f"no {META_KEY} member"):
        read_weights(plain)
    with pytest.raises(InputError, match="version 9 is not supported"):
        read_weights(_archive(tmp_path / "v.npz", {**good, "version": 9}, {}))
    with pytest.raises(InputError, match="format must be 'oatomo-model'"):
        read_weights(_archive(tmp_path / "f.npz", {**good, "format": "x"}, {}))
    pickled = _archive(tmp_path / "p.npz", good, {"w": np.array([object()], dtype=object)})
    with pytest.raises(InputError, match="'w.npy' holds Python objects"):
        read_weights(pickled)  # object arrays would need pickle: refused
    import io

    lie = io.BytesIO()  # a header declaring 10^11 floats over 16 bytes of data
    np.lib.format.write_array_header_1_0(lie, {"descr": "<f4", "fortran_order": False,
                                               "shape": (10**11,)})
    liar = tmp_path / "lie.npz"
    write_weights(liar, good, {})
    with zipfile.ZipFile(liar, "a") as z:
        z.writestr("w.npy", lie.getvalue() + bytes(16))
    with pytest.raises(InputError, match="loading the model weights"):
        read_weights(liar)  # refused before np.load allocates what the header says
    missing = _archive(tmp_path / "m.npz", good, {"mu_head.weight": np.zeros((2, 8, 3, 3))})
    with pytest.raises(InputError, match="weights do not fit the ConvBetaVAE config") as exc:
        NumpyConvVAE.load(missing)
    assert str(missing) in str(exc.value)
    deep = _archive(tmp_path / "d.npz", {**good, "config": {**good["config"], "depth": 10**9}},
                    {"mu_head.weight": np.zeros((2, 8, 3, 3))})
    with pytest.raises(InputError, match="depth 1000000000"):
        NumpyConvVAE.load(deep)  # refused at once, not after listing 10^9 blocks
    monkeypatch.setenv("OATOMO_MAX_BYTES", "100")
    with pytest.raises(InputError, match="loading the model weights"):
        read_weights(missing)


def test_shipped_model_numpy_equals_pytorch_back_end():
    """The refiner `oatomo reconstruct` uses by default, both back ends, one scan."""
    from oatomo import phantoms
    from oatomo.forward import simulate
    from oatomo.geometry import Acquisition, Grid, ring_array
    from oatomo.refine import load_refiner
    from oatomo.resources import default_model_path

    path = default_model_path()
    fast = load_refiner(path)
    slow = load_refiner(path, backend="torch")
    assert isinstance(fast.model, NumpyConvVAE) and isinstance(slow.model, torch.nn.Module)
    grid = Grid(96, 0.0096)
    sensors, acq = ring_array(64, 0.02), Acquisition(40e6, 1200, 1500.0)
    sino = simulate(phantoms.vessels(grid, 2), grid, sensors, acq)
    a = fast.refine_scan(sino, sensors, acq, grid, n_samples=4, seed=1)
    b = slow.refine_scan(sino, sensors, acq, grid, n_samples=4, seed=1)
    scale = float(np.abs(b.refined).max())
    assert scale > 0.1
    np.testing.assert_allclose(a.refined, b.refined, atol=1e-4 * scale)
    np.testing.assert_allclose(a.std, b.std, atol=1e-4 * scale)
    v = fast.refine_scan(sino, sensors, acq, grid, n_samples=0, env=fast.env_names[3])
    w = slow.refine_scan(sino, sensors, acq, grid, n_samples=0, env=fast.env_names[3])
    np.testing.assert_allclose(v.refined, w.refined, atol=1e-4 * scale)
    assert not np.allclose(v.refined, a.refined, atol=1e-3 * scale)


def test_reconstruct_with_the_shipped_model_does_not_import_torch(tmp_path):
    """The default refinement runs on NumPy: PyTorch's import costs more than the job.
    Both shipped refiners: the TV refiner (the default, on a grid of its pitch range) and
    the scanner-family refiner of UBP images."""
    code = (
        "import sys\n"
        "from oatomo.cli import main\n"
        f"assert main(['simulate', '--setup', 'ring32_r22', '--phantom', 'disk', '-o', "
        f"r'{tmp_path / 's.h5'}', '-q']) == 0\n"
        f"assert main(['reconstruct', r'{tmp_path / 's.h5'}', '--method', 'ubp', "
        f"'--refine', '--png', 'none', '-q']) == 0\n"
        f"assert main(['reconstruct', r'{tmp_path / 's.h5'}', '--refine', '--n', '96', "
        f"'--fov', '0.0096', '--iters', '5', '--png', 'none', '-q']) == 2\n"
        f"assert main(['reconstruct', r'{tmp_path / 's.h5'}', '--refine', '--n', '96', "
        f"'--fov', '0.0096', '--png', 'none', '-q']) == 0\n"
        "assert 'torch' not in sys.modules, 'PyTorch was imported'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "s_ubp.h5").is_file()
    info = read_image_info(tmp_path / "s_mb-tv.h5")["provenance"]["refinement"]
    assert info["applied"] and info["backend"] == "numpy" and info["input"] == "mb-tv+ubp"


def test_blas_threads_sets_and_restores_the_count():
    from oatomo._blas import _candidates, blas_threads, openblas

    if not _candidates():
        pytest.skip("NumPy's BLAS is not the OpenBLAS its wheels bundle")
    funcs = openblas()
    assert funcs is not None  # a bundled OpenBLAS must be found
    put, get = funcs
    before = get()
    put(2)
    try:
        with blas_threads(1):
            assert get() == 1
            np.ones((64, 64)) @ np.ones((64, 64))  # NumPy's BLAS still works
        assert get() == 2
        with blas_threads(None):
            assert get() == 2
    finally:
        put(before)


def test_checkpoint_configs_are_bounded_before_building(tmp_path, monkeypatch):
    """A checkpoint's config is checked before the model is built: integers over
    MAX_CONFIG_INT at once, and the weights it implies (counted on the meta device)
    against OATOMO_MAX_BYTES."""
    from oatomo.learn.checkpoint import MAX_CONFIG_INT, build_model, write_checkpoint_bytes

    cfg = ConvVAEConfig(depth=1, width=8, latent_dim=4).to_dict()
    with pytest.raises(InputError, match=f"depth exceeds {MAX_CONFIG_INT}"):
        build_model("ConvBetaVAE", {**cfg, "depth": 10**9})
    path = tmp_path / "wide.pt"
    record = {"format": "oatomo-model", "version": 1, "model_class": "ConvBetaVAE",
              "config": {**cfg, "width": 60000}, "state_dict": {}}
    write_checkpoint_bytes(path, record)
    with pytest.raises(InputError, match="building the ConvBetaVAE would need") as exc:
        load_model(path)
    assert str(path) in str(exc.value)
    model = build_model("ConvBetaVAE", cfg, seed=3)  # a sound config builds as before
    monkeypatch.setenv("OATOMO_MAX_BYTES", str(4 * sum(p.numel() for p in model.parameters())))
    build_model("ConvBetaVAE", cfg)  # exactly at the limit
    monkeypatch.setenv("OATOMO_MAX_BYTES", "1K")
    with pytest.raises(InputError, match="OATOMO_MAX_BYTES"):
        build_model("ConvBetaVAE", cfg)


@pytest.mark.parametrize("k, stride, pad, batch", [(3, 1, 1, 2), (5, 1, 2, 1), (1, 1, 0, 1),
                                                   (4, 2, 1, 2), (3, 1, 0, 1)])
def test_numpy_convolution_equals_pytorch(k, stride, pad, batch):
    """Both paths of the NumPy convolution (shifted sums for size-keeping stride-1 kernels,
    im2col for the rest) against ``torch.nn.functional.conv2d``."""
    from oatomo.refine.weights import _conv

    rng = np.random.default_rng(k + 10 * stride + pad)
    x = rng.standard_normal((batch, 3, 13, 10)).astype(np.float32)
    w = rng.standard_normal((5, 3, k, k)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                      torch.from_numpy(b), stride=stride, padding=pad).numpy()
    got = _conv(x, w, b, stride, pad)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_encode_without_log_variance_gives_the_same_mean():
    torch.manual_seed(0)
    model = ConvMultiDecoderIVAE(ConvVAEConfig(width=4, depth=1, latent_dim=3, n_envs=2))
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    fast = NumpyConvVAE("ConvMultiDecoderIVAE", model.config.to_dict(), state)
    x = np.random.default_rng(1).standard_normal((1, 2, 16, 16)).astype(np.float32)
    mu, logvar = fast.encode(x)
    mu2, none = fast.encode(x, logvar=False)
    assert none is None and logvar.shape == mu.shape
    np.testing.assert_array_equal(mu, mu2)


def test_residual_refiner_numpy_equals_torch_and_is_scale_equivariant(tmp_path):
    """A residual model through :class:`~oatomo.refine.Refiner`: the refined image is the
    first channel plus the decoded correction, in the first channel's units, the same with
    both engines (uncertainty map included), and ``refine(a x) = a refine(x)``."""
    from oatomo.refine.refiner import Refiner

    model = _model(ConvMultiDecoderIVAE, likelihood="profiled", residual=True)
    path = save_checkpoint(tmp_path / "r.npz", model)
    net, _ = NumpyConvVAE.load(path)
    envs = ("a", "b", "c")
    kw = dict(kind="multi-decoder", inputs=("mb-tv", "ubp"), env_names=envs,
              uncertainty="both")
    engines = [Refiner(model=net, **kw), Refiner(model=model, **kw)]
    x = np.random.default_rng(2).standard_normal((2, 24, 24)).astype(np.float32)
    x[0] = np.abs(x[0])
    out = [r.refine_images(x, n_samples=3, seed=4) for r in engines]
    np.testing.assert_allclose(out[0].refined, out[1].refined, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[0].std, out[1].std, rtol=1e-3, atol=1e-5)
    # the correction is not zero (random weights), and it is added to the TV channel
    with torch.no_grad():
        corr = model.decoder(model.encode(torch.from_numpy(x / np.abs(x).reshape(2, -1).max(1)
                                                           [:, None, None])[None])[0])
    want = (x[0] / np.abs(x[0]).max() + corr[0, 0].numpy()) * np.abs(x[0]).max()
    np.testing.assert_allclose(out[0].refined, want, rtol=1e-4, atol=1e-5)
    assert np.abs(corr.numpy()).max() > 1e-3
    for a in (0.25, 8.0):
        scaled = engines[0].refine_images(np.float32(a) * x, n_samples=3, seed=4)
        np.testing.assert_allclose(scaled.refined, a * out[0].refined, rtol=1e-4,
                                   atol=1e-5 * a)


def test_blas_threads_nest_and_overlap_across_threads():
    """Nested blocks give the outer block's count back; blocks in two threads that close
    in the order they opened (the first thread's first) leave the count as it was, where
    each restoring what it had found would leave the second thread's 1 behind."""
    import threading

    from oatomo._blas import _candidates, blas_threads, openblas

    if not _candidates():
        pytest.skip("NumPy's BLAS is not the OpenBLAS its wheels bundle")
    put, get = openblas()
    before = get()
    put(2)
    try:
        with blas_threads(1):
            with blas_threads(3):
                assert get() == 3
            assert get() == 1
        assert get() == 2
        opened, first_closed = threading.Event(), threading.Event()

        def second() -> None:
            with blas_threads(1):
                opened.set()
                first_closed.wait(10)

        with blas_threads(1):
            worker = threading.Thread(target=second)
            worker.start()
            assert opened.wait(10)
        first_closed.set()
        worker.join(10)
        assert get() == 2
    finally:
        put(before)


def test_load_refiner_reads_a_file_once_and_again_when_it_changes(tmp_path):
    """A refiner loaded again comes from the cache (the same networks, a fresh record
    whose fields a caller may change); a file rewritten on disk is read again."""
    import os
    import shutil

    from oatomo.refine import load_refiner
    from oatomo.resources import MODELS, resource_path

    src = resource_path(MODELS, "tv_refiner.npz")
    path = shutil.copy(src, tmp_path / "m.npz")
    shutil.copy(sidecar_path(src), sidecar_path(path))
    first, second = load_refiner(path), load_refiner(path)
    assert second.model is first.model and second is not first
    first.uncertainty = "decoders"
    first.meta["tta"] = 1
    third = load_refiner(path)
    assert third.uncertainty == "decoders-edges" and third.meta["tta"] == 4
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_refiner(path).model is not first.model
    with pytest.raises(InputError):
        load_refiner(tmp_path / "missing.npz")
