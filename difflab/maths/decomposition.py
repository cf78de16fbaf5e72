"""The split of a reverse sampler's error into its sources (the README's "Error decomposition").

**Stochastic samplers: KL telescoping.** A sampler whose steps are Gaussian kernels
q_k(x_to | x_frm) = N(A_k(x_frm), Q_k) (ddpm with eta > 0, sde with or without correctors,
localization) is compared with a reference Markov process whose marginals are the true noised
laws p_t: the forward process read backwards, whose kernels are the true reverse conditionals
p(x_s | x_t), and for a corrector step at level s the exact Langevin diffusion on p_s (it leaves
p_s invariant). The chain rule for KL over the two paths, then the data-processing inequality for
the last state, give (e.g. Chen et al. 2023; Benton et al. 2024)

    KL(p_delta || law of the sampler's state at delta)
        <= KL(path of p || path of q)
         = KL(p_1 || prior) + sum_k E_{x ~ p_frm(k)} KL(p_k(. | x) || q_k(. | x)),

delta being the last noisy level (after it only a deterministic read-out, x0_hat, may follow).
Summary keys: ``kl_prior``, the per-step terms ``kl_step`` (the per-step series of the run file),
``kl_path`` = ``kl_prior`` + sum ``kl_step``, and, where the law of the sampler's state is exact
(Gaussian target, affine score), the left side ``kl_delta`` and ``kl_path_gap`` = ``kl_path`` -
``kl_delta`` >= 0. All are KL(truth || sampler): the bound's direction.

* Gaussian target, affine score: every term is closed form. The reference kernel is
  N(P x + c, R) with, in the eigenbasis of the target's covariance S (every level's covariance
  C = alpha^2 S + sigma^2 I shares it), P = r C_s C_t^-1, R = v C_s C_t^-1 (r = alpha_t / alpha_s,
  v = sigma_t^2 - r^2 sigma_s^2 the forward step's variance); for a corrector with step e,
  P = exp(-e C_s^-1), R = C_s (I - exp(-2 e C_s^-1)). The sampler's A_k is read off its own
  ``deterministic`` map (affine there), so E_x KL = 1/2 [sum_i (rho_i - 1 - log rho_i) +
  |Q^-1/2 (mean gap)|^2 + |Q^-1/2 (P - A) C_t^1/2|_F^2], rho the eigenvalues of Q^-1 R.
* Mixture target (or a non-affine score error): the true reverse conditional is a mixture,
  p(x_s | x_t) = sum_j w_j(x_t) N(mu_j(x_t), R_j), w_j(x_t) the posterior of component j, and
  KL(sum_j w_j p_j || q) = sum_j w_j KL(p_j || q) - I(J; X_s | x_t), where, J being independent
  of x_t given x_s, I = E[KL(w(x_s) || w(x_t))]. Each step is estimated from n exact joint draws
  (x_0 ~ p, x_s, x_t from the forward process) of the per-draw value
  sum_j w_j(x_t) KL(p_j || q)(x_t) - KL(w(x_s) || w(x_t)) (closed-form Gaussian KLs: only the
  averaging is Monte Carlo), unbiased, with standard error sd / sqrt(n); draws are fresh per step,
  so the variances of the steps add. Corrector steps have no closed-form reference kernel on a
  mixture, nor has localization's ``gaussian`` transition a fixed covariance there: no ``kl_path``.

**Deterministic samplers (pflow, ddpm with eta = 0): a W2 split.** No KL chain rule applies to a
deterministic map (the path KL is infinite). On a Gaussian target the exact probability-flow map
from level 1 to delta is affine, Phi(x) = mu_delta + M (x - mu_1) with M = C_delta^1/2 C_1^-1/2,
and the triangle inequality gives

    W2(p_0, out) <= w2_score_error + w2_discretisation + w2_prior + w2_early_stop,

with w2_prior = W2(R Phi # prior, ideal), w2_discretisation = W2(R Psi # prior, R Phi # prior)
(Psi the solver with the exact score, R the read-out), w2_score_error = W2(out, R Psi # prior)
and w2_early_stop = W2(ideal, p_0).

**Every sampler with path steps** also gets ``kl_early_stop`` = KL(p_0 || ideal output), the
ideal output being p_delta pushed through the read-out with the exact score: p_delta itself, or
the law of E[X | x_delta] (ddpm, which also reads out at the last positive grid time when it runs
to t = 0; localization's ``mean``). Monte Carlo on a mixture without a read-out; not reported on a
mixture with one (no closed form). KL is not a metric: ``kl_early_stop`` and ``kl_path`` do not
add up to a bound on KL(p_0 || out); in W2 they would.

``score_error_term`` (with a score error): the continuous-time (Girsanov) term
int_delta^1 g(t)^2 / 2 E_{p_t}|s~ - s|^2 dt, a left-endpoint sum on the sampler's grid.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from difflab.maths import exact
from difflab.maths.metrics import gaussian_w2
from difflab.maths.schedules import alpha_sigma

N_PRIOR = 20_000  # exact draws for the Monte Carlo kl_prior and kl_early_stop on a mixture
PATH_BUDGET = 100_000  # exact joint draws over all steps for the Monte Carlo kl_step
PER_STEP = (100, 20_000)  # ... and at least / at most this many per step


MAX_DRAWS = 1_000_000  # per term (per step for kl_step), whatever standard error is asked for
PILOT = 1_000  # with a requested standard error: the first batch, whose spread sizes the rest


def _mc(values: np.ndarray):
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def _sized_mc(draw, n: int, se: float | None, pilot: int = PILOT):
    """(mean, standard error) of the per-draw values ``draw(m)`` returns for m draws.

    Without a requested standard error (``se`` None): one batch of the fixed budget ``n``. With
    one: a pilot batch, then, while the standard error of the draws so far is above ``se``, a batch
    that brings them to m = 1.1 m_so_far (SE / se)^2 in all (the size at which their spread gives
    ``se``, with a 10 % margin for the spread's own noise; at most MAX_DRAWS, at most 4 batches
    after the pilot): a loose ``se`` costs the pilot alone, a tight one what it needs. The reported
    standard error is that of all the draws."""
    if se is None:
        return _mc(draw(n))
    values = draw(pilot)
    for _ in range(4):
        _, err = _mc(values)
        if not (np.isfinite(err) and err > se) or len(values) >= MAX_DRAWS:
            break
        want = min(MAX_DRAWS, int(np.ceil(1.1 * len(values) * (err / se) ** 2)))
        values = np.concatenate([values, draw(want - len(values))])
    return _mc(values)


def path_of(sampler) -> list:
    """The sampler's path steps (``PathStep``s up to its first read-out step), [] if it has none.
    Only ``AffineStep`` samplers with ``capabilities.affine`` have them: the kernels must be
    Gaussian, N(deterministic(x), noise_cov)."""
    from difflab.contracts import AffineStep

    if not (isinstance(sampler, AffineStep) and sampler.capabilities.affine) or not sampler.n_steps:
        return []
    steps = []
    for k in range(sampler.n_steps):
        step = sampler.path_step(k)
        if step is None:
            break
        steps.append(step)
    return steps


def _noise(sampler, k: int, d: int):
    """The step's noise covariance as a (d, d) matrix, or None where it depends on the state."""
    q = sampler.noise_cov(k)
    if q is None:
        return None
    return float(q) * np.eye(d) if np.ndim(q) == 0 else np.asarray(q, dtype=np.float64)


