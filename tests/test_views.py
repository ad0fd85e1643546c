"""Tests of ssl_bench.views: batched ops vs torchvision, crop sampling statistics, BatchViews
determinism and checkpointing, config parsing, and the CPU per-sample path."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from omegaconf import OmegaConf

from ssl_bench.errors import ConfigError
from ssl_bench.views import batch as views_batch
from ssl_bench.views import kernels as V
from ssl_bench.views.batch import BatchEval, BatchViews
from ssl_bench.views.config import ViewPipeline, blur_kernel_size, parse_pipelines
from ssl_bench.views.cpu import build_cpu_views, cpu_eval_transform

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 20, 24, generator=g)


def _per_image(fn, x, params):
    return torch.stack([fn(x[i], float(params[i])) for i in range(x.shape[0])])


# ---------------------------------------------------------------------------- functional ops


@pytest.mark.parametrize(
    "ours, theirs, params",
    [
        (V.adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.4, 0.0, 2.0, 0.9]),
        (V.adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.0, 2.0, 0.9]),
        (V.adjust_saturation, TF.adjust_saturation, [0.6, 1.0, 1.4, 0.0, 2.0, 0.9]),
        (V.adjust_hue, TF.adjust_hue, [-0.5, -0.1, 0.0, 0.05, 0.3, 0.5]),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_colour_ops_match_torchvision(images, ours, theirs, params):
    f = torch.tensor(params)
    got = ours(images, f)
    want = _per_image(theirs, images, params)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_hue_on_grey_and_saturated_pixels():
    # grey pixels (chroma 0) and pure primaries hit the branch edges of RGB -> HSV
    px = torch.tensor(
        [[0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0], [1, 1, 1]]
    )
    x = px.T.reshape(1, 3, 1, 7).repeat(3, 1, 1, 1)
    params = [0.25, -0.4, 0.5]
    torch.testing.assert_close(
        V.adjust_hue(x, torch.tensor(params)),
        _per_image(TF.adjust_hue, x, params),
        atol=1e-4,
        rtol=0,
    )


def test_grayscale_and_solarize_match_torchvision(images):
    torch.testing.assert_close(
        V.to_grayscale(images),
        TF.rgb_to_grayscale(images, num_output_channels=3),
        atol=1e-6,
        rtol=0,
    )
    torch.testing.assert_close(V.solarize(images, 0.5), TF.solarize(images, 0.5))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_gaussian_blur_matches_torchvision(images, kernel_size):
    sigmas = [0.1, 0.5, 1.0, 1.7, 2.0, 0.3]
    got = V.gaussian_blur(images, torch.tensor(sigmas), kernel_size)
    want = torch.stack(
        [
            TF.gaussian_blur(images[i], [kernel_size, kernel_size], [s, s])
            for i, s in enumerate(sigmas)
        ]
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_blur_kernel_size_rule():
    assert [blur_kernel_size(s) for s in (16, 32, 64, 96, 224)] == [3, 3, 7, 9, 23]


def test_resized_crop_downscale_equals_torchvision_everywhere(images):
    # crops at least as large as the output never sample outside the box: exact everywhere
    boxes = torch.tensor(
        [
            [0, 0, 20, 24],
            [2, 3, 12, 10],
            [5, 1, 15, 20],
            [0, 14, 10, 10],
            [10, 0, 10, 24],
            [1, 1, 17, 13],
        ],
        dtype=torch.float32,
    )
    flip = torch.tensor([False, True, False, True, True, False])
    got = V.resized_crop(images, boxes, 10, flip)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        want = TF.resized_crop(images[i], top, left, h, w, [10, 10], antialias=False)
        if flip[i]:
            want = TF.horizontal_flip(want)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)


def test_resized_crop_upscale_equals_torchvision_inside(images):
    # up-scaling: equal except in the outermost output pixels, whose sample points fall outside the
    # box
    boxes = torch.tensor([[3, 4, 5, 7], [0, 0, 6, 6], [10, 15, 9, 4]], dtype=torch.float32)
    S = 32
    flip = torch.tensor([False, True, False])
    got = V.resized_crop(images[:3], boxes, S, flip)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        want = TF.resized_crop(images[i], top, left, h, w, [S, S], antialias=False)
        if flip[i]:
            want = TF.horizontal_flip(want)
        # rows/cols whose coordinate (j + .5) * n / S - .5 lies inside [0, n - 1]
        ry = [j for j in range(S) if 0 <= (j + 0.5) * h / S - 0.5 <= h - 1]
        rx = [j for j in range(S) if 0 <= (j + 0.5) * w / S - 0.5 <= w - 1]
        if flip[i]:
            rx = [S - 1 - j for j in rx]
        sel = (slice(None), torch.tensor(ry)[:, None], torch.tensor(rx)[None, :])
        torch.testing.assert_close(got[i][sel], want[sel], atol=1e-5, rtol=0)


def test_crop_box_statistics():
    g = torch.Generator().manual_seed(1)
    H, W, n = 64, 80, 20000
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = V.sample_crop_boxes(n, H, W, scale, ratio, g, "cpu")
    top, left, h, w = boxes.unbind(1)
    assert (boxes == boxes.round()).all()
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    assert (h >= 1).all() and (w >= 1).all()
    frac = h * w / (H * W)
    # rounding of the sides moves the area a little around the sampled fraction
    assert frac.min() >= 0.08 * 0.85 and frac.max() <= 1.0
    assert 0.45 < frac.mean() < 0.6  # mean of U(0.08, 1) is 0.54, larger ones get rejected
    logr = torch.log(w / h)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    inside = (logr >= lo - 0.1) & (logr <= hi + 0.1)
    assert inside.float().mean() > 0.99  # everything but the centre-crop fallback (and rounding)
    hist = torch.histc(logr[inside].clamp(lo, hi), bins=8, min=lo, max=hi) / inside.sum()
    assert hist.min() > 0.08 and hist.max() < 0.17, hist  # roughly uniform: 1/8 each
    # positions are spread over the free range
    assert left.float().mean() > 3 and top.float().mean() > 3


def test_crop_box_fallback_is_central():
    # no candidate can fit a 1:1 ratio range into an extreme image with a scale of 1: fallback
    g = torch.Generator().manual_seed(0)
    boxes = V.sample_crop_boxes(4, 10, 100, (1.0, 1.0), (1.0, 1.0), g, "cpu")
    assert boxes.tolist() == [[0.0, 45.0, 10.0, 10.0]] * 4


# ---------------------------------------------------------------------------- BatchViews


def _uint8_batch(B=8, H=36, W=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, 3, H, W), dtype=torch.uint8, generator=g)


def _simclr_and_small():
    return [
        ViewPipeline(num_crops=2, crop_size=32, blur_prob=0.5, solarize=0.2),
        ViewPipeline(num_crops=3, crop_size=16),
    ]


def test_batch_views_shapes_and_dtypes():
    views = BatchViews(_simclr_and_small(), MEAN, STD)(_uint8_batch())
    assert len(views) == 5
    assert [tuple(v.shape) for v in views] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 3
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in views)
    assert all(torch.isfinite(v).all() for v in views)


def test_batch_views_normalisation_on_grey_image():
    grey = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)
    pipe = ViewPipeline(jitter_prob=0.0, grayscale=0.0)
    (v, _) = BatchViews([pipe], MEAN, STD)(grey)
    torch.testing.assert_close(v, torch.full_like(v, (128 / 255 - 0.5) / 0.25), atol=1e-5, rtol=0)
    # with the colour ops on, a grey image stays (nearly) grey apart from brightness/contrast
    v2 = BatchViews([ViewPipeline(blur_prob=1.0)], MEAN, STD)(grey)[0]
    x = v2 * 0.25 + 0.5
    assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5
    assert (x.max(1).values - x.min(1).values).max() < 1e-3


def test_batch_views_same_seed_same_views_different_seed_different():
    x = _uint8_batch()
    a = BatchViews(_simclr_and_small(), MEAN, STD, seed=3)(x)
    b = BatchViews(_simclr_and_small(), MEAN, STD, seed=3)(x)
    c = BatchViews(_simclr_and_small(), MEAN, STD, seed=4)(x)
    assert all(torch.equal(u, w) for u, w in zip(a, b))
    assert not any(torch.equal(u, w) for u, w in zip(a, c))
    # two views of the same pipeline differ
    assert not torch.equal(a[0], a[1])


def test_rng_state_round_trip_and_reseed():
    x = _uint8_batch()
    bv = BatchViews(_simclr_and_small(), MEAN, STD, seed=7)
    assert bv.rng_state().numel() == 0  # nothing drawn yet
    bv(x)
    state = bv.rng_state()
    nxt = bv(x)
    bv.set_rng_state(state)
    again = bv(x)
    assert all(torch.equal(u, w) for u, w in zip(nxt, again))
    # restoring into a fresh module (generator not created yet) works too
    fresh = BatchViews(_simclr_and_small(), MEAN, STD, seed=0)
    fresh.set_rng_state(state)
    assert torch.equal(fresh.rng_state(), state)
    assert all(torch.equal(u, w) for u, w in zip(nxt, fresh(x)))
    bv.reseed(7)
    first = BatchViews(_simclr_and_small(), MEAN, STD, seed=7)(x)
    assert all(torch.equal(u, w) for u, w in zip(first, bv(x)))


def test_grayscale_p1_gives_equal_channels():
    pipe = ViewPipeline(grayscale=1.0, jitter_prob=1.0)
    v = BatchViews([pipe], MEAN, STD)(_uint8_batch())[0]
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 1], v[:, 2])


def test_solarize_p1_matches_functional():
    x = _uint8_batch()
    base = dict(jitter_prob=0.0, grayscale=0.0)
    plain = BatchViews([ViewPipeline(**base)], MEAN, STD, seed=5)(x)
    solar = BatchViews([ViewPipeline(**base, solarize=1.0)], MEAN, STD, seed=5)(x)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    for p, s in zip(plain, solar):
        want = (V.solarize(p * std + mean) - mean) / std
        torch.testing.assert_close(s, want, atol=1e-5, rtol=0)


def test_per_sample_parameters_differ_within_batch():
    # the same image repeated: every sample gets its own crop / flip / jitter, so views differ
    x = _uint8_batch(B=1).repeat(8, 1, 1, 1)
    v = BatchViews([ViewPipeline()], MEAN, STD)(x)[0]
    flat = v.flatten(1)
    assert all(not torch.equal(flat[0], flat[i]) for i in range(1, 8))


def test_colour_jitter_applies_random_order():
    # the op order must vary per sample: compare with brightness applied first vs last
    torch.manual_seed(0)
    grey_free = torch.rand(64, 3, 8, 8)
    pipe = ViewPipeline(jitter_prob=1.0, brightness=0.8, contrast=0.8, saturation=0.0, hue=0.0)
    f = torch.stack(
        [torch.full((64,), 1.5), torch.full((64,), 0.5), torch.ones(64), torch.zeros(64)]
    )
    order = torch.rand(64, 4).argsort(1)
    out = BatchViews._color_jitter(
        grey_free.clone(), pipe, torch.ones(64, dtype=torch.bool), f, order
    )
    b_first = V.adjust_contrast(V.adjust_brightness(grey_free, f[0]), f[1])
    c_first = V.adjust_brightness(V.adjust_contrast(grey_free, f[1]), f[0])
    pos = lambda k: (order == k).int().argmax(1)  # noqa: E731
    want = torch.where((pos(0) < pos(1)).view(-1, 1, 1, 1), b_first, c_first)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    assert 0 < (pos(0) < pos(1)).sum() < 64


def test_single_channel_input_becomes_rgb():
    x = _uint8_batch()[:, :1]
    views = BatchViews([ViewPipeline(num_crops=1, crop_size=16)], MEAN, STD)(x)
    assert views[0].shape == (8, 3, 16, 16)


def test_batch_eval():
    x = _uint8_batch(B=2, H=32, W=32)
    same = BatchEval(32, MEAN, STD)(x)
    torch.testing.assert_close(same, (x.float() / 255 - 0.5) / 0.25)
    small = BatchEval(16, MEAN, STD)(x)
    assert small.shape == (2, 3, 16, 16) and small.dtype == torch.float32


# ---------------------------------------------------------------------------- parse_pipelines


def test_parse_defaults_and_strength():
    (p,) = parse_pipelines([{}])
    assert p == ViewPipeline()
    cfg = OmegaConf.create(
        [
            {
                "crop_size": 24,
                "color_jitter": {"strength": 0.5, "prob": 1.0, "hue": 0.2},
                "blur": {"prob": 1.0, "sigma": [0.2, 1.0]},
                "solarize": 0.1,
            }
        ]
    )
    (q,) = parse_pipelines(cfg, image_size=32)
    assert (q.brightness, q.contrast, q.saturation, q.hue) == pytest.approx((0.2, 0.2, 0.2, 0.1))
    assert (
        q.jitter_prob == 1.0
        and q.blur_prob == 1.0
        and q.blur_sigma == (0.2, 1.0)
        and q.solarize == 0.1
    )
    assert isinstance(q.scale, tuple) and q.crop_size == 24


def test_parse_sorts_large_crops_first_stably():
    cfg = [
        {"crop_size": 16, "num_crops": 1},
        {"crop_size": 32, "num_crops": 2},
        {"crop_size": 16, "num_crops": 3},
        {"crop_size": 32, "num_crops": 4},
    ]
    got = [(p.crop_size, p.num_crops) for p in parse_pipelines(cfg)]
    assert got == [(32, 2), (32, 4), (16, 1), (16, 3)]


@pytest.mark.parametrize(
    "views, image_size, key",
    [
        ([{}, {"crop_sise": 32}], None, "augmentation.views[1].crop_sise"),
        ([{"color_jitter": {"hues": 0.1}}], None, "augmentation.views[0].color_jitter.hues"),
        ([{"blur": {"sigmas": 1}}], None, "augmentation.views[0].blur.sigmas"),
        ([{"num_crops": 0}], None, "augmentation.views[0].num_crops"),
        ([{}, {"crop_size": 0}], None, "augmentation.views[1].crop_size"),
        ([{}, {"crop_size": 64}], 32, "augmentation.views[1].crop_size"),
        ([{"scale": [0.0, 1.0]}], None, "augmentation.views[0].scale"),
        ([{"scale": [0.5, 0.2]}], None, "augmentation.views[0].scale"),
        ([{"scale": [0.5, 1.5]}], None, "augmentation.views[0].scale"),
        ([{"hflip": 1.5}], None, "augmentation.views[0].hflip"),
        ([{"grayscale": -0.1}], None, "augmentation.views[0].grayscale"),
        ([{"solarize": 2}], None, "augmentation.views[0].solarize"),
        ([{"color_jitter": {"prob": 1.1}}], None, "augmentation.views[0].color_jitter.prob"),
        ([{"blur": {"prob": -1}}], None, "augmentation.views[0].blur.prob"),
        (
            [{"color_jitter": {"contrast": -0.4}}],
            None,
            "augmentation.views[0].color_jitter.contrast",
        ),
        (
            [{"color_jitter": {"hue": 0.4, "strength": 2}}],
            None,
            "augmentation.views[0].color_jitter.hue",
        ),
        ([{"blur": {"sigma": [0.0, 2.0]}}], None, "augmentation.views[0].blur.sigma"),
        ([{"blur": {"sigma": [2.0, 1.0]}}], None, "augmentation.views[0].blur.sigma"),
        ([{"blur": {"kernel_size": 4}}], None, "augmentation.views[0].blur.kernel_size"),
        ([{"blur": {"kernel_size": 0}}], None, "augmentation.views[0].blur.kernel_size"),
        (
            [{"crop_size": 16, "blur": {"kernel_size": 33}}],
            None,
            "augmentation.views[0].blur.kernel_size",
        ),
        ([{}, {"crop_size": 0.5}], None, "augmentation.views[1].crop_size"),
        ([{"crop_size": 32.5}], 64, "augmentation.views[0].crop_size"),
        ([{"crop_size": -0.5}], 64, "augmentation.views[0].crop_size"),
        ([], None, "augmentation.views"),
    ],
)
def test_parse_errors_name_the_key(views, image_size, key):
    with pytest.raises(ConfigError) as err:
        parse_pipelines(views, image_size=image_size)
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)


def test_crop_size_as_a_fraction_of_the_image_size():
    """SwAV's 2x224 + 6x96 at any image size: a float in (0, 1] is a fraction of data.image_size."""
    views = [{"crop_size": 1.0, "num_crops": 2}, {"crop_size": 96 / 224, "num_crops": 6}]
    assert [p.crop_size for p in parse_pipelines(views, image_size=224)] == [224, 96]
    assert [p.crop_size for p in parse_pipelines(views, image_size=32)] == [32, 14]  # round(13.7)
    # whole pixels stay pixels, also written as a float; 1 (an int) is one pixel, 1.0 the whole
    # image
    whole = parse_pipelines([{"crop_size": 32.0}, {"crop_size": 1}], image_size=64)
    assert [p.crop_size for p in whole] == [32, 1]
    with pytest.raises(ConfigError, match="needs data.image_size"):
        parse_pipelines([{"crop_size": 0.5}])


