"""Sampler registry: name -> class with ``init(x0)`` and ``step(rng, state) -> (state, info)``."""

from difflab.samplers.langevin import MALA, ULA

SAMPLERS = {"ula": ULA, "mala": MALA}

__all__ = ["SAMPLERS", "ULA", "MALA"]
