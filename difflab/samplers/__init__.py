"""The sampler registry: one line per built-in sampler, naming the module that declares its entry
(its options, how it is built, what it runs on; see ``difflab.contracts.SamplerEntry``), then the
samplers of installed plug-ins (entry-point group ``difflab.samplers``) and those registered in
this process (``--plugin`` files, entries handed to the Python API).

The ``difflab sample NAME`` commands, ``--set``, run specs, sweeps and the Python API are all
derived from these entries. A module is imported when its entry is first asked for, so
``difflab sample mala --help`` reads only the Langevin module (and no numpy: ``difflab.lazy``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from difflab.errors import ConfigError

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
GROUP = "difflab.samplers"  # the entry-point group of installed plug-ins
_REGISTERED: dict = {}  # name: entry, registered in this process


def _installed() -> dict:
    """Entry points of installed plug-ins, name: entry point (loaded only when asked for)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP) if ep.name not in _TABLE}


class _Registry(Mapping):
    """name -> SamplerEntry, importing the entry's module on first access."""

    def __getitem__(self, name: str):
        if name in _REGISTERED:
            return _REGISTERED[name]
        if name in _TABLE:
            module, entry = _TABLE[name]
            return vars(importlib.import_module(f"difflab.samplers.{module}"))[entry]
        installed = _installed()
        if name not in installed:
            raise KeyError(name)  # the Mapping protocol (`in` relies on it); entry_of names unknown samplers
        from difflab.plugins import checked_entry

        entry = checked_entry(lambda: installed[name].load(), f"plug-in {installed[name].value}", name)
        _REGISTERED[name] = entry
        return entry

    def __iter__(self):
        return iter(dict.fromkeys([*_TABLE, *_installed(), *_REGISTERED]))

    def __len__(self) -> int:
        return len(list(iter(self)))


SAMPLERS = _Registry()


def register(entry, source: str = "the Python API") -> str:
    """Make a sampler entry available by its name in this process; returns the name."""
    from difflab.contracts import SamplerEntry

    if not isinstance(entry, SamplerEntry):
        raise ConfigError(f"sampler: {source}: expected a difflab.contracts.SamplerEntry, got "
                          f"{type(entry).__name__}")
    if entry.name in _TABLE:
        raise ConfigError(f"sampler: {source}: '{entry.name}' is a built-in sampler's name; choose another")
    known = _REGISTERED.get(entry.name)
    if known is not None and known is not entry:
        raise ConfigError(f"sampler: {source}: another sampler named '{entry.name}' is already registered")
    _REGISTERED[entry.name] = entry
    return entry.name


def is_builtin(name: str) -> bool:
    return name in _TABLE
