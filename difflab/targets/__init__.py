"""Targets with closed-form scores. Continuous targets are Gaussian mixtures (a Gaussian is K = 1)."""

from difflab.targets.mixture import GaussianMixture

__all__ = ["GaussianMixture"]
