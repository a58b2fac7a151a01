import numpy as np

from cifarlab.stats import channel_stats


def test_channel_stats_equal_numpy_on_the_same_pixels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)
    stats = channel_stats(images, chunk=5)
    mean, std = stats.mean, stats.std
    pixels = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-8)
