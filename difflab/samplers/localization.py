"""Stochastic localization (Eldan 2013; El Alaoui, Montanari and Sellke 2022).

Notation:

===========  ==================================================================================
``y_t``      t X + W_t, t >= 0, with W a standard Brownian motion independent of X ~ p; y_0 = 0
``m(y, t)``  E[X | y_t = y]: the target's denoiser at alpha = t, sigma = sqrt(t)
``S(y, t)``  Cov(X | y_t = y), the posterior covariance; its trace measures how localized the
             process is (it falls from tr Cov(X) at t = 0 to about d / t)
===========  ==================================================================================

y is the solution of dy = m(y, t) dt + dB (a Markov process: the drift is the posterior mean),
and m(y_t, t) -> X as t -> infinity. Time change to the VP diffusion: x = y_t / sqrt(t (1 + t))
equals alpha X + sigma Z with alpha^2 = t / (1 + t), sigma^2 = 1 / (1 + t), so SNR = alpha^2 /
sigma^2 = t: localization time is the VP signal-to-noise ratio, and a grid uniform in log t is
uniform in log-SNR.

Transitions between grid times t < t' (Delta = t' - t). Given X, y_t' = y_t + Delta X +
sqrt(Delta) xi exactly; X given y_t is the posterior, so

* ``em`` (Euler-Maruyama): y' = y + Delta m(y, t) + sqrt(Delta) xi. It drops the posterior
  spread of X, a variance deficit Delta^2 tr S(y, t) per step: badly biased on a uniform grid.
  (With the time change it is DDPM's ancestral step with the beta-tilde variance.)
* ``gaussian`` (default): y' ~ N(y + Delta m, Delta I + Delta^2 S(y, t)), the Gaussian with the
  exact conditional mean and covariance of y_t' given y_t. Exact for a Gaussian target at any
  step size; for a mixture it replaces the posterior mixture by its first two moments. The
  posterior draw is built without a loop over components: sum_k sqrt(r_k) U_k (sqrt(v_k) * xi_k)
  + sum_k sqrt(r_k) eta_k (m_k - m), whose covariance is sum_k r_k P_k + sum_k r_k
  (m_k - m)(m_k - m)^T = S(y, t).

The last driver step reads the output off y_T: ``mean``, m(y_T, T) (default), or ``y``, y_T / T.
"""

from __future__ import annotations

from dataclasses import dataclass

from difflab.contracts import (
    STEPS,
    AffineStep,
    Capabilities,
    Option,
    PathStep,
    SamplerEntry,
    check_argument,
    init_option,
    positive,
    with_default,
)
from difflab.errors import ConfigError
from difflab.lazy import lazy
from difflab.maths.schedules import localization_grid
from difflab.samplers.diffusion import DECOMPOSITION_SE, DiffusionState, _as_state

np = lazy("numpy", globals(), "np")
TRANSITIONS, OUTPUTS = ("gaussian", "em"), ("mean", "y")