def _positive_definite(q) -> bool:
    if q is None:
        return False
    if not np.any(q - np.diag(np.diagonal(q))):  # diagonal (q I for most samplers)
        return bool(np.all(np.diagonal(q) > 0.0))
    return bool(np.all(np.linalg.eigvalsh(0.5 * (q + q.T)) > 0.0))


def _level(mean, lam, level):
    """Mean and covariance eigenvalues (X's eigenbasis) of alpha X + sigma Z, X ~ N(mean, U diag(lam) U^T)."""
    a, s = level
    return a * mean, a * a * lam + s * s


def _reference_kernel(lam, step):
    """(diag of P, diag of R) of the reference kernel in the target's eigenbasis (see the module doc)."""
    (a_t, s_t), (a_s, s_s) = step.frm, step.to
    lam_s = a_s * a_s * lam + s_s * s_s
    if step.langevin > 0:
        return np.exp(-step.langevin / lam_s), -lam_s * np.expm1(-2.0 * step.langevin / lam_s)
    if a_t == 0.0 and s_t == 0.0:  # y_0 = 0 observes nothing: the conditional is p_to itself
        return np.zeros_like(lam), lam_s
    r = a_t / a_s
    v = s_t * s_t - r * r * s_s * s_s
    lam_t = r * r * lam_s + v
    return r * lam_s / lam_t, v * lam_s / lam_t