def test_blur_kernel_size_is_configurable_on_both_paths():
    """blur.kernel_size fixes the kernel (PIL's Gaussian spans ~+-3 sigma whatever the crop), null
    keeps SimCLR's 10% rule. Both paths blur with it: the batched one and torchvision's per-sample
    one equal the reference."""
    (default,) = parse_pipelines([{"crop_size": 32}])
    assert default.blur_kernel is None and default.kernel_size == blur_kernel_size(32) == 3
    view = {
        "crop_size": 32,
        "num_crops": 1,
        "scale": [1.0, 1.0],
        "ratio": [1.0, 1.0],
        "hflip": 0.0,
        "color_jitter": None,
        "grayscale": 0.0,
        "blur": {"prob": 1.0, "sigma": [1.5, 1.5], "kernel_size": 13},
    }
    (p,) = parse_pipelines([view], image_size=32)
    assert p.kernel_size == 13
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    want = TF.gaussian_blur(img.float() / 255, [13, 13], [1.5, 1.5])
    want = (want - 0.5) / 0.25
    (got,) = BatchViews([p], MEAN, STD)(img)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    (cpu,) = build_cpu_views([p], MEAN, STD)(img[0])
    torch.testing.assert_close(cpu, want[0], atol=1e-5, rtol=0)
    # the 3 px kernel of the 10% rule is a much weaker blur at sigma 1.5
    weak = (TF.gaussian_blur(img.float() / 255, [3, 3], [1.5, 1.5]) - 0.5) / 0.25
    assert (weak - want).abs().max() > 0.1


