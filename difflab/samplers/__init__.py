"""The sampler registry: one line per built-in sampler, naming the module that declares its entry
(its options, how it is built, what it runs on; see ``difflab.contracts.SamplerEntry``), then the
samplers of installed plug-ins (entry-point group ``difflab.samplers``) and those registered in
this process (``--plugin`` files, entries handed to the Python API).

The ``difflab sample NAME`` commands, ``--set``, run specs, sweeps and the Python API are all
derived from these entries. A module is imported when its entry is first asked for, so
``difflab sample mala --help`` reads only the Langevin module (and no numpy: ``difflab.lazy``).
"""

from __future__ import annotations

from difflab.contracts.sampler import SamplerEntry
from difflab.errors import ConfigError, suggest
from difflab.registry import Registry

_TABLE = {  # name: (module in difflab.samplers, its entry)
    "ula": ("langevin", "ULA_ENTRY"),
    "mala": ("langevin", "MALA_ENTRY"),
    "uld": ("kinetic", "ULD_ENTRY"),
    "ddpm": ("diffusion", "DDPM_ENTRY"),
    "pflow": ("diffusion", "PFLOW_ENTRY"),
    "sde": ("diffusion", "SDE_ENTRY"),
    "ksampler": ("ksampler", "KSAMPLER_ENTRY"),
    "localization": ("localization", "LOCALIZATION_ENTRY"),
    "smc": ("smc", "SMC_ENTRY"),
    "discrete": ("discrete", "DISCRETE_ENTRY"),
    "gibbs": ("discrete", "GIBBS_ENTRY"),
}
SAMPLERS = Registry("sampler", "difflab.samplers", _TABLE, "difflab.samplers", SamplerEntry)
register = SAMPLERS.register
is_builtin = SAMPLERS.is_builtin


def entry_of(name):
    """The registry entry of a sampler name (a ``SamplerEntry`` given by the Python API is its own)."""
    if isinstance(name, SamplerEntry):
        return name
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: unknown sampler '{name}'{suggest(name, SAMPLERS)}; expected one of "
                          f"{', '.join(SAMPLERS)}")
    return SAMPLERS[name]
