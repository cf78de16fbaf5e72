"""What the diffusion samplers' score options do to a run: the score the sampler sees and the law
the run is judged against (``steer``), and what those options need of the target (``needs``).

Declared by the entries that own the options (``SamplerEntry.steer`` and ``option_needs``: ddpm,
pflow, sde, ksampler), so the run code reads no option by name:

* ``--guidance classifier|cfg --class c --scale W``: the guided score, judged against p(x | c) (the
  guided score is its score error) and against the tilted law q ∝ p(x | c)^gamma p(x)^(1 - gamma)
  (``tilted_*`` summary keys, against exact rejection draws of q, with their floors);
* ``--score-error eps``: a deliberately wrong score (``difflab.targets.perturbed``);
* ``--reward-guidance naive``: the untilted score plus lambda grad r, judged against the tilted target.
"""

from __future__ import annotations

from difflab.contracts.sampler import OptionNeed, Steered


def needs(p: dict) -> tuple[OptionNeed, ...]:
    """The target declarations the score options rely on, in the order they are checked."""
    out = []
    on = {"--score-error": p.get("score_error", 0) > 0, "--reward-guidance naive": p.get("reward_guidance") == "naive",
          "--guidance": p.get("guidance", "none") != "none"}
    out += [OptionNeed("exact", f"{flag}: not with {{source}}, a score of your own (it is the score error measured)")
            for flag, set_ in on.items() if set_]
    if on["--reward-guidance naive"]:
        out.append(OptionNeed("reward", "--reward-guidance: naive needs a target with a tilt: block (the reward); "
                                        "{source} has none"))
    if on["--guidance"]:
        out.append(OptionNeed("classes", "--guidance: needs a target with a classes: block (groups of components); "
                                         "{source} has none (the shipped gmm-classes has one)", p["class"]))
    return tuple(out)


def steer(target, p: dict, rng_metric, rng_score) -> Steered:
    """The score the sampler sees and the target it is judged against, for an exact target."""
    if p.get("guidance", "none") != "none":
        from difflab.maths import metrics
        from difflab.targets.guidance import TiltedByClass, guided_model

        model, conditional, members, gamma = guided_model(target, p)
        tilted = TiltedByClass(target, members, gamma, rng_metric)
        suite = metrics.MetricSuite(tilted, rng_metric, stein=False)

        def summary(samples, rng, rng_floor, n) -> dict:
            return _guidance_summary(samples, tilted, suite, target, members, gamma, rng, rng_floor, n)

        return Steered(model, conditional, summary)
    if p.get("score_error", 0.0) > 0.0:
        from difflab.targets.perturbed import PerturbedScore

        return Steered(PerturbedScore(target, p["score_error_kind"], p["score_error"], rng_score), target)
    if p.get("reward_guidance") == "naive":
        from difflab.targets.perturbed import RewardGuided

        return Steered(RewardGuided(target, target.untilted, *target.reward), target)
    return Steered(target, target)


def _guidance_summary(samples, tilted, suite, unconditional, members, gamma, rng, rng_floor, n) -> dict:
    """Guided runs: the distance to the tilted law q (tilted_*, against exact rejection draws, with
    their floor and its standard error), and the exact classifier's mean confidence p(c | x) on the
    samples next to its value on exact draws of p(x | c)."""
    from difflab.maths.metrics import FLOOR_DRAWS, floor_stats

    summary = {"guidance_gamma": gamma, "class_weight": float(unconditional.components.weights[members].sum())}
    summary.update({f"tilted_{k}": v for k, v in suite.final(samples).items()})
    summary.update({f"tilted_{k}": v for k, v in floor_stats(suite.final, tilted.sample, rng_floor, n).items()})
    summary["tilted_floor_draws"] = FLOOR_DRAWS
    summary["tilted_acceptance"] = tilted.acceptance
    summary["class_confidence"] = float(unconditional.class_probability(samples, members).mean())
    exact = tilted.conditional.sample(rng, n)
    summary["floor_class_confidence"] = float(unconditional.class_probability(exact, members).mean())
    return summary
