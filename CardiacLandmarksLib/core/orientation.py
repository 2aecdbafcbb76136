"""Orientation markers for figures: which patient directions point where in a drawn image plane.

Every PNG the library draws shows the image as stored (``i`` = column to the right, ``j`` = row
down). :func:`in_plane_arrows` gives, for a slice with direction matrix ``direction`` (LPS, columns
= unit vectors of the i, j, k axes), the on-screen directions of the patient's anterior (A), left
(L) and superior/head (S) axes that lie most in the plane; :func:`draw_orientation` draws them as a
small compass in a corner of a matplotlib axes, or, when the series carries no patient
orientation, the display convention that stands in for it (image up = anterior, image left =
patient's right). This is the orientation marker of Slicer's slice views, in two letters.
"""

from __future__ import annotations

import numpy as np

#: patient axes in LPS with the letter drawn at the arrow head
AXES_LPS = (("A", np.array([0.0, -1.0, 0.0])), ("L", np.array([1.0, 0.0, 0.0])), ("S", np.array([0.0, 0.0, 1.0])))


def in_plane_arrows(direction: np.ndarray, n: int = 2, min_fraction: float = 0.3) -> list[tuple[str, np.ndarray]]:
    """On-screen unit directions ``(di, dj)`` of the patient axes that lie most in the image plane.

    Args:
        direction: ``(3, 3)`` LPS direction matrix, columns = unit vectors of the image i, j, k axes.
        n: at most this many arrows (the axes with the largest in-plane component first).
        min_fraction: leave out axes whose in-plane component is shorter than this (nearly through-plane).

    Returns:
        ``[(letter, (di, dj))]`` with ``di`` to the right and ``dj`` down on screen, unit length.
    """
    d = np.asarray(direction, float)
    out = []
    for letter, axis in AXES_LPS:
        v = np.array([axis @ d[:, 0], axis @ d[:, 1]])
        norm = float(np.linalg.norm(v))
        if norm >= min_fraction:
            out.append((norm, letter, v / norm))
    out.sort(key=lambda x: -x[0])
    return [(letter, v) for _, letter, v in out[:n]]


#: caption words for each compass letter
AXIS_WORDS = {"A": "anterior (A)", "L": "left (L)", "S": "head (S)"}


def orientation_text(orientation_known: bool, letters: list[str] | tuple[str, ...] | None = None) -> str:
    """One line for a figure caption: what the compass shows or the display convention used.

    ``letters``: the arrows actually drawn (what :func:`draw_orientation` returns), so the caption names only those
    (a perfusion slice shows A and S, not L); None names all three."""
    if orientation_known:
        shown = [AXIS_WORDS[x] for x in AXIS_WORDS if letters is None or x in letters]
        if not shown:
            return "no patient axis lies enough in the image plane to draw an arrow"
        joined = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
        return f"arrow{'s' if len(shown) > 1 else ''}: patient {joined} in the image plane"
    return "orientation unknown: shown as stored, image up taken as anterior, image left as the patient's right"


def draw_orientation(ax, direction: np.ndarray | None, orientation_known: bool, *, corner=(0.88, 0.86),
                     length: float = 0.08, color: str = "yellow", fontsize: float = 8, n: int = 2) -> list[str]:
    """Draw the orientation compass (or the 'as stored' convention) in axes-fraction coordinates.

    Args:
        ax: matplotlib axes showing an image with j (rows) downwards.
        direction: ``(3, 3)`` LPS direction of the shown slice (ignored when orientation is unknown).
        orientation_known: False = write "as stored: up = A" instead of arrows.
        corner: arrow origin in axes fraction.
        length: arrow length in axes fraction.
        n: at most this many arrows (:func:`in_plane_arrows`); 3 draws every axis that lies in the plane enough
            (the short-axis report: its RVI angle is measured from A, its A/I-RVI names come from S).

    Returns:
        The letters drawn (empty when the orientation is unknown), for :func:`orientation_text`.
    """
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=2.0, foreground="black")]
    x0, y0 = corner
    if not orientation_known or direction is None:
        ax.text(0.98, 0.98, "as stored\nup = A?", transform=ax.transAxes, color=color, fontsize=fontsize - 1,
                ha="right", va="top", path_effects=outline)
        return []
    arrows = in_plane_arrows(direction, n=n)
    for letter, (di, dj) in arrows:
        ax.annotate("", xy=(x0 + length * di, y0 - length * dj), xytext=(x0, y0), xycoords="axes fraction",
                    arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
        ax.text(x0 + 1.5 * length * di, y0 - 1.5 * length * dj, letter, transform=ax.transAxes, color=color,
                fontsize=fontsize, ha="center", va="center", path_effects=outline)
    return [letter for letter, _ in arrows]