def _kl_gauss_terms(q_chol, r_cov, gap_mean, gap_matrix) -> float:
    """1/2 [sum (rho - 1 - log rho) + |L^-1 gap_mean|^2 + |L^-1 gap_matrix|_F^2], Q = L L^T,
    rho the eigenvalues of L^-1 R L^-T (written to keep its precision when R is close to Q)."""
    from scipy.linalg import solve_triangular

    w = solve_triangular(q_chol, r_cov, lower=True)
    rho = np.linalg.eigvalsh(solve_triangular(q_chol, w.T, lower=True))
    cov_part = float(np.sum((rho - 1.0) - np.log1p(rho - 1.0)))
    z = solve_triangular(q_chol, np.column_stack([gap_mean, gap_matrix]), lower=True)
    return 0.5 * (cov_part + float(np.sum(z * z)))


def exact_kl_steps(sampler, target) -> np.ndarray:
    """E_{p_frm} KL(reference kernel || sampler kernel) of each path step, exactly (Gaussian target,
    affine score, Gaussian steps with positive definite noise)."""
    m = target.mean
    lam, u = np.linalg.eigh(target.cov)
    out = []
    for k, step in enumerate(path_of(sampler)):
        raw = sampler.noise_cov(k)
        q = _noise(sampler, k, len(m))
        if not _positive_definite(q):
            out.append(np.inf)
            continue
        mu_t, lam_t = _level(m, lam, step.frm)
        mu_s = step.to[0] * m
        p_diag, r_diag = _reference_kernel(lam, step)
        f = u * np.sqrt(lam_t)  # C_t^1/2
        pts = sampler.deterministic(np.ascontiguousarray(np.column_stack([mu_t, mu_t[:, None] + f])), k)
        a_mean, a_f = pts[:, 0], pts[:, 1:] - pts[:, :1]
        p_f = u * (p_diag * np.sqrt(lam_t))  # P C_t^1/2
        if np.ndim(raw) == 0:  # Q = q I: rho = r / q in the target's eigenbasis, no solves
            rho = r_diag / raw
            gap = np.sum((mu_s - a_mean) ** 2) + np.sum((p_f - a_f) ** 2)
            out.append(0.5 * (float(np.sum((rho - 1.0) - np.log1p(rho - 1.0))) + gap / raw))
            continue
        r_cov = (u * r_diag) @ u.T
        out.append(_kl_gauss_terms(np.linalg.cholesky(q), r_cov, mu_s - a_mean, p_f - a_f))
    return np.array(out)