@dataclass(frozen=True)
class Localization(AffineStep):
    target: object
    times: np.ndarray  # (K + 1,), times[0] = 0
    transition: str = "gaussian"
    output: str = "mean"
    capabilities = Capabilities(per_particle=True, affine=True, estimate=True)

    def __post_init__(self):
        check_argument("transition", self.transition, TRANSITIONS)
        check_argument("output", self.output, OUTPUTS)

    @property
    def n_steps(self) -> int:
        return len(self.times)  # K moves and the read-out

    def init(self, x) -> DiffusionState:
        return _as_state(x)

    def _posterior(self, yt: np.ndarray, t: float):
        """(resp (K, n), component means (K, d, n), component variances (K, d)) of X | y_t."""
        mix = self.target.components
        if t == 0.0:  # nothing observed yet: the posterior is the target itself
            n = yt.shape[1]
            resp = np.broadcast_to(mix.weights[:, None], (mix.n_components, n))
            means = np.broadcast_to(mix.means[:, :, None], (mix.n_components, self.target.dim, n))
            return resp, means, mix.eigvals
        return mix.posterior_t(yt, t, np.sqrt(t))

    def _readout(self, yt: np.ndarray) -> np.ndarray:
        T = float(self.times[-1])
        if self.output == "y":
            return yt / T
        resp, means, _ = self._posterior(yt, T)
        return np.einsum("kn,kdn->dn", resp, means)

    @staticmethod
    def _trace(resp, means, var, m) -> np.ndarray:
        """tr S(y, t) = sum_k r_k (tr P_k + |m_k - m|^2), (n,)."""
        spread = means - m
        return np.einsum("kn,k->n", resp, var.sum(axis=1)) + np.einsum("kn,kdn,kdn->n", resp, spread, spread)

    def estimate(self, state: DiffusionState) -> np.ndarray:
        """The running estimate E[X | y_t] (n, d): what the read-out would give at the current time."""
        resp, means, _ = self._posterior(state.xt, float(self.times[state.k]))
        return np.einsum("kn,kdn->nd", resp, means)

    def deterministic(self, yt: np.ndarray, k: int) -> np.ndarray:
        if k == len(self.times) - 1:
            return self._readout(yt)
        t, t1 = float(self.times[k]), float(self.times[k + 1])
        resp, means, _ = self._posterior(yt, t)
        return yt + (t1 - t) * np.einsum("kn,kdn->dn", resp, means)

    def path_step(self, k: int) -> PathStep | None:
        """y_t = t X + W_t is the forward process at (alpha, sigma) = (t, sqrt t); the read-out is
        deterministic."""
        if k == len(self.times) - 1:
            return None
        t, t1 = float(self.times[k]), float(self.times[k + 1])
        return PathStep((t, float(np.sqrt(t))), (t1, float(np.sqrt(t1))))

    def noise_cov(self, k: int) -> np.ndarray | None:
        """Covariance of the step's noise; None for ``gaussian`` on a mixture, where it depends on
        y (the posterior covariance does not on a one-component target)."""
        d = self.target.dim
        if self.transition == "gaussian" and self.target.components.n_components > 1:
            return None
        if k == len(self.times) - 1:
            return np.zeros((d, d))
        t, t1 = float(self.times[k]), float(self.times[k + 1])
        delta = t1 - t
        cov = delta * np.eye(d)
        if self.transition == "gaussian":
            _, _, var = self._posterior(np.zeros((d, 1)), t)
            u = self.target.components.eigvecs[0]
            cov += delta * delta * (u * var[0]) @ u.T
        return cov

    def step(self, rng: np.random.Generator, state: DiffusionState):
        k, yt = state.k, state.xt
        last = k == len(self.times) - 1
        t = float(self.times[k])
        resp, means, var = self._posterior(yt, t)
        m = np.einsum("kn,kdn->dn", resp, means)
        info = {"nfe": 1.0, "posterior_trace": float(self._trace(resp, means, var, m).mean())}
        if last:  # read-out at T
            return DiffusionState(xt=yt / t if self.output == "y" else m, k=k + 1), info
        delta = float(self.times[k + 1]) - t
        spread = means - m  # (K, d, n)
        out = yt + delta * m
        out += np.sqrt(delta) * rng.standard_normal(yt.shape)
        if self.transition == "gaussian":
            sqrt_r = np.sqrt(resp)
            xi = rng.standard_normal(means.shape)  # (K, d, n)
            xi *= np.sqrt(var)[:, :, None]
            within = np.matmul(self.target.components.eigvecs, xi)  # U_k (sqrt(v_k) * xi_k)
            eta = rng.standard_normal(resp.shape)  # (K, n)
            draw = np.einsum("kn,kdn->dn", sqrt_r, within) + np.einsum("kn,kdn->dn", sqrt_r * eta, spread)
            out += delta * draw
        return DiffusionState(xt=out, k=k + 1), info


# ---------------------------------------------------------------- registry entry
def _resolve(p: dict) -> dict:
    if p["t_max"] <= p["t_min"]:
        raise ConfigError(f"--t-max: must be > --t-min ({p['t_min']}), got {p['t_max']}")
    return p


LOCALIZATION_ENTRY = SamplerEntry(
    "localization", "Stochastic localization y_t = t X + W_t driven by the exact posterior mean.",
    options=(Option("t_min", 1e-4, float, "First time after 0 on the log grid.", check=positive),
             Option("t_max", 1e4, float, "Final time T.", check=positive),
             Option("grid", "log", str, "Time grid: log (uniform in log t = log-SNR) or uniform.",
                    choices=("log", "uniform")),
             Option("transition", Localization.transition, str, "gaussian (exact conditional mean and covariance) "
                    "or em (Euler-Maruyama).", choices=TRANSITIONS),
             Option("output", Localization.output, str, "mean: E[X | y_T]; y: y_T / T.", choices=OUTPUTS),
             DECOMPOSITION_SE),
    build=lambda target, p: Localization(target, localization_grid(p["t_min"], p["t_max"], p["steps"], p["grid"]),
                                         transition=p["transition"], output=p["output"]),
    resolve=_resolve, needs=("noised_law", "exact", "components"),
    init=init_option("zero", help="Localization starts at y_0 = 0."),
    steps=with_default(STEPS, 500, "Moves on the time grid (then one read-out)."),
)
