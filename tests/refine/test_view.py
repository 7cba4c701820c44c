"""The view channels (which directions each pixel sees of the array): closed forms, their
covariance under the trainer's rotations and mirrors, and a refiner that takes them; and
the edge-weighted uncertainty map (closed form, scale)."""

import math

import numpy as np
import pytest

from oatomo import Grid, InputError
from oatomo.geometry import SensorArray, ring_array
from oatomo.learn.patches import patch_batch
from oatomo.refine.view import VIEW_NAMES, channel_signs, view_channels

GRID = Grid(16, 1.6e-3)


def _harmonics(phi: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(2 * phi), np.sin(2 * phi), np.cos(4 * phi), np.sin(4 * phi)])


def test_one_sensor_gives_the_harmonics_of_its_direction():
    s = (0.004, -0.007)
    v = view_channels(SensorArray(np.array([s])), GRID)
    yy, xx = np.meshgrid(GRID.y, GRID.x, indexing="ij")
    np.testing.assert_allclose(v, _harmonics(np.arctan2(s[1] - yy, s[0] - xx)), atol=1e-6)


def test_a_half_ring_sees_every_direction_from_its_centre():
    n = 64
    angles = -math.pi + math.pi * (np.arange(n) + 0.5) / n  # 2 phi evenly over 2 pi
    pos = 0.02 * np.stack([np.cos(angles), np.sin(angles)], 1)
    v = view_channels(SensorArray(pos), Grid(3, 3e-4))  # odd: a pixel at the centre
    np.testing.assert_allclose(v[:, 1, 1], 0.0, atol=1e-6)
    # a full ring too, and a far point sensor below is seen straight down: c2 = -1, c4 = 1
    np.testing.assert_allclose(view_channels(ring_array(90, 0.02), Grid(3, 3e-4))[:, 1, 1],
                               0.0, atol=1e-6)
    far = view_channels(SensorArray(np.array([[0.0, -0.049]])), Grid(3, 3e-7))[:, 1, 1]
    np.testing.assert_allclose(far, [-1.0, 0.0, 1.0, 0.0], atol=1e-6)


def test_the_trainers_rotations_and_mirrors_move_the_channels_as_the_array_moves():
    rng = np.random.default_rng(3)
    pos = rng.uniform(-0.005, 0.005, (12, 2)) + [0.0, -0.012]
    image = rng.normal(size=(GRID.n, GRID.n)).astype(np.float32)
    x = np.concatenate([image[None], view_channels(SensorArray(pos), GRID)])[None]
    data = (x, x[:, :1].copy(), np.zeros(1, np.int64))
    signs = channel_signs(1)
    seen = set()
    for step in range(40):
        (xb,), _, _ = patch_batch(data, step, 1, GRID.n, signs=signs)
        for k in range(4):
            for flip in (False, True):
                img = np.rot90(image, k)
                if flip:
                    img = img[:, ::-1]
                if not np.array_equal(img, xb[0]):
                    continue
                p = pos.copy()
                for _ in range(k):  # np.rot90 moves the point (x, y) to (y, -x)
                    p = np.stack([p[:, 1], -p[:, 0]], 1)
                if flip:  # reversing the columns mirrors x
                    p[:, 0] = -p[:, 0]
                np.testing.assert_allclose(xb[1:], view_channels(SensorArray(p), GRID),
                                           atol=1e-6)
                seen.add((k, flip))
    assert len(seen) == 8