def mc_kl_step(sampler, target, k: int, step, n: int, rng: np.random.Generator) -> np.ndarray:
    """The per-draw values (n,) whose mean is step k's E KL on a mixture target (module doc)."""
    from scipy.linalg import solve_triangular

    (a_t, s_t), (a_s, s_s) = step.frm, step.to
    d = target.dim
    x0 = target.sample(rng, n)
    xs = a_s * x0 + s_s * rng.standard_normal(x0.shape)
    mix = target.components
    lam, u, means = mix.eigvals, mix.eigvecs, mix.means  # (K, d), (K, d, d), (K, d)
    lam_s = a_s * a_s * lam + s_s * s_s
    if a_t == 0.0 and s_t == 0.0:
        xt = np.zeros_like(xs)
        gain, r_var = np.zeros_like(lam), lam_s
        w_t = np.broadcast_to(mix.weights, (n, len(lam)))
    else:
        r = a_t / a_s
        v = s_t * s_t - r * r * s_s * s_s
        xt = r * xs + np.sqrt(v) * rng.standard_normal(xs.shape)
        lam_t = r * r * lam_s + v
        gain, r_var = r * lam_s / lam_t, v * lam_s / lam_t
        w_t = mix.posterior_weights(xt, a_t, s_t)
    # component j's reverse conditional mean a_s m_j + U_j diag(gain_j) U_j^T (x_t - a_t m_j), (K, n, d)
    # (batched GEMMs: rows x^T U_j are (U_j^T x)^T)
    rot = np.matmul(xt[None, :, :] - a_t * means[:, None, :], u) * gain[:, None, :]
    mu = a_s * means[:, None, :] + np.matmul(rot, u.transpose(0, 2, 1))
    a_mean = sampler.deterministic(np.ascontiguousarray(xt.T), k).T  # the sampler's kernel mean, (n, d)
    gap = mu - a_mean[None, :, :]
    q = sampler.noise_cov(k)
    if np.ndim(q) == 0:  # Q = q I (ddpm, sde, localization's em)
        trace, logdet_q = r_var.sum(axis=1) / q, d * np.log(q)
        maha = np.einsum("knd,knd->kn", gap, gap) / q
    else:
        chol = np.linalg.cholesky(q)
        q_inv = np.linalg.inv(q)  # (d, d): tr(Q^-1 R_j) in each eigenbasis
        trace = (np.matmul(u.transpose(0, 2, 1), q_inv @ u).diagonal(axis1=1, axis2=2) * r_var).sum(axis=1)
        logdet_q = 2.0 * np.log(np.diag(chol)).sum()
        maha = (solve_triangular(chol, gap.reshape(-1, d).T, lower=True) ** 2).sum(axis=0).reshape(len(lam), n)
    kl_j = 0.5 * ((trace - d + logdet_q - np.log(r_var).sum(axis=1))[:, None] + maha)  # (K, n)
    w_s = mix.posterior_weights(xs, a_s, s_s)
    tiny = np.finfo(np.float64).tiny
    info = np.where(w_s > 0, w_s * (np.log(np.maximum(w_s, tiny)) - np.log(np.maximum(w_t, tiny))), 0.0)
    return np.einsum("nk,kn->n", w_t, kl_j) - info.sum(axis=1)


def _prior_kl(law0, level, target, rng, gaussian: bool, se: float | None = None):
    """KL(p_level || prior) and its standard error (0 when exact)."""
    a1, s1 = level
    m0, c0 = (np.asarray(v, dtype=np.float64) for v in law0)
    if a1 == 0.0 and s1 == 0.0:  # the process starts at the point 0
        return (0.0 if not np.any(c0) and not np.any(m0) else float("inf")), 0.0
    if gaussian:
        d = target.dim
        return exact.gaussian_kl(a1 * target.mean, a1 * a1 * target.cov + s1 * s1 * np.eye(d), m0, c0), 0.0

    def draw(n):
        x = target.sample(rng, n)
        y = a1 * x + s1 * rng.standard_normal(x.shape)
        return target.noised_log_prob(y, a1, s1) - exact.gaussian_log_pdf(y, m0, c0)

    return _sized_mc(draw, N_PRIOR, se)


def _ideal_output(sampler, target, n_path: int, level):
    """(mean, cov) of p_delta pushed through the read-out steps of the exact-score sampler."""
    a, s = level
    d = target.dim
    mean, cov = a * target.mean, a * a * target.cov + s * s * np.eye(d)
    if sampler.n_steps == n_path:
        return mean, cov
    ideal = _exact_copy(sampler, target)
    return exact.propagate(ideal, mean, cov, sampler.n_steps, first=n_path)[:2]


