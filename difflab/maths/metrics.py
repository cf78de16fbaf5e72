"""Error metrics: pure functions, arrays in, numbers out.

Each definition below is the one the README's metric table documents. ``x`` is a sample (n, d);
``ref`` is a sample of exact target draws (m, d).

* ``mean_error``: |mean(x) - mu|_2, mu the exact target mean.
* ``cov_rel_error``: |Cov(x) - Sigma|_F / |Sigma|_F, Sigma the exact target covariance.
* ``w2_gaussian``: the Bures-Wasserstein distance between N(mean(x), Cov(x)) and N(mu, Sigma),
  W2^2 = |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2). Exact for Gaussians, a lower
  bound on W2 for other laws (Gelbrich's bound).
* ``sliced_w2``: (mean over P random unit directions theta of W2^2(theta^T x, theta^T ref))^1/2,
  each 1-D W2 from matched quantiles. Biased upward by sampling noise at finite n.
* ``mmd2``: the unbiased estimate (U-statistic) of the squared MMD with the Gaussian kernel
  exp(-|a - b|^2 / (2 l^2)), l the median distance between the reference draws (the median
  heuristic, Gretton et al. 2012: a length scale at the data's own, in any dimension); it can be
  slightly negative when the laws agree.
* ``w2_empirical``: the exact W2 between the sample and as many reference draws (at most 500 of
  each, evenly thinned): sqrt(min over matchings of the mean |x_i - y_pi(i)|^2), the optimal
  matching by ``scipy.optimize.linear_sum_assignment`` (O(n^3): hence the 500).
* ``ksd2``: the kernel Stein discrepancy (Gorham and Mackey 2017; Liu et al. 2016) with the
  inverse multiquadric kernel k(x, y) = (1 + |x - y|^2)^(-1/2) and the target's exact score s:
  the U-statistic mean over pairs i != j of the Stein kernel
  k_p(x, y) = s(x).s(y) k + s(x).grad_y k + s(y).grad_x k + tr(grad_x grad_y k), which has mean 0
  under the target; no reference draws are involved (at most 500 points of the sample).
* ``energy``: Szekely's energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (U-statistics).
* ``mode_tv``: (1/2) sum_k |occ_k - w_k|, occ_k = mean_i p(k | x_i) the soft occupancy of
  component k. For exact draws E[occ_k] = w_k, so the estimate is unbiased for the target itself.
* ``split_rhat``, ``ess``: split R-hat (Gelman et al., BDA3) and the multi-chain effective sample
  size with Geyer's initial monotone sequence (Vehtari et al. 2021), per coordinate, from an array
  of draws (T, chains, d).
* ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``: the diagnostics ArviZ and Stan report
  (Vehtari et al. 2021): rank-normalised split R-hat (the larger of the bulk value and that of the
  draws folded about their median), the ESS of the rank-normalised split chains, the smaller ESS of
  the indicators I(x <= q_0.05) and I(x <= q_0.95), and sd / sqrt(ess) (ArviZ's defaults).
"""

from __future__ import annotations

import math
import os

import numpy as np


def mean_error(x: np.ndarray, mean: np.ndarray) -> float:
    return float(np.linalg.norm(x.mean(axis=0) - mean))


def sample_cov(x: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.cov(x, rowvar=False))


def cov_rel_error(x: np.ndarray, cov: np.ndarray) -> float:
    return float(np.linalg.norm(sample_cov(x) - cov) / np.linalg.norm(cov))


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    lam, u = np.linalg.eigh(0.5 * (a + a.T))
    return (u * np.sqrt(np.clip(lam, 0.0, None))) @ u.T


def gaussian_w2(m1, s1, m2, s2) -> float:
    """Bures-Wasserstein distance between N(m1, s1) and N(m2, s2)."""
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    r2 = _psd_sqrt(s2)
    cross = np.linalg.eigvalsh(r2 @ s1 @ r2)
    bures = np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(np.sqrt(max(np.sum((np.asarray(m1) - np.asarray(m2)) ** 2) + bures, 0.0)))


