"""The scores the benchmark reports, checked on cases whose answer is known."""

import numpy as np
import pytest

from septet.video.metrics import boundary_f, mask_iou, psnr, ssim, warping_error


def square(size=40, at=10, side=20):
    mask = np.zeros((size, size), bool)
    mask[at : at + side, at : at + side] = True
    return mask


def test_mask_iou_and_boundary_f_of_identical_and_shifted_masks():
    assert mask_iou(square(), square()) == 1.0
    assert boundary_f(square(), square()) == 1.0
    shifted = square(at=12)
    assert mask_iou(square(), shifted) == pytest.approx(18 * 18 / (2 * 400 - 18 * 18))
    assert boundary_f(square(), square(at=30, side=5)) < 0.2


def test_psnr_and_ssim_of_equal_and_noisy_images():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(image, image) == 100.0
    assert ssim(image, image) == pytest.approx(1.0)
    noisy = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    assert 25 < psnr(noisy, image) < 30  # sigma 10 noise is about 28 dB
    assert ssim(noisy, image) < 0.999
    assert ssim(noisy, image) > ssim(rng.permutation(image), image)
    region = square(32, 8, 8)
    assert psnr(noisy, image, region) == pytest.approx(psnr(noisy[region], image[region]))


def test_warping_error_is_zero_for_a_static_clip_and_grows_with_flicker():
    rng = np.random.default_rng(1)
    still = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    regions = [np.ones((48, 64), bool)] * 3
    assert warping_error([still] * 3, [still] * 3, regions) == 0.0
    flicker = [still, np.clip(still.astype(int) + 20, 0, 255).astype(np.uint8), still]
    assert warping_error(flicker, [still] * 3, regions) > 10