def _denoised_law(target, level):
    """The law of E[X | x] for x ~ p at level (a, s) of a Gaussian N(m, S): N(m, a^2 S C^-1 S), C = a^2 S + s^2 I."""
    a, s = level
    c = a * a * target.cov + s * s * np.eye(target.dim)
    return target.mean, a * a * target.cov @ np.linalg.solve(c, target.cov)


def _exact_copy(sampler, target):
    """The same sampler on the exact score of ``target``."""
    return sampler if sampler.target is target else dataclasses.replace(sampler, target=target)


def flow_map(target, frm, to):
    """(M, mean shift) of the exact probability-flow map from level ``frm`` to ``to`` on a Gaussian
    target: x -> to_mean + M (x - frm_mean), M = C_to^1/2 C_frm^-1/2 (the covariances commute)."""
    lam, u = np.linalg.eigh(target.cov)
    _, lam_f = _level(target.mean, lam, frm)
    _, lam_t = _level(target.mean, lam, to)
    return (u * np.sqrt(lam_t / lam_f)) @ u.T, frm[0] * target.mean, to[0] * target.mean


def _w2_split(sampler, target, law0, steps, target_law) -> dict:
    """The flows' W2 terms; ``target_law`` the ideal output (``_ideal_output``)."""
    n_path = len(steps)
    m0, c0 = law0
    mat, mu_1, mu_d = flow_map(target, steps[0].frm, steps[-1].to)
    exact_score = _exact_copy(sampler, target)
    flow = (mu_d + mat @ (m0 - mu_1), mat @ c0 @ mat.T)
    if sampler.n_steps > n_path:
        flow = exact.propagate(exact_score, *flow, sampler.n_steps, first=n_path)[:2]
    solver = exact.propagate(exact_score, m0, c0, sampler.n_steps)[:2]
    out = exact.propagate(sampler, m0, c0, sampler.n_steps)[:2]
    terms = {
        "w2_prior": gaussian_w2(*flow, *target_law),
        "w2_discretisation": gaussian_w2(*solver, *flow),
        "w2_early_stop": gaussian_w2(*target_law, target.mean, target.cov),
    }
    if sampler.target is not target:
        terms["w2_score_error"] = gaussian_w2(*out, *solver)
    return terms


