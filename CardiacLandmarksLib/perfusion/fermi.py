"""Quantitative myocardial blood flow by Fermi-constrained deconvolution.

Jerosch-Herold, Wilke, Stillman, "Magnetic resonance quantification of the myocardial
perfusion reserve with a Fermi function model for constrained deconvolution",
Med Phys 1998;25:73-84. The tissue contrast-agent concentration is modelled as the arterial
input (AIF) convolved with a Fermi impulse response::

    C_t(t) = integral C_a(s - tau_d) R(t - s) ds,    R(tau) = F / (1 + exp(k (tau - tau_0)))  (tau >= 0)

and myocardial blood flow is the response amplitude at zero delay::

    MBF = R(0) = F / (1 + exp(-k tau_0))             [ml/s per ml tissue]
    MBF [ml/min/g] = 60 * R(0) / rho,   rho = 1.05 g/ml (myocardial tissue density)

Units: concentrations in mmol/L (or any unit shared by AIF and tissue: the ratio is what
counts), times in seconds. The AIF is used as given (blood concentration, no haematocrit
correction: the Fermi model estimates blood flow). The convolution is discretised with the
rectangle rule on the sampling grid (``dt``); the AIF delay ``tau_d`` is continuous
(linear interpolation of the shifted AIF).

Fitting (vectorised over curves): an exhaustive grid over ``(tau_0, k, tau_d)`` with the
linear amplitude ``F >= 0`` solved in closed form for every curve at once gives the start
point, then :func:`scipy.optimize.least_squares` (trust-region reflective, bounds) refines
all four parameters of a block of curves jointly with a block-diagonal Jacobian sparsity,
so one call fits hundreds of pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from CardiacLandmarksLib.core.errors import InvalidImageError, PerfusionInputError

logger = logging.getLogger(__name__)

#: myocardial tissue density, g/ml
TISSUE_DENSITY = 1.05
#: parameter bounds (F [1/s], tau0 [s], k [1/s], tau_d [s])
LOWER = np.array([0.0, 0.0, 0.02, 0.0])
UPPER = np.array([0.5, 30.0, 10.0, 6.0])

_GRID_TAU0 = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0)
_GRID_K = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0)


@dataclass
class FermiFit:
    """Fermi fit of one or several tissue curves.

    Attributes:
        mbf: ``(n,)`` myocardial blood flow, ml/min/g (``60 R(0) / rho``); NaN where the fit failed.
        params: ``(n, 4)`` fitted ``(F [1/s], tau0 [s], k [1/s], tau_d [s])``.
        rmse: ``(n,)`` root-mean-square residual over the fit window (concentration units).
        fit_window: ``(start, stop)`` frame indices used (stop exclusive).
    """

    mbf: np.ndarray
    params: np.ndarray
    rmse: np.ndarray
    fit_window: tuple[int, int]


def fermi_response(tau: np.ndarray, f: np.ndarray, tau0: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Fermi impulse response ``R(tau) = F / (1 + exp(k (tau - tau0)))``, 0 for ``tau < 0``.

    Parameters broadcast against each other (e.g. ``f`` of shape ``(n, 1)`` with ``tau``
    of shape ``(T,)`` gives ``(n, T)``). Units: tau, tau0 s; k 1/s; F 1/s.
    """
    tau = np.asarray(tau, float)
    z = np.clip(np.asarray(k) * (tau - np.asarray(tau0)), -50.0, 50.0)
    return np.where(tau >= 0, np.asarray(f) / (1.0 + np.exp(z)), 0.0)


def shift_curve(curve: np.ndarray, delay_frames: np.ndarray) -> np.ndarray:
    """Delay sampled curves by (fractional) frames: ``out[n] = curve(n - delay)``, 0 before the start.

    ``curve`` ``(T,)`` or ``(n, T)``; ``delay_frames`` scalar or ``(n,)``. Returns ``(n, T)``.
    """
    c = np.atleast_2d(np.asarray(curve, float))
    d = np.atleast_1d(np.asarray(delay_frames, float))
    n = max(len(c), len(d))
    c = np.broadcast_to(c, (n, c.shape[-1]))
    d = np.broadcast_to(d, (n,))
    T = c.shape[-1]
    x = np.arange(T)[None, :] - d[:, None]
    x0 = np.floor(x).astype(int)
    w = x - x0
    rows = np.arange(n)[:, None]

    def take(idx: np.ndarray) -> np.ndarray:
        valid = (idx >= 0) & (idx < T)
        return np.where(valid, c[rows, np.clip(idx, 0, T - 1)], 0.0)

    return take(x0) * (1.0 - w) + take(x0 + 1) * w


