"""The sampler registry: one line per sampler, naming the module that declares its entry (its
options, how it is built, what it runs on; see ``difflab.contracts.SamplerEntry``).

The ``difflab sample NAME`` commands, ``--set``, run specs, sweeps and the Python API are all
derived from these entries. A module is imported when its entry is first asked for, so
``difflab sample mala --help`` reads only the Langevin module (and no numpy: ``difflab.lazy``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

_TABLE = {  # name: (module in difflab.samplers, its entry)
    "ula": ("langevin", "ULA_ENTRY"),
    "mala": ("langevin", "MALA_ENTRY"),
    "uld": ("kinetic", "ULD_ENTRY"),
    "ddpm": ("diffusion", "DDPM_ENTRY"),
    "pflow": ("diffusion", "PFLOW_ENTRY"),
    "sde": ("diffusion", "SDE_ENTRY"),
    "localization": ("localization", "LOCALIZATION_ENTRY"),
    "smc": ("smc", "SMC_ENTRY"),
    "discrete": ("discrete", "DISCRETE_ENTRY"),
    "gibbs": ("discrete", "GIBBS_ENTRY"),
}


class _Registry(Mapping):
    """name -> SamplerEntry, importing the entry's module on first access."""

    def __getitem__(self, name: str):
        module, entry = _TABLE[name]
        return vars(importlib.import_module(f"difflab.samplers.{module}"))[entry]

    def __iter__(self):
        return iter(_TABLE)

    def __len__(self) -> int:
        return len(_TABLE)


SAMPLERS = _Registry()