def test_a_view_refiner_takes_the_channels_unscaled(tmp_path):
    torch = pytest.importorskip("torch")
    from oatomo.learn import save_checkpoint
    from oatomo.learn.skipvae import SkipMultiDecoderIVAE, SkipVAEConfig
    from oatomo.refine import load_refiner
    from oatomo.scanners import CANONICAL_PITCH, FAMILY, FAMILY_KEY

    model = SkipMultiDecoderIVAE(SkipVAEConfig(in_channels=6, n_envs=2, channels=(4, 4, 8),
                                               latent_dim=4), seed=1)
    with torch.no_grad():  # the residual output starts at zero: give the decoders weights
        gen = torch.Generator().manual_seed(2)
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    path = save_checkpoint(tmp_path / "view.npz", model.eval(), train={FAMILY_KEY: {
        "kind": "multi-decoder", "family": FAMILY.to_dict(), "pitch": CANONICAL_PITCH,
        "inputs": ["mb-tv", "ubp"], "env_names": ["a", "b"], "uncertainty": "decoders",
        "view_channels": list(VIEW_NAMES)}})
    grid = Grid(16, 16 * CANONICAL_PITCH)
    rng = np.random.default_rng(0)
    images = rng.random((2, 16, 16)).astype(np.float32)
    arc = ring_array(48, 0.02, 0.6 * math.pi, -0.8 * math.pi)
    view = view_channels(arc, grid)
    a = load_refiner(path, backend="numpy")
    b = load_refiner(path, backend="torch")
    assert a.view and b.view
    ra, rb = a.refine_images(images, view=view), b.refine_images(images, view=view)
    np.testing.assert_allclose(ra.refined, rb.refined, atol=1e-5 * np.abs(ra.refined).max())
    # refine(c x) = c refine(x): the view channels are geometry and are not scaled
    rc = a.refine_images(2.5 * images, view=view)
    np.testing.assert_allclose(rc.refined, 2.5 * ra.refined, rtol=1e-5,
                               atol=1e-6 * np.abs(ra.refined).max())
    # the view matters: another array gives another image
    other = a.refine_images(images, view=view_channels(ring_array(48, 0.02), grid))
    assert not np.allclose(other.refined, ra.refined)
    # with the turns and mirrors of the input, the view channels turn with the array
    import dataclasses

    tta = dataclasses.replace(a, meta={**a.meta, "tta": True})
    answers = []
    for k in range(4):
        for flip in (False, True):
            p = arc.positions.copy()
            for _ in range(k):
                p = np.stack([p[:, 1], -p[:, 0]], 1)
            if flip:
                p[:, 0] = -p[:, 0]
            xt = np.rot90(images, k, (1, 2))
            xt = np.ascontiguousarray(xt[..., ::-1] if flip else xt)
            r = a.refine_images(xt, n_samples=0,
                                view=view_channels(SensorArray(p), grid)).refined
            answers.append(np.rot90(r[..., ::-1] if flip else r, -k))
    np.testing.assert_allclose(tta.refine_images(images, n_samples=0, view=view).refined,
                               np.mean(answers, 0), rtol=1e-5,
                               atol=1e-5 * np.abs(ra.refined).max())
    with pytest.raises(InputError, match="view channels"):
        a.refine_images(images)
    with pytest.raises(InputError, match="view must be"):
        a.refine_images(images, view=view[:2])


def test_edge_weighted_map_closed_form_and_scale():
    from oatomo.refine.refiner import edge_weighted

    n, slope, spread = 40, 0.3, 0.02
    ramp = slope * np.arange(n, dtype=np.float64)[None, :].repeat(n, 0)  # |grad| = slope
    m = edge_weighted(np.full((n, n), spread), ramp)
    # away from the borders: sqrt(spread * slope), whatever the smoothing
    np.testing.assert_allclose(m[8:-8, 8:-8], math.sqrt(spread * slope), rtol=1e-5)
    flat = edge_weighted(np.full((n, n), spread), np.ones((n, n)))
    np.testing.assert_allclose(flat, 0.0, atol=1e-12)  # no edge, no error expected
    rng = np.random.default_rng(1)
    s, x = rng.random((n, n)), rng.random((n, n))
    np.testing.assert_allclose(edge_weighted(3.0 * s, 3.0 * x), 3.0 * edge_weighted(s, x),
                               rtol=1e-5)


def test_edge_weighted_map_limited_view_term_closed_form():
    from oatomo.refine.refiner import edge_weighted

    n, slope, spread = 40, 0.3, 0.02
    ramp = slope * np.arange(n, dtype=np.float64)[None, :].repeat(n, 0)
    sp = np.full((n, n), spread)
    plain = edge_weighted(sp, ramp)
    # every direction seen (R = 0): the edge term alone, to the bit
    np.testing.assert_array_equal(edge_weighted(sp, ramp, view=np.zeros((4, n, n))), plain)
    # a one-sided view everywhere (R = 1) and a uniform spread: the smoothed spread, scaled
    # to the edge term's maximum, is added: twice the edge term away from the borders
    one_sided = np.zeros((4, n, n))
    one_sided[0] = 1.0
    m = edge_weighted(sp, ramp, view=one_sided)
    np.testing.assert_allclose(m[8:-8, 8:-8], 2 * math.sqrt(spread * slope), rtol=1e-5)
    # R is |(c2, s2)|: the same view turned by 45 degrees (s2 instead of c2) gives the same
    turned = np.zeros((4, n, n))
    turned[1] = -1.0
    np.testing.assert_allclose(edge_weighted(sp, ramp, view=turned), m, rtol=1e-6)
    # in Pa: scaling the spread and the image scales the map (the view is geometry)
    rng = np.random.default_rng(2)
    s, x, v = rng.random((n, n)), rng.random((n, n)), rng.uniform(-1, 1, (4, n, n))
    np.testing.assert_allclose(edge_weighted(3.0 * s, 3.0 * x, view=v),
                               3.0 * edge_weighted(s, x, view=v), rtol=1e-5)
    with pytest.raises(InputError, match="view must be"):
        edge_weighted(s, x, view=v[:, :5])