def _convolve(aif_rows: np.ndarray, resp_rows: np.ndarray, dt: float) -> np.ndarray:
    """Causal discrete convolution of rows (rectangle rule): ``dt * sum_m a[m] r[n - m]``."""
    T = aif_rows.shape[-1]
    nfft = 1 << int(np.ceil(np.log2(2 * T)))
    out = np.fft.irfft(np.fft.rfft(aif_rows, nfft) * np.fft.rfft(resp_rows, nfft), nfft)[..., :T]
    return dt * out


def fermi_model(params: np.ndarray, aif: np.ndarray, dt: float) -> np.ndarray:
    """Model tissue curves for parameters ``(n, 4)`` = (F, tau0, k, tau_d) and an AIF ``(T,)``.

    Returns ``(n, T)`` concentrations (units of the AIF).
    """
    p = np.atleast_2d(np.asarray(params, float))
    aif = np.asarray(aif, float)
    t = np.arange(aif.shape[-1]) * dt
    resp = fermi_response(t[None, :], p[:, :1], p[:, 1:2], p[:, 2:3])
    shifted = shift_curve(aif, p[:, 3] / dt)
    return _convolve(shifted, resp, dt)


def mbf_from_params(params: np.ndarray, density: float = TISSUE_DENSITY) -> np.ndarray:
    """MBF in ml/min/g from Fermi parameters ``(..., 4)``: ``60 * F / (1 + exp(-k tau0)) / density``."""
    p = np.asarray(params, float)
    return 60.0 * p[..., 0] / (1.0 + np.exp(-p[..., 2] * p[..., 1])) / density


