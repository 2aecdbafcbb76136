"""Figure captions name the compass arrows actually drawn (core.orientation): a plane in which a patient axis lies
nearly through-plane draws two arrows, and its caption must not explain a third."""

from __future__ import annotations

import numpy as np

from CardiacLandmarksLib.core import orientation
from CardiacLandmarksLib.core.orientation import draw_orientation, in_plane_arrows, orientation_text


def test_caption_names_the_drawn_letters_only():
    assert orientation_text(True) == "arrows: patient anterior (A), left (L) and head (S) in the image plane"
    assert orientation_text(True, ["S", "A"]) == "arrows: patient anterior (A) and head (S) in the image plane"
    assert orientation_text(True, ["L"]) == "arrow: patient left (L) in the image plane"
    assert "no patient axis" in orientation_text(True, [])
    assert orientation_text(False, ["A"]).startswith("orientation unknown")


def test_draw_orientation_returns_the_letters_it_drew():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axial = np.eye(3)  # i = patient left, j = posterior, k = head: S is through-plane
    fig, ax = plt.subplots()
    assert draw_orientation(ax, axial, True, n=3) == ["A", "L"] == [x for x, _ in in_plane_arrows(axial, n=3)]
    assert draw_orientation(ax, axial, False) == []
    plt.close(fig)


def test_perfusion_sector_png_caption_matches_its_two_arrows(tmp_path, monkeypatch):
    """The perfusion sector overlay draws two arrows; before, its caption listed A, L and S whatever was drawn."""
    from CardiacLandmarksLib.perfusion import aha
    from CardiacLandmarksLib.perfusion.bullseye import render_sector_overlay_png

    captions = []
    orig = orientation.orientation_text
    monkeypatch.setattr(orientation, "orientation_text", lambda known, letters=None: captions.append(
        orig(known, letters)) or captions[-1])
    yy, xx = np.mgrid[0:96, 0:96]
    r = np.hypot(xx - 48, yy - 48)
    mask = np.where(r < 14, 2, np.where(r < 22, 1, 0)).astype(np.uint8)
    centre, a_rvi, i_rvi = np.array([48.0, 48.0]), np.array([38.0, 30.0]), np.array([30.0, 60.0])
    segments = aha.sector_map(mask == 1, centre, a_rvi, "mid")
    # a short-axis-like plane: the LV long axis points left, anterior and down; L and S lie most in plane
    normal = np.array([0.6, -0.72, -0.34])
    normal /= np.linalg.norm(normal)
    i_axis = np.cross(normal, [0.0, 0.0, 1.0])
    i_axis /= np.linalg.norm(i_axis)
    d = np.stack([i_axis, np.cross(normal, i_axis), normal], axis=1)
    drawn = [x for x, _ in in_plane_arrows(d, n=2)]
    assert len(drawn) == 2
    img = np.random.default_rng(0).normal(100, 10, mask.shape) + 80 * (mask == 2)
    render_sector_overlay_png(img, segments, mask, centre, a_rvi, "mid", tmp_path / "s.png", (1.5, 1.5),
                              i_rvi_ij=i_rvi, direction=d, orientation_known=True)
    assert (tmp_path / "s.png").stat().st_size > 1000
    missing = {"A": "anterior (A)", "L": "left (L)", "S": "head (S)"}
    assert len(captions) == 1
    for letter, words in missing.items():
        assert (words in captions[0]) == (letter in drawn), (captions[0], drawn)