def test_parse_error_messages_help():
    with pytest.raises(ConfigError, match="crop_size"):  # lists the valid keys
        parse_pipelines([{"crop": 3}])
    with pytest.raises(ConfigError, match="a crop larger than the image"):
        parse_pipelines([{"crop_size": 64}], image_size=32)


# ---------------------------------------------------------------------------- CPU path


def test_cpu_views_odd_sized_image():
    pipes = parse_pipelines(
        [
            {"crop_size": 32, "num_crops": 2, "blur": {"prob": 1.0}, "solarize": 0.5},
            {"crop_size": 16, "num_crops": 3, "color_jitter": {"prob": 1.0}},
        ]
    )
    tf = build_cpu_views(pipes, MEAN, STD)
    img = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    out = tf(img)
    assert [tuple(v.shape) for v in out] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3
    assert all(type(v) is torch.Tensor and v.dtype == torch.float32 for v in out)
    # grayscale input becomes 3 channels; the transform pickles (DataLoader workers)
    import pickle

    out1 = pickle.loads(pickle.dumps(tf))(img[:1])
    assert [tuple(v.shape) for v in out1] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 3


@pytest.mark.parametrize("size, shape", [(32, (3, 32, 32)), (96, (3, 96, 96))])
def test_cpu_eval_transform(size, shape):
    img = torch.randint(0, 256, (3, 50, 130), dtype=torch.uint8)
    out = cpu_eval_transform(size, MEAN, STD)(img)
    assert tuple(out.shape) == shape and out.dtype == torch.float32


def test_where_path_equals_indexed_path(monkeypatch):
    # accelerators use torch.where over the whole batch; it must give the same views as CPU's
    # gather path
    x = _uint8_batch()
    pipes = [ViewPipeline(blur_prob=0.5, solarize=0.5, grayscale=0.5)]
    indexed = BatchViews(pipes, MEAN, STD, seed=2)(x)
    monkeypatch.setattr(views_batch, "_apply_rows", views_batch._apply_rows_where)
    where = BatchViews(pipes, MEAN, STD, seed=2)(x)
    for a, b in zip(indexed, where):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
