"""The picture of a mismatch: expected, returned and their difference side by side, in the
style of the kit's other figures (matplotlib, 100 dpi), written whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from parakit.timeline import save_png


def draw(value: np.ndarray, expected: np.ndarray, same: np.ndarray, exact: bool, title: str,
         path: Path) -> None:
    """Expected, returned and difference side by side (``same``: the entries that agree; the
    difference is their mask for an ``exact`` image, else the absolute error), written whole
    (write, then rename)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (m, n), v, e = expected.shape, value.astype(np.float64), expected.astype(np.float64)
    with np.errstate(all="ignore"):
        diff = np.where(same, 0.0, 1.0 if exact else np.abs(v - e))  # image: a mask
    diff[~np.isfinite(diff)] = max(np.max(diff, where=np.isfinite(diff), initial=0.0), 1.0)
    sr, sc = -(-m // 800), -(-n // 800)  # show at most 800x800, with the original row numbers
    shown = np.maximum.reduceat(np.maximum.reduceat(diff, np.arange(0, m, sr), 0),
                                np.arange(0, n, sc), 1)  # block maxima: no bad row hides
    panels = (("expected", e[::sr, ::sc], {"vmin": e.min(), "vmax": e.max()}),
              ("returned", v[::sr, ::sc], {"vmin": e.min(), "vmax": e.max()}),
              ("difference", shown, {"cmap": "bwr", "vmin": -shown.max(), "vmax": shown.max()}))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (name, a, style) in zip(axes, panels, strict=True):
        ax.imshow(a, aspect="auto", interpolation="nearest", extent=(0, n, m, 0), **style)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title if len(title) <= 100 else title[:97] + "...", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.08, top=0.82, wspace=0.15)
    save_png(fig, path)