def bolus_foot_peak(curve: np.ndarray, frac: float = 0.1) -> tuple[int, int]:
    """Foot and peak frame of a first-pass curve (e.g. an AIF).

    peak = frame of maximum; foot = the last frame before the peak at which the curve is
    still below ``frac`` of (peak - baseline), baseline = median of the first third of the
    frames before the peak (at least 3).

    Raises:
        PerfusionInputError: flat curve or peak within the first 3 frames (no contrast passage).
    """
    c = np.asarray(curve, float)
    if c.ndim != 1 or c.size < 5 or not np.all(np.isfinite(c)):
        raise PerfusionInputError("AIF must be a finite 1D curve of at least 5 samples")
    peak = int(np.argmax(c))
    base_region = c[: max(3, peak // 3)] if peak >= 3 else c[:1]
    base = float(np.median(base_region))
    amp = c[peak] - base
    noise = float(np.std(base_region)) if base_region.size > 1 else 0.0
    if peak < 3 or amp <= 0 or amp < 5 * noise:
        raise PerfusionInputError("no contrast passage in the curve (flat, or peaking in the first frames)")
    below = np.nonzero(c[: peak + 1] < base + frac * amp)[0]
    foot = int(below[-1]) if len(below) else 0
    return foot, peak


def default_fit_window(aif: np.ndarray, n_frames: int | None = None, frac: float = 0.1,
                       first_pass_factor: float = 3.0) -> tuple[int, int]:
    """Frames used for the fit: from the start to ``foot + first_pass_factor * (peak - foot)``.

    With the default factor the window covers the AIF upslope, its downslope back to near
    baseline and the tissue wash-in, but stops before most of the recirculation (Jerosch-Herold
    et al. fit the first pass). Clipped to the series length.
    """
    foot, peak = bolus_foot_peak(aif, frac)
    n = len(aif) if n_frames is None else n_frames
    stop = int(round(foot + first_pass_factor * max(peak - foot, 2))) + 1
    return 0, int(min(max(stop, peak + 4), n))


def _grid_start(y: np.ndarray, aif: np.ndarray, dt: float, max_delay_s: float, w0: int) -> np.ndarray:
    """Best ``(F, tau0, k, tau_d)`` per curve on a parameter grid, residuals on frames ``w0:``
    (the amplitude F >= 0 is solved in closed form for all curves at once)."""
    delays = np.arange(0.0, max_delay_s + 1e-9, max(dt, 0.25))
    g0, gk, gd = np.meshgrid(_GRID_TAU0, _GRID_K, delays, indexing="ij")
    grid = np.stack([np.ones(g0.size), g0.ravel(), gk.ravel(), gd.ravel()], axis=1)
    basis = fermi_model(grid, aif, dt)[:, w0:]
    yy = y[:, w0:]
    bb = np.einsum("gw,gw->g", basis, basis) + 1e-12
    cb = yy @ basis.T
    f = np.maximum(cb / bb, 0.0)
    sse = np.einsum("nw,nw->n", yy, yy)[:, None] - 2 * f * cb + f**2 * bb
    best = np.argmin(sse, axis=1)
    p = grid[best].copy()
    p[:, 0] = f[np.arange(len(y)), best]
    return p


def _lm_batch(y: np.ndarray, aif: np.ndarray, dt: float, p0: np.ndarray, w0: int,
              max_iter: int = 150) -> np.ndarray:
    """Projected Levenberg-Marquardt on many curves at once (one damping factor per curve).

    ``y`` ``(n, W)`` observations (frames ``w0:`` are fitted), ``p0`` ``(n, 4)`` start. The
    Jacobian is taken by forward differences (5 batched model evaluations per iteration),
    the damped normal equations are solved for all curves with one batched
    :func:`numpy.linalg.solve`; steps are clipped to :data:`LOWER` / :data:`UPPER`.
    """
    x = p0.copy()
    n = len(x)
    obs = y[:, w0:]

    def resid(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return fermi_model(p, aif, dt)[:, w0:] - obs[rows]

    r = resid(x, np.arange(n))
    cost = np.einsum("nw,nw->n", r, r)
    lam = np.full(n, 1e-2)
    active = np.ones(n, bool)
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        xa, ra = x[idx], r[idx]
        h = 1e-6 + 1e-5 * np.abs(xa)
        jac = np.empty(ra.shape + (4,))
        for q in range(4):
            xq = xa.copy()
            xq[:, q] = np.minimum(xq[:, q] + h[:, q], UPPER[q])
            step = xq[:, q] - xa[:, q]
            step = np.where(step == 0, -h[:, q], step)
            xq[:, q] = xa[:, q] + step
            jac[:, :, q] = (fermi_model(xq, aif, dt)[:, w0:] - obs[idx] - ra) / step[:, None]
        jtj = np.einsum("nwp,nwq->npq", jac, jac)
        jtr = np.einsum("nwp,nw->np", jac, ra)
        diag = np.einsum("npp->np", jtj) + 1e-12
        a_mat = jtj + (lam[idx, None] * diag)[:, :, None] * np.eye(4)[None]
        try:
            delta = np.linalg.solve(a_mat, -jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:  # pragma: no cover - singular only for degenerate curves
            delta = -jtr / diag
        x_new = np.clip(xa + delta, LOWER, UPPER)
        r_new = resid(x_new, idx)
        cost_new = np.einsum("nw,nw->n", r_new, r_new)
        better = cost_new < cost[idx]
        rel = (cost[idx] - cost_new) / np.maximum(cost[idx], 1e-30)
        acc = idx[better]
        x[acc], r[acc], cost[acc] = x_new[better], r_new[better], cost_new[better]
        lam[acc] = np.maximum(lam[acc] / 3.0, 1e-9)
        lam[idx[~better]] *= 4.0
        small_step = np.all(np.abs(x_new - xa) <= 1e-7 * (np.abs(xa) + 1e-3), axis=1)
        done = (better & (rel < 1e-9)) | (~better & (small_step | (lam[idx] > 1e8)))
        active[idx[done]] = False
    return x


def fit_fermi(tissue: np.ndarray, aif: np.ndarray, dt: float, fit_window: tuple[int, int] | None = None,
              baseline_frames: int | None = None, max_delay_s: float = 4.0, method: str = "auto",
              density: float = TISSUE_DENSITY) -> FermiFit:
    """Fermi-constrained deconvolution of tissue curves (vectorised over curves).

    Args:
        tissue: ``(T,)`` one curve or ``(n, T)`` curves (per pixel or per segment),
            contrast-agent concentration (mmol/L).
        aif: ``(T,)`` arterial input function, same units and sampling.
        dt: sampling interval in seconds (e.g. 0.5 for the QPerf example).
        fit_window: ``(start, stop)`` frames fitted; default :func:`default_fit_window`.
        baseline_frames: subtract the mean of the first ``baseline_frames`` frames from AIF
            and tissue; default = frames before the AIF foot (minus one); 0 = no subtraction.
        max_delay_s: largest AIF-to-tissue delay considered.
        method: ``"scipy"`` refines each curve with :func:`scipy.optimize.least_squares`
            (trust-region reflective with bounds; about 50 ms per curve), ``"batch"`` refines all
            curves at once with a batched Levenberg-Marquardt (:func:`_lm_batch`, for pixel
            maps), ``"auto"`` = scipy up to 64 curves, batch above. Both start from the same
            vectorised grid search.
        density: tissue density, g/ml.

    Returns:
        :class:`FermiFit` with MBF in ml/min/g.

    Raises:
        PerfusionInputError: AIF and tissue lengths differ, non-positive ``dt``, flat AIF,
            unknown method.
        InvalidImageError: NaN/inf values.
    """
    c = np.atleast_2d(np.asarray(tissue, float))
    a = np.asarray(aif, float).ravel()
    if c.shape[-1] != a.size:
        raise PerfusionInputError(f"AIF has {a.size} samples but the tissue curves have {c.shape[-1]}")
    if not dt > 0:
        raise PerfusionInputError(f"sampling interval dt must be > 0 s, got {dt}")
    if method not in ("auto", "scipy", "batch"):
        raise PerfusionInputError(f"unknown Fermi fit method {method!r}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(a))):
        raise InvalidImageError("tissue curves or AIF contain NaN/inf")
    foot, _ = bolus_foot_peak(a)
    nb = max(foot - 1, 0) if baseline_frames is None else int(baseline_frames)
    if nb > 0:
        a = a - a[:nb].mean()
        c = c - c[:, :nb].mean(axis=1, keepdims=True)
    w0, w1 = default_fit_window(a, a.size) if fit_window is None else (int(fit_window[0]), int(fit_window[1]))
    if not 0 <= w0 < w1 <= a.size or w1 - w0 < 5:
        raise PerfusionInputError(f"bad fit window {(w0, w1)} for {a.size} frames")
    # the model runs from frame 0 (the AIF history matters); residuals on the window only
    a_fit = a[:w1]
    scale = max(float(np.abs(c[:, :w1]).max()), 1e-9)
    y = c[:, :w1] / scale
    p0 = np.clip(_grid_start(y, a_fit, dt, max_delay_s, w0), LOWER, UPPER)
    p0[:, 0] = np.maximum(p0[:, 0], 1e-6)
    if method == "batch" or (method == "auto" and len(y) > 64):
        params = _lm_batch(y, a_fit, dt, p0, w0)
    else:
        params = np.empty_like(p0)
        for n, (yy, pp) in enumerate(zip(y, p0)):
            def resid(x: np.ndarray, yy=yy) -> np.ndarray:
                return fermi_model(x[None], a_fit, dt)[0, w0:] - yy[w0:]
            res = optimize.least_squares(resid, np.clip(pp, LOWER + 1e-9, UPPER - 1e-9), bounds=(LOWER, UPPER),
                                         method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10, max_nfev=400)
            params[n] = res.x
    params[:, 0] *= scale
    r = fermi_model(params, a_fit, dt)[:, w0:] - c[:, w0:w1]
    rmse = np.sqrt(np.mean(r**2, axis=1))
    return FermiFit(mbf=mbf_from_params(params, density), params=params, rmse=rmse, fit_window=(w0, w1))


def mbf_map(concentration: np.ndarray, aif: np.ndarray, dt: float, mask: np.ndarray | None = None,
            **kwargs) -> tuple[np.ndarray, FermiFit]:
    """Pixel-wise MBF map from a concentration series.

    Args:
        concentration: ``[t, j, i]`` contrast-agent concentration (mmol/L), one slice.
        aif: ``(t,)`` AIF (mmol/L).
        dt: frame interval in s.
        mask: ``[j, i]`` bool, pixels to fit (default all).
        **kwargs: passed to :func:`fit_fermi`.

    Returns:
        ``(mbf [j, i] float32 in ml/min/g, NaN outside the mask; FermiFit of the masked pixels)``.
    """
    conc = np.asarray(concentration, float)
    if conc.ndim != 3:
        raise InvalidImageError(f"concentration must be [t, j, i], got shape {conc.shape}")
    m = np.ones(conc.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    if m.shape != conc.shape[1:]:
        raise PerfusionInputError(f"mask shape {m.shape} does not match the image {conc.shape[1:]}")
    curves = conc[:, m].T
    fit = fit_fermi(curves, aif, dt, **kwargs)
    out = np.full(m.shape, np.nan, np.float32)
    out[m] = fit.mbf
    return out, fit
