"""An ensemble refiner: the refined image is the mean of its networks' answers (each
network loaded from its own archive beside the model's and computed here on its own), the
turns and mirrors can be shared out among the networks, and a broken ensemble is a
one-line error."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from oatomo import InputError
from oatomo.learn.records import read_weights, write_weights
from oatomo.refine import load_refiner
from oatomo.resources import default_model_path

MODEL = default_model_path("mb-tv")
FAMILY_KEY = "oatomo_family_refiner"


def _with(meta: dict, **family) -> dict:
    out = copy.deepcopy(meta)
    out["train"][FAMILY_KEY].update(family)
    for k, v in family.items():
        if v is None:
            del out["train"][FAMILY_KEY][k]
    return out


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The shipped weights with ``members`` naming another network (the same weights with
    every decoder convolution scaled by 0.8: another answer), and that network alone."""
    tmp = tmp_path_factory.mktemp("ensemble")
    meta, state = read_weights(MODEL)
    other = {k: (0.8 * v if k.startswith("decoder") and v.ndim == 4 else v)
             for k, v in state.items()}
    assert any(not np.array_equal(other[k], state[k]) for k in state)
    plain = _with(meta, members=None, tta=False)
    write_weights(tmp / "member.npz", plain, other)
    write_weights(tmp / "single.npz", plain, state)
    write_weights(tmp / "ensemble.npz", _with(meta, members=["member.npz"], tta=False), state)
    write_weights(tmp / "shared.npz", _with(meta, members=["member.npz"], tta=True,
                                            tta_shared=True), state)
    return tmp


def _x(seed: int, n: int = 40) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(size=(2, n, n))).astype(np.float32)


def test_refined_image_is_the_mean_of_the_networks(archives):
    ens = load_refiner(archives / "ensemble.npz")
    assert len(ens.members) == 1 and ens.passes() == [(0, 0, False), (1, 0, False)]
    x = _x(1)
    a = load_refiner(archives / "single.npz").refine_images(x, n_samples=0).refined
    b = load_refiner(archives / "member.npz").refine_images(x, n_samples=0).refined
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()  # two different answers
    got = ens.refine_images(x, n_samples=4)
    np.testing.assert_allclose(got.refined, (a + b) / 2, rtol=1e-5,
                               atol=1e-6 * float(np.abs(a).max()))
    # the uncertainty map is the first network's (its variant decoders' spread)
    single = load_refiner(archives / "single.npz").refine_images(x, n_samples=4)
    assert got.std is not None and single.std is not None
    from oatomo.refine.refiner import edge_weighted

    raw = dataclasses.replace(ens, uncertainty="decoders").refine_images(x, n_samples=4).std
    np.testing.assert_allclose(got.std, edge_weighted(raw, got.refined), rtol=1e-5,
                               atol=1e-6 * float(raw.max()))
    # "ensemble-edges": the networks' spread added to the decoders' before the edges
    both = dataclasses.replace(ens, uncertainty="ensemble-edges").refine_images(
        x, n_samples=4)
    np.testing.assert_allclose(both.refined, got.refined, rtol=1e-6)
    expected = edge_weighted(np.sqrt(raw.astype(np.float64) ** 2 + ((a - b) / 2) ** 2),
                             got.refined)
    np.testing.assert_allclose(both.std, expected, rtol=1e-4,
                               atol=1e-5 * float(expected.max()))
    assert (both.std >= got.std - 1e-6 * float(got.std.max())).all()
    # scale-equivariant; the PyTorch back end loads the members too and agrees
    np.testing.assert_allclose(ens.refine_images(2.5 * x, n_samples=0).refined,
                               2.5 * got.refined, rtol=1e-4,
                               atol=1e-5 * float(np.abs(got.refined).max()))
    torch_ens = load_refiner(archives / "ensemble.npz", backend="torch")
    assert len(torch_ens.members) == 1
    np.testing.assert_allclose(torch_ens.refine_images(x, n_samples=0).refined,
                               got.refined, atol=1e-4 * float(np.abs(got.refined).max()))


def test_shared_turns_and_mirrors_alternate_between_the_networks(archives):
    ens = load_refiner(archives / "shared.npz")
    passes = ens.passes()
    assert len(passes) == 8 and [m for m, _, _ in passes] == [0, 1] * 4
    assert {(k, f) for _, k, f in passes} == {(k, f) for k in range(4) for f in (0, 1)}
    nets = [load_refiner(archives / n) for n in ("single.npz", "member.npz")]
    x = _x(2, 48)
    answers = []
    for m, k, flip in passes:
        xt = np.rot90(x, k, (1, 2))
        xt = np.ascontiguousarray(xt[..., ::-1] if flip else xt)
        r = nets[m].refine_images(xt, n_samples=0).refined
        answers.append(np.rot90(r[..., ::-1] if flip else r, -k))
    np.testing.assert_allclose(ens.refine_images(x, n_samples=0).refined,
                               np.mean(answers, 0), rtol=1e-5,
                               atol=1e-6 * float(np.abs(answers[0]).max()))
    # without sharing, every network takes all eight
    full = dataclasses.replace(ens, meta={**ens.meta, "tta_shared": False})
    assert len(full.passes()) == 16


def test_broken_ensembles_are_one_line_errors(archives, tmp_path):
    meta, state = read_weights(MODEL)
    cases = {
        "missing": (["absent.npz"], "is missing"),
        "outside": (["../member.npz"], "file name beside the model"),
        "not a list": ("member.npz", "list of file names"),
    }
    for name, (members, message) in cases.items():
        path = archives / f"{name.replace(' ', '_')}.npz"
        write_weights(path, _with(meta, members=members), state)
        with pytest.raises(InputError, match=message) as err:
            load_refiner(path)
        assert "\n" not in str(err.value)
    # a member with members of its own
    write_weights(archives / "nested.npz", _with(meta, members=["member.npz"]), state)
    write_weights(archives / "outer.npz", _with(meta, members=["nested.npz"]), state)
    with pytest.raises(InputError, match="members of its own"):
        load_refiner(archives / "outer.npz")
