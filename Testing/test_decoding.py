"""Heatmap decoding on constructed heatmaps with a known sub-pixel peak."""

import numpy as np

from CardiacLandmarksLib.models.decoding import decode_heatmaps


def gaussian(h, w, x, y, s=2.5, amp=0.8):
    yy, xx = np.mgrid[0:h, 0:w]
    return amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))


def test_subpixel_peak_and_value():
    h = w = 64
    probs = np.zeros((2, 3, h, w), np.float32)
    probs[0, 0] = gaussian(h, w, 20.3, 41.7)
    probs[0, 1] = gaussian(h, w, 50.0, 10.0, amp=0.2)
    probs[1, 0] = gaussian(h, w, 0.4, 30.0)  # near the border
    probs[:, 2] = 1 - probs[:, :2].sum(1)
    xy, peak = decode_heatmaps(probs)
    np.testing.assert_allclose(xy[0, 0], [20.3, 41.7], atol=0.15)
    np.testing.assert_allclose(xy[0, 1], [50.0, 10.0], atol=0.05)
    assert abs(peak[0, 1] - 0.2) < 0.01 and peak[0, 0] > 0.7
    assert abs(xy[1, 0, 1] - 30.0) < 0.1 and xy[1, 0, 0] < 1.5
    # an empty channel has peak 0
    assert peak[1, 1] == 0.0
