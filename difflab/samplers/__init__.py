"""The sampler registry: one line per sampler, each entry declared in the sampler's own module
(its options, how it is built, what it runs on; see ``difflab.contracts.SamplerEntry``).

The ``difflab sample NAME`` commands, ``--set``, run specs, sweeps and the Python API are all
derived from these entries. Importing this module imports no numpy (``difflab.lazy``).
"""

from __future__ import annotations

from difflab.samplers import diffusion, discrete, kinetic, langevin, localization, smc

SAMPLERS = {
    "ula": langevin.ULA_ENTRY,
    "mala": langevin.MALA_ENTRY,
    "uld": kinetic.ULD_ENTRY,
    "ddpm": diffusion.DDPM_ENTRY,
    "pflow": diffusion.PFLOW_ENTRY,
    "sde": diffusion.SDE_ENTRY,
    "localization": localization.LOCALIZATION_ENTRY,
    "smc": smc.SMC_ENTRY,
    "discrete": discrete.DISCRETE_ENTRY,
    "gibbs": discrete.GIBBS_ENTRY,
}