def w2_gaussian(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    return gaussian_w2(x.mean(axis=0), sample_cov(x), mean, cov)


def random_directions(rng: np.random.Generator, n_proj: int, d: int) -> np.ndarray:
    """n_proj directions uniform on the unit sphere, (d, n_proj)."""
    th = rng.standard_normal((d, n_proj))
    return th / np.linalg.norm(th, axis=0)


def sliced_w2(x: np.ndarray, ref: np.ndarray, directions: np.ndarray) -> float:
    """Sliced W2 over the given directions (d, P); unequal sizes are matched on a common quantile grid."""
    return _sliced_w2_sorted(_sorted_projections(x, directions), _sorted_projections(ref, directions))


def _sliced_w2_sorted(px: np.ndarray, pr: np.ndarray) -> float:
    """Sliced W2 from sorted projections, one row per direction: (P, n) and (P, m)."""
    k = min(px.shape[1], pr.shape[1])
    return float(np.sqrt(np.mean((_row_quantiles(px, k) - _row_quantiles(pr, k)) ** 2)))


def _row_quantiles(sorted_rows: np.ndarray, k: int) -> np.ndarray:
    """The rows themselves if they hold k values, else their quantiles on the grid of k (contiguous)."""
    return sorted_rows if sorted_rows.shape[1] == k else np.ascontiguousarray(_quantiles(sorted_rows.T, k).T)


def _sorted_projections(x: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The projections of x (n, d) on the directions (d, P), each sorted: (P, n), rows contiguous."""
    p = np.ascontiguousarray(directions.T) @ np.ascontiguousarray(x.T)
    p.sort(axis=1)
    return p


def _quantiles(sorted_vals: np.ndarray, k: int) -> np.ndarray:
    """Empirical quantiles at (i + 1/2) / k of sorted columns (linear interpolation, as np.interp),
    all columns at once."""
    n = len(sorted_vals)
    pos = np.clip((np.arange(k) + 0.5) / k * n - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo)[:, None]
    return (sorted_vals[hi] - sorted_vals[lo]) * frac + sorted_vals[lo]


def sq_distances(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances (n, m) as |x|^2 + |y|^2 - 2 x y^T: one GEMM, clipped at 0, with an
    exact zero diagonal for y = None (x against itself). Agrees with scipy's cdist to ~1e-12 relative
    to the squared norms (tested); used instead of it because importing scipy.spatial costs most of a
    second per process, which a sweep of short runs pays every time."""
    same = y is None
    y = x if same else y
    d2 = np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", y, y)[None, :] - 2.0 * (x @ y.T)
    np.maximum(d2, 0.0, out=d2)
    if same:
        np.fill_diagonal(d2, 0.0)
    return d2


# Entries of one block of pair terms: 2^15 doubles (256 KiB) stay in the core's cache, where a whole
# (1,000 x 2,000) matrix and its temporaries are 16 MB each, paid in page faults on every call.
_BLOCK_ENTRIES = 1 << 15


def _pair_sums(x: np.ndarray, y: np.ndarray | None, bandwidth: float | None, distance: bool) -> tuple:
    """(sum of the Gaussian kernel exp(-|a - b|^2 / (2 l^2)), sum of the distances |a - b|) over all
    pairs (x_i, y_j), or over all ordered pairs (x_i, x_j) of x with y = None, the diagonal included
    (kernel 1, distance 0); each None when not asked for, so a caller pays only for the exp or the
    sqrt it uses. Squared distances as |a|^2 + |b|^2 - 2 a.b (one GEMM per block of rows, clipped at
    0), in blocks of rows small enough to stay in cache; for x against itself only the blocks on
    and above the diagonal are formed (the matrix is symmetric) and the diagonal is exactly 0."""
    same = y is None
    y = x if same else y
    n, m = len(x), len(y)
    xx, yy = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    x2 = -2.0 * x  # (-2 a).b is -2 (a.b) exactly (a power of 2): one pass less per block
    rows = max(1, min(n, _BLOCK_ENTRIES // max(m, 1)))
    buf, tmp = np.empty(rows * m), np.empty(rows * m)
    scale = None if bandwidth is None else -0.5 / bandwidth**2
    k_sum = d_sum = 0.0
    for i0 in range(0, n, rows):
        i1 = min(i0 + rows, n)
        j0 = i0 if same else 0  # x against itself: columns from the block's own diagonal on
        b, w = i1 - i0, m - j0
        d2 = buf[: b * w].reshape(b, w)
        np.matmul(x2[i0:i1], y[j0:].T, out=d2)
        d2 += xx[i0:i1, None]
        d2 += yy[None, j0:]
        np.maximum(d2, 0.0, out=d2)
        if same:
            d2[np.arange(b), np.arange(b)] = 0.0
        t = tmp[: b * w].reshape(b, w)
        # x against itself: the square on the diagonal holds both (i, j) and (j, i); the part to its
        # right stands for itself and its mirror image below the diagonal.
        if scale is not None:
            np.multiply(d2, scale, out=t)
            np.exp(t, out=t)
            k_sum += float(t[:, :b].sum()) + 2.0 * float(t[:, b:].sum()) if same else float(t.sum())
        if distance:
            np.sqrt(d2, out=t)
            d_sum += float(t[:, :b].sum()) + 2.0 * float(t[:, b:].sum()) if same else float(t.sum())
    return (k_sum if scale is not None else None), (d_sum if distance else None)


def _self_terms(x: np.ndarray, bandwidth: float | None = None, distance: bool = True) -> tuple:
    """U-statistic means over pairs i != j of x: (Gaussian kernel or None, distance or None)."""
    n = len(x)
    k, dist = _pair_sums(x, None, bandwidth, distance)  # the zero diagonal: kernel n, distance 0
    pairs = n * (n - 1)
    return (None if k is None else (k - n) / pairs), (None if dist is None else dist / pairs)


def _cross_terms(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, distance: bool = True) -> tuple:
    """Means over all pairs (x_i, y_j): (Gaussian kernel or None, distance or None)."""
    pairs = len(x) * len(y)
    k, dist = _pair_sums(x, y, bandwidth, distance)
    return (None if k is None else k / pairs), (None if dist is None else dist / pairs)


def median_distance(x: np.ndarray) -> float:
    """The median of the pairwise distances |x_i - x_j|, i < j (the median heuristic's length scale)."""
    d2 = sq_distances(x)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(max(np.median(d2[iu]), 0.0)))


def w2_empirical(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W2 between the empirical laws of x and y of equal size: the optimal matching of the
    squared distances by linear_sum_assignment (Hungarian-type, O(n^3))."""
    from scipy.optimize import linear_sum_assignment

    if len(x) != len(y):
        from difflab.errors import ConfigError

        raise ConfigError(f"w2_empirical: x and y must have the same number of points, got {len(x)} and {len(y)}")
    cost = sq_distances(x, y)
    if not np.isfinite(cost).all():  # a diverging sample (distances beyond float range): no matching to find
        return float("inf")
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(max(cost[rows, cols].mean(), 0.0)))


IMQ_C, IMQ_BETA = 1.0, -0.5  # the inverse multiquadric kernel (c^2 + |r|^2)^beta, Gorham and Mackey's choice


def stein_kernel(x: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The IMQ Stein kernel matrix k_p(x_i, x_j), (n, n), from points x (n, d) and the target's
    score at them (n, d). With r = x_i - x_j, u = c^2 + |r|^2, k = u^beta:
    s_i.s_j k - 2 beta u^(beta-1) (s_i.r) + 2 beta u^(beta-1) (s_j.r) - 2 beta (d u^(beta-1) + 2 (beta-1) u^(beta-2) |r|^2)."""
    d = x.shape[1]
    b = IMQ_BETA  # -1/2: u^b = 1 / sqrt(u), u^(b - 1) = u^b / u (no fractional powers of 4 M entries)
    r2 = sq_distances(x)
    u = r2 + IMQ_C * IMQ_C
    k = 1.0 / np.sqrt(u)
    ub1 = k / u
    a = score @ x.T  # a_ij = s_i . x_j
    ai = np.diag(a).copy()
    # -2b u^(b-1) [s_i.(x_i - x_j) - s_j.(x_i - x_j)] = -2b u^(b-1) [a_ii - a_ij - a_ji + a_jj]
    cross = ai[:, None] + ai[None, :]
    cross -= a
    cross -= a.T
    out = score @ score.T
    out *= k
    cross *= -2.0 * b
    cross -= 2.0 * b * d
    cross -= 4.0 * b * (b - 1.0) * r2 / u
    cross *= ub1
    out += cross
    return out


def ksd2(x: np.ndarray, score: np.ndarray) -> float:
    """The U-statistic KSD^2: the mean of the IMQ Stein kernel over pairs i != j."""
    kp = stein_kernel(x, score)
    n = len(x)
    return float((kp.sum() - np.trace(kp)) / (n * (n - 1)))


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased squared MMD with the Gaussian kernel of length scale ``bandwidth``."""
    kxx = _self_terms(x, bandwidth, distance=False)[0]
    kyy = _self_terms(y, bandwidth, distance=False)[0]
    return kxx + kyy - 2.0 * _cross_terms(x, y, bandwidth, distance=False)[0]


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Szekely's energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (U-statistics within samples)."""
    return 2.0 * _cross_terms(x, y)[1] - _self_terms(x)[1] - _self_terms(y)[1]


def tv(q: np.ndarray, p: np.ndarray) -> float:
    """Total variation between two pmfs on one enumerated space."""
    return float(0.5 * np.abs(q - p).sum())


def kl(q: np.ndarray, p: np.ndarray) -> float:
    """KL(q || p) = sum q log(q / p) of two pmfs; infinite if q puts mass where p has none."""
    pos = q > 0
    if (p[pos] <= 0).any():
        return math.inf
    return float(max(0.0, np.sum(q[pos] * (np.log(q[pos]) - np.log(p[pos])))))


def mode_tv(x: np.ndarray, target) -> float:
    """Total variation between the samples' soft occupancy of a mixture's components (the mean of
    p(k | x)) and the components' weights."""
    mix = target.components
    occupancy = mix.posterior_weights(x).mean(axis=0)
    return float(0.5 * np.abs(occupancy - mix.weights).sum())


def _split_chains(draws: np.ndarray) -> np.ndarray:
    """(T, m, d) -> (T // 2, 2 m, d): each chain cut into its first and last halves (for odd T
    the middle draw is dropped, as Stan and ArviZ do)."""
    half = draws.shape[0] // 2
    return np.concatenate([draws[:half], draws[draws.shape[0] - half :]], axis=1)


def split_rhat(draws: np.ndarray) -> np.ndarray:
    """Split R-hat per coordinate for draws (T, chains, d); needs T >= 4 (the pre-2021 estimator,
    ArviZ's ``method="split"``)."""
    return _split_rhat_of_chains(_split_chains(draws))


def ess(draws: np.ndarray) -> np.ndarray:
    """Multi-chain effective sample size per coordinate for draws (T, chains, d): the estimator of
    Stan and ArviZ (``ess_mean``; Vehtari et al. 2021, without rank normalisation), to round-off.

    On split chains of n draws: rho_0 = 1, rho_t = 1 - (W - mean_j acov_j(t)) / var_plus; pair sums
    P_k = rho_2k + rho_2k+1 for k <= (n - 3) // 2, truncated at the first P_k <= 0 (Geyer's initial
    positive sequence) and made monotone (running minimum); tau = -1 + 2 sum_{k < K} P_k + rho_2K,
    the last term (the first truncated pair's even lag) counted once when positive or when that
    pair was kept; ESS = (chains x n) / max(tau, 1 / log10(chains x n)).
    """
    return _ess_of_chains(_split_chains(draws))


def _ess_of_chains(s: np.ndarray) -> np.ndarray:
    """``ess``'s estimator on chains as given (already split), (n, m, d) -> (d,). A constant
    coordinate has ESS n m (ArviZ's convention: nothing to estimate)."""
    flat = s.reshape(-1, s.shape[2])
    constant = (flat.max(axis=0) - flat.min(axis=0)) < np.finfo(np.float64).resolution
    if constant.any():
        out = np.full(s.shape[2], float(flat.shape[0]))
        if not constant.all():
            out[~constant] = _ess_of_chains(s[:, :, ~constant])
        return out
    n, m, d = s.shape
    centred = s - s.mean(axis=0)
    nfft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=nfft, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=nfft, axis=0)[:n] / n  # (n, m, d), biased estimator
    chain_var = acov[0] * n / (n - 1)
    w = chain_var.mean(axis=0)
    var_plus = (n - 1) / n * w + s.mean(axis=0).var(axis=0, ddof=1)
    rho = 1.0 - (w - acov.mean(axis=1)) / var_plus  # (n, d)
    rho[0] = 1.0
    kmax = max((n - 3) // 2, 0)
    pairs = rho[: 2 * (kmax + 1)].reshape(kmax + 1, 2, d).sum(axis=1)  # P_0..P_kmax, (kmax + 1, d)
    stop = pairs[1:] <= 0
    first_stop = stop.argmax(axis=0) + 1 if kmax else np.zeros(d, dtype=np.int64)
    k_last = np.where(stop.any(axis=0), first_stop, kmax)  # the last pair looked at
    k_last = np.where(pairs[0] > 0, k_last, 0)
    mono = np.minimum.accumulate(pairs, axis=0)
    kept = np.arange(kmax + 1)[:, None] < k_last
    cols = np.arange(d)
    even, last = rho[2 * k_last, cols], pairs[k_last, cols]
    tau = -1.0 + 2.0 * np.where(kept, mono, 0.0).sum(axis=0) + np.where((last >= 0) | (even > 0), even, 0.0)
    return n * m / np.maximum(tau, 1.0 / np.log10(max(n * m, 10)))


def rank_normalize(draws: np.ndarray) -> np.ndarray:
    """z = Phi^-1((r - 3/8) / (S - 1/4)), r the average rank of each draw among all S draws of its
    coordinate (Vehtari et al. 2021, eq. 14; ArviZ's ``_z_scale``), (T, m, d) -> same shape."""
    from scipy import special, stats

    t, m, d = draws.shape
    ranks = stats.rankdata(draws.reshape(t * m, d), method="average", axis=0).reshape(draws.shape)
    return special.ndtri((ranks - 0.375) / (t * m + 0.25))


def r_hat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat per coordinate: max(bulk, tail), bulk the split R-hat of the
    rank-normalised split draws, tail that of |x - median| rank-normalised (ArviZ's ``rhat``
    default, ``method="rank"``)."""
    split = _split_chains(draws)
    median = np.median(split.reshape(-1, draws.shape[2]), axis=0)  # of the split draws (odd T: less the middle one)
    bulk = _split_rhat_of_chains(rank_normalize(split))
    tail = _split_rhat_of_chains(rank_normalize(np.abs(split - median)))
    return np.maximum(bulk, tail)


def _split_rhat_of_chains(s: np.ndarray) -> np.ndarray:
    n = s.shape[0]
    w = s.var(axis=0, ddof=1).mean(axis=0)
    b = n * s.mean(axis=0).var(axis=0, ddof=1)
    return np.sqrt(((n - 1) / n * w + b / n) / w)


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk-ESS per coordinate: ``ess``'s estimator on the rank-normalised split chains."""
    return _ess_of_chains(rank_normalize(_split_chains(draws)))


def ess_tail(draws: np.ndarray) -> np.ndarray:
    """Tail-ESS per coordinate: the smaller ESS of I(x <= q_0.05) and I(x <= q_0.95), q the
    coordinate's quantiles over all draws (R's type 7, as ArviZ)."""
    from scipy.stats.mstats import mquantiles

    flat = draws.reshape(-1, draws.shape[2])
    # R's type 7 by scipy's formula, as ArviZ: with ties at a quantile, numpy's interpolation can
    # land an ulp off the tied value and change the indicator
    lo, hi = np.asarray(mquantiles(flat, [0.05, 0.95], alphap=1, betap=1, axis=0))
    return np.minimum(ess((draws <= lo).astype(np.float64)), ess((draws <= hi).astype(np.float64)))


def mcse_mean(draws: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of each coordinate's mean: sd / sqrt(ess) (ArviZ's ``mcse``)."""
    sd = draws.reshape(-1, draws.shape[2]).std(axis=0, ddof=1)
    return sd / np.sqrt(ess(draws))


# How many independent exact-draw sets give each metric's floor and its standard error (16: the
# standard error itself is then known to about 18 %, see analysis.FLOOR_SE_MARK).
FLOOR_DRAWS = 16


def floor_stats(final, sample, rng: np.random.Generator, n: int, draws: int = FLOOR_DRAWS) -> dict[str, float]:
    """The Monte Carlo floor of each final metric and its standard error.

    ``final`` (a suite's ``final``) is evaluated on ``draws`` independent sets of ``n`` exact draws
    (``sample(rng, n)``), each against the suite's one reference set, as the run's own sample is.
    ``floor_<m>`` is their mean: what the metric reads for an exact sampler of this size.
    ``floor_se_<m>`` is their standard deviation (ddof = 1): the standard error of one value of the
    metric at the target, the scale on which a run's value is judged (the mean itself is known to
    ``floor_se / sqrt(draws)``).
    """
    values = [final(sample(rng, n))]  # the first alone: a suite's lazily computed state is set here
    values += _map_in_threads(final, lambda: sample(rng, n), draws - 1)
    out: dict[str, float] = {}
    for key in values[0]:
        v = np.array([d[key] for d in values], dtype=np.float64)
        out[f"floor_{key}"] = float(v.mean())
        out[f"floor_se_{key}"] = float(v.std(ddof=1)) if np.isfinite(v).all() else float("nan")
    return out


class _Background:
    """fn(*args) on a daemon thread; ``result()`` waits for it and returns its value or raises its error."""

    def __init__(self, fn, *args):
        import threading

        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn, args):
        try:
            self._value = fn(*args)
        except BaseException as e:  # noqa: BLE001 -- re-raised by result(), in the caller
            self._error = e

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def _map_in_threads(fn, draw, count: int) -> list:
    """[fn(draw()) for _ in range(count)], on a few threads (the metrics' GEMMs, exp, sqrt and
    assignments release the GIL): each set is drawn in turn under a lock, so set i holds the same
    draws as in a loop and the values are identical; at most one set per thread is held at a time."""
    workers = min(_workers(), count)
    if workers <= 1:
        return [fn(draw()) for _ in range(count)]
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock, stop, out, turn = threading.Lock(), threading.Event(), [None] * count, iter(range(count))

    def work():
        while not stop.is_set():
            with lock:
                i = next(turn, None)
                if i is None:
                    return
                x = draw()
            out[i] = fn(x)

    with ThreadPoolExecutor(workers) as pool:
        try:
            for f in [pool.submit(work) for _ in range(workers)]:
                f.result()
        except BaseException:  # an error in a set, or a signal in this thread: the others stop at their next set
            stop.set()
            raise
    return out


# The metric settings (the reference's size, the projections, the subsample sizes): a floor-cache key
# holds them, so an entry is never read by a suite that measures differently.
SUITE_DEFAULTS = {"n_reference": 10_000, "n_proj": 64, "max_points": 10_000, "max_pairwise": 2_000,
                  "max_matching": 500, "max_stein": 500}


class MetricSuite:
    """The metrics of one run, against one target and one set of exact reference draws.

    The random directions and the reference draws are fixed at construction (from ``rng``: a run
    gives a generator seeded by the target and these settings alone, so every run on the
    target, and its cached floors, share them), so a series compares like with like.
    Samples larger than ``max_points`` are subsampled (evenly spaced rows) for the sample-based
    metrics; moments always use every particle.
    """

    def __init__(self, target, rng: np.random.Generator, n_reference: int = SUITE_DEFAULTS["n_reference"],
                 n_proj: int = SUITE_DEFAULTS["n_proj"], max_points: int = SUITE_DEFAULTS["max_points"],
                 max_pairwise: int = SUITE_DEFAULTS["max_pairwise"], max_matching: int = SUITE_DEFAULTS["max_matching"],
                 max_stein: int = SUITE_DEFAULTS["max_stein"], stein: bool = True, bandwidth: float | None = None,
                 ref_self: tuple | None = None):
        self.target = target
        self.mean = target.mean
        self.cov = target.cov
        self.reference = target.sample(rng, n_reference)
        self.directions = random_directions(rng, n_proj, target.dim)
        # The reference's sorted projections, and their quantiles per sample size, computed once;
        # (P, m): one contiguous row per direction (sorting rows in place is ~2x faster than columns).
        self._ref_sorted = _sorted_projections(self.reference, self.directions)
        self._ref_quantiles: dict[int, np.ndarray] = {}
        self.ref_self = ref_self  # the reference's own pair terms (computed on first use, or given: cached)
        self.max_points = max_points
        self.max_pairwise = max_pairwise
        self.max_matching = max_matching
        self.max_stein = max_stein
        self.stein = stein  # the target has an exact score (ksd2); False for a law known by its draws alone
        self.bandwidth = median_distance(self._thin(self.reference, max_pairwise)) if bandwidth is None else bandwidth

    def reference_parts(self) -> dict:
        """What this suite drew and derived from its generator (read-only arrays), for
        ``from_reference``: a later suite on the same target and settings shares them."""
        for a in (self.reference, self.directions, self._ref_sorted, *self._ref_quantiles.values()):
            a.flags.writeable = False
        return {"reference": self.reference, "directions": self.directions, "ref_sorted": self._ref_sorted,
                "ref_quantiles": self._ref_quantiles, "bandwidth": self.bandwidth, "ref_self": self.ref_self,
                "limits": (self.max_points, self.max_pairwise, self.max_matching, self.max_stein, self.stein)}

    @classmethod
    def from_reference(cls, target, parts: dict) -> MetricSuite:
        """A suite on ``target`` sharing ``parts`` (``reference_parts`` of a suite built on the same
        target and settings): identical metrics, without redrawing the reference."""
        self = cls.__new__(cls)
        self.target, self.mean, self.cov = target, target.mean, target.cov
        self.reference, self.directions, self._ref_sorted = parts["reference"], parts["directions"], parts["ref_sorted"]
        self._ref_quantiles = parts["ref_quantiles"]
        self.bandwidth, self.ref_self = parts["bandwidth"], parts["ref_self"]
        self.max_points, self.max_pairwise, self.max_matching, self.max_stein, self.stein = parts["limits"]
        return self

    @staticmethod
    def _thin(x: np.ndarray, k: int) -> np.ndarray:
        return x if len(x) <= k else x[np.linspace(0, len(x) - 1, k).astype(np.int64)]

    def series(self, x: np.ndarray) -> dict[str, float]:
        out = {
            "mean_error": mean_error(x, self.mean),
            "cov_rel_error": cov_rel_error(x, self.cov),
            "w2_gaussian": w2_gaussian(x, self.mean, self.cov),
            "sliced_w2": self._sliced_w2(self._thin(x, self.max_points)),
        }
        mix = self.target.components
        if mix is not None and mix.n_components > 1:
            out["mode_tv"] = mode_tv(x, self.target)
        return out

    def _sliced_w2(self, x: np.ndarray) -> float:
        """sliced_w2(x, self.reference, self.directions), reusing the reference's sorted projections."""
        px = _sorted_projections(x, self.directions)
        k = min(px.shape[1], self._ref_sorted.shape[1])
        if k not in self._ref_quantiles:
            self._ref_quantiles[k] = _row_quantiles(self._ref_sorted, k)
        return _sliced_w2_sorted(px, self._ref_quantiles[k])

    def final(self, x: np.ndarray) -> dict[str, float]:
        k = min(len(x), self.max_matching)
        # The optimal matching (the costliest term; scipy releases the GIL) on a thread of its own,
        # beside the rest.
        matching = _Background(w2_empirical, self._thin(x, k), self._thin(self.reference, k))
        out = self.series(x)
        xs = self._thin(x, self.max_pairwise)
        rs = self._thin(self.reference, self.max_pairwise)
        if self.ref_self is None:  # the reference's own pair terms: the same for every call
            self.ref_self = _self_terms(rs, self.bandwidth)
        (kxx, dxx), (kxy, dxy) = _self_terms(xs, self.bandwidth), _cross_terms(xs, rs, self.bandwidth)
        out["mmd2"] = kxx + self.ref_self[0] - 2.0 * kxy
        out["energy"] = 2.0 * dxy - dxx - self.ref_self[1]
        out["w2_empirical"] = matching.result()
        if self.stein:
            xk = self._thin(x, self.max_stein)
            score = self.target.score_t(np.ascontiguousarray(xk.T), 1.0, 0.0).T
            out["ksd2"] = ksd2(xk, np.ascontiguousarray(score))
        return out


class DiscreteMetricSuite:
    """Monte Carlo metrics of a sample of states (n, d) codes against an enumerated target.

    * ``tv``: (1/2) sum_x |h(x) - p(x)|, h the empirical histogram over all K^d states;
    * ``kl``: KL(h || p) = sum_x h(x) log(h(x) / p(x)) (plug-in; infinite if h visits a state of
      probability 0);
    * ``marginal_tv``: max over sites i of the TV between the empirical and exact laws of x_i;
    * ``pair_tv``: max over pairs i < j of the TV between the empirical and exact laws of
      (x_i, x_j) (for spins: the pair correlations).

    The histogram metrics need the whole space enumerated; the marginal ones scale with d. A
    sample with masked coordinates (an interrupted absorbing run) gets no metrics.
    """

    def __init__(self, target):
        self.target = target
        self.marg = target.marginals()
        self.pairs = target.pair_marginals()

    def series(self, x: np.ndarray) -> dict[str, float]:
        tg = self.target
        if (x >= tg.K).any():  # masked coordinates left (an interrupted absorbing run): not states of the target
            return {}
        h = np.bincount(tg.index(x), minlength=tg.n_states) / len(x)
        oh = (x[:, :, None] == np.arange(tg.K)).astype(np.float64)  # (n, d, K)
        marg = oh.mean(axis=0)
        pairs = np.einsum("nia,njb->ijab", oh, oh, optimize=True) / len(x)
        iu = np.triu_indices(tg.dim, 1)
        pair_tv = 0.5 * np.abs(pairs - self.pairs)[iu].sum(axis=(1, 2))
        return {
            "tv": tv(h, tg.probs),
            "kl": kl(h, tg.probs),
            "marginal_tv": float(0.5 * np.abs(marg - self.marg).sum(axis=1).max()),
            "pair_tv": float(pair_tv.max()) if len(pair_tv) else 0.0,
        }

    final = series
