"""Fermi-constrained deconvolution (Jerosch-Herold et al., Med Phys 1998).

Synthetic tissue curves are made here, independently of the library: a gamma-variate AIF with
recirculation on a 20x finer time grid, convolved (numpy) with a known impulse response, shifted
by a known delay and sampled at dt = 0.5 s, plus noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacLandmarksLib.core.errors import InvalidImageError, PerfusionInputError
from CardiacLandmarksLib.perfusion import fermi

DT = 0.5
FINE = 20
N = 80
RHO = 1.05  # g/ml


def _gamma(t, t0, alpha, beta):
    x = np.clip(t - t0, 0, None)
    g = x**alpha * np.exp(-x / beta)
    return g / g.max()


def synthetic(mbf_ml_min_g: float, model: str = "fermi", delay_s: float = 1.0, noise: float = 0.0, seed: int = 0,
              n_curves: int = 1):
    """(tissue [n, N], aif [N]) sampled at DT; flow in ml/min/g."""
    tf = np.arange(N * FINE) * DT / FINE
    aif_f = 4.5 * _gamma(tf, 8.0, 2.5, 1.2) + 0.5 * _gamma(tf, 20.0, 2.5, 2.0)
    f = mbf_ml_min_g * RHO / 60.0  # 1/s
    if model == "fermi":
        k, tau0 = 0.8, 3.0
        amp = f * (1 + np.exp(-k * tau0))  # so that R(0) = f
        resp = amp / (1 + np.exp(k * (tf - tau0)))
    else:  # one-compartment (Kety) model, distribution volume 0.15
        resp = f * np.exp(-f / 0.15 * tf)
    shifted = np.interp(tf - delay_s, tf, aif_f, left=0.0)
    tissue_f = np.convolve(shifted, resp)[: len(tf)] * DT / FINE
    tissue = tissue_f[::FINE]
    rng = np.random.default_rng(seed)
    noisy = tissue[None, :] + rng.normal(0.0, noise * tissue.max(), (n_curves, N))
    return noisy, aif_f[::FINE]


@pytest.mark.parametrize("mbf", [0.7, 1.0, 2.0, 3.5])
def test_fermi_recovers_known_flow_noise_free(mbf):
    tissue, aif = synthetic(mbf)
    fit = fermi.fit_fermi(tissue, aif, DT, method="scipy")
    assert fit.mbf[0] == pytest.approx(mbf, rel=0.10)


@pytest.mark.parametrize("mbf", [1.0, 3.0])
def test_fermi_recovers_known_flow_with_noise_batch_and_scipy(mbf):
    tissue, aif = synthetic(mbf, noise=0.02, n_curves=40, seed=3)
    batch = fermi.fit_fermi(tissue, aif, DT, method="batch")
    assert np.mean(batch.mbf) == pytest.approx(mbf, rel=0.10)
    one = fermi.fit_fermi(tissue[:8], aif, DT, method="scipy")
    # the vectorised fit reaches the same optimum as SciPy's trust-region fit
    assert np.allclose(batch.mbf[:8], one.mbf, rtol=0.08)


@pytest.mark.parametrize("mbf", [0.7, 1.2])
def test_fermi_on_one_compartment_tissue(mbf):
    """Model mismatch: a Kety (single-exponential) tissue curve; Fermi R(0) is still the flow."""
    tissue, aif = synthetic(mbf, model="kety")
    fit = fermi.fit_fermi(tissue, aif, DT)
    assert fit.mbf[0] == pytest.approx(mbf, rel=0.10)


def test_fermi_map_vectorised_over_pixels():
    flows = np.array([[0.5, 1.0], [2.0, 4.0]])
    conc = np.stack([synthetic(f)[0][0] for f in flows.ravel()], axis=1).reshape(N, 2, 2)
    aif = synthetic(1.0)[1]
    mp, fit = fermi.mbf_map(conc, aif, DT, method="batch")
    assert mp.shape == (2, 2)
    np.testing.assert_allclose(mp, flows, rtol=0.10)


def test_fermi_bad_inputs():
    tissue, aif = synthetic(1.0)
    with pytest.raises(PerfusionInputError):
        fermi.fit_fermi(tissue, aif[:-3], DT)
    with pytest.raises(PerfusionInputError):
        fermi.fit_fermi(tissue, np.zeros_like(aif), DT)
    with pytest.raises(PerfusionInputError):
        fermi.fit_fermi(tissue, aif, 0.0)
    bad = tissue.copy()
    bad[0, 5] = np.nan
    with pytest.raises(InvalidImageError):
        fermi.fit_fermi(bad, aif, DT)