def error_terms(sampler, target, law0, rng: np.random.Generator, se: float | None = None) -> tuple[dict, dict]:
    """(summary terms, per-step series {"kl_step": (n_steps,), ...}) for a sampler with path steps
    judged against ``target`` (a Gaussian mixture) from the initial law ``law0``; ({}, {}) without.
    ``se``: the standard error asked of each Monte Carlo term (``kl_prior``, ``kl_early_stop`` and
    the path's sum of ``kl_step``, each step asked se / sqrt(steps)); None: fixed budgets."""
    steps = path_of(sampler)
    if steps:
        first, level = steps[0].frm, steps[-1].to
    elif sampler.capabilities.diffusion:  # no fixed steps (rk45): the prior and early-stop terms only
        first, level = sampler.start, sampler.end
    else:
        return {}, {}
    d, n_path = target.dim, len(steps) or sampler.n_steps
    exact_law = exact.has_exact_law(sampler, target)
    out = {}
    out["kl_prior"], prior_se = _prior_kl(law0, first, target, rng, target.is_gaussian, se)
    if not target.is_gaussian:
        out["kl_prior_se"] = prior_se
    # early stopping: the ideal output against the target
    read_out = not steps and sampler.capabilities.diffusion and sampler.output == "denoised"
    if target.is_gaussian:
        # no path steps but a read-out (ksampler's multistep solvers): E[X | x_delta] of p_delta
        ideal = _denoised_law(target, level) if read_out else _ideal_output(sampler, target, n_path, level)
        out["kl_early_stop"] = exact.gaussian_kl(target.mean, target.cov, *ideal)
    elif sampler.n_steps == n_path and not read_out:
        a, s = level
        if s == 0.0 and a == 1.0:
            out["kl_early_stop"], out["kl_early_stop_se"] = 0.0, 0.0
        else:

            def draw(n):
                x = target.sample(rng, n)
                return target.log_prob(x) - target.noised_log_prob(x, a, s)

            out["kl_early_stop"], out["kl_early_stop_se"] = _sized_mc(draw, N_PRIOR, se)
    if not steps:
        return out, {}
    noises = [_noise(sampler, k, d) for k in range(n_path)]
    if all(q is not None and not np.any(q) for q in noises):  # a deterministic flow
        if exact_law:
            out.update(_w2_split(sampler, target, law0, steps, ideal))
        return out, {}
    per_step = {}
    if exact_law:
        kl_step = exact_kl_steps(sampler, target)
        if sampler.target is not target:
            out["kl_discretisation"] = float(exact_kl_steps(_exact_copy(sampler, target), target).sum())
        else:
            out["kl_discretisation"] = float(kl_step.sum())
        mean, cov, _ = exact.propagate(sampler, *law0, n_path)
        a, s = level
        out["kl_delta"] = exact.gaussian_kl(a * target.mean, a * a * target.cov + s * s * np.eye(d), mean, cov)
    elif any(step.langevin > 0 for step in steps) or any(q is None for q in noises) or target.components is None:
        return out, {}
    else:
        n = int(np.clip(PATH_BUDGET // n_path, *PER_STEP))
        step_se = None if se is None else se / np.sqrt(n_path)
        stats = np.array([_sized_mc(lambda m, k=k, step=step: mc_kl_step(sampler, target, k, step, m, rng), n, step_se,
                                    pilot=PER_STEP[0]) if _positive_definite(q)
                          else (np.inf, 0.0) for k, (step, q) in enumerate(zip(steps, noises))])
        kl_step, kl_se = stats[:, 0], stats[:, 1]
        per_step["kl_step_se"] = _pad(kl_se, sampler.n_steps)
        out["kl_path_se"] = float(np.sqrt(out.get("kl_prior_se", 0.0) ** 2 + np.sum(kl_se**2)))
    per_step["kl_step"] = _pad(kl_step, sampler.n_steps)
    out["kl_path"] = out["kl_prior"] + float(kl_step.sum())
    if "kl_delta" in out and np.isfinite(out["kl_path"]):
        out["kl_path_gap"] = out["kl_path"] - out["kl_delta"]
    return out, per_step


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """A path series as a per-step series: NaN for the read-out steps, which are not path steps."""
    return np.concatenate([values, np.full(n - len(values), np.nan)])


def score_error_term(sampler, rng: np.random.Generator, n_mc: int = 1_000, se: float | None = None) -> dict:
    """int g^2 / 2 E_{p_t}|s~ - s|^2 dt on the sampler's grid, for a perturbed score (else {}).

    The same n_mc clean draws x_i serve every grid time (fresh noise per time), so the per-time
    averages are correlated; the standard error is that of the mean of the per-draw totals
    Z_i = sum_t w_t |s~ - s|^2(a_t x_i + s_t z_it), which are independent over i.
    """
    pert = sampler.target
    if pert.exact_score:
        return {}
    times, schedule = np.asarray(sampler.times, dtype=np.float64), sampler.schedule

    def draw(n):
        x = pert.base.sample(rng, n)
        per_draw = np.zeros(n)
        for t, s in itertools.pairwise(times):
            a, sig = (float(v) for v in alpha_sigma(schedule, t))
            y = a * x + sig * rng.standard_normal(x.shape)
            per_draw += 0.5 * float(schedule.g2(t)) * (t - s) * pert.score_error_sq(np.ascontiguousarray(y.T), a, sig)
        return per_draw

    total, total_se = _sized_mc(draw, n_mc, se, pilot=min(n_mc, 200))
    return {"score_error_term": total, "score_error_term_se": total_se}
