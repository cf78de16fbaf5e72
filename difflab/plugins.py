"""Plug-ins: samplers, target kinds and scores that come from the user's own code.

Nothing here runs code the user did not name: a plug-in is an installed package's entry point
(groups ``difflab.samplers`` and ``difflab.targets``: the user installed it), a ``--plugin FILE.py`` or ``--plugin
MODULE`` they typed, or ``difflab.load_plugin(...)`` / a ``SamplerEntry`` they passed in Python.
A target file or a run file never imports anything: a ``kind: score`` target names a function
(``score: my_scores.py:ring_score``) that must belong to a plug-in already loaded, and is refused
with one line saying so otherwise.

Loading a plug-in module registers every ``SamplerEntry`` at its top level (``difflab sample
NAME`` then exists, with its declared options) and every ``TargetKind`` (``kind: NAME`` target
files then validate and build), and makes its functions available to ``kind: score`` targets.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from difflab.errors import ConfigError, DifflabError

_LOADED: dict = {}  # what the user named ("my_scores.py", "pkg.scores"), and its module name: module
_TYPED: list = []  # the references as the user gave them, in order


def load_plugin(ref: str):
    """Import the plug-in ``ref`` (a ``.py`` path or an importable module) and register its sampler
    entries and target kinds; returns the module. Loading the same reference twice is a no-op."""
    from difflab import samplers, targets
    from difflab.contracts import SamplerEntry, TargetKind
    from difflab.targets.score import remember

    ref = str(ref)
    if ref in _LOADED:
        return _LOADED[ref]
    try:
        if ref.endswith(".py"):
            path = Path(ref)
            if not path.is_file():
                raise ConfigError(f"--plugin: no file '{ref}'")
            name = f"difflab_plugin_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(ref)
    except DifflabError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 -- the user's code: any failure (sys.exit too) is one line
        raise ConfigError(f"--plugin {ref}: importing it raised {type(exc).__name__}: {exc}") from None
    for record in vars(module).values():
        if isinstance(record, SamplerEntry):
            samplers.register(record, f"--plugin {ref}")
        elif isinstance(record, TargetKind):
            targets.register(record, f"--plugin {ref}")
    # Known by what the user typed and by its module name (a file's stem): a target's score: names it either way.
    names = (ref, Path(ref).stem if ref.endswith(".py") else ref)
    _LOADED.update(dict.fromkeys(names, module))
    remember(names, module)
    _TYPED.append(ref)
    return module


def loaded() -> list[str]:
    """The plug-ins loaded in this process, as the user named them (for sweep workers)."""
    return list(_TYPED)


def load_all(refs) -> None:
    """Load each plug-in of ``refs`` (a sweep worker's initializer)."""
    for ref in refs:
        load_plugin(ref)


def check_sampler(sampler, name: str) -> None:
    """A plug-in's sampler object against the contract, before it runs (one line if it falls short).
    This is the one place where difflab looks at what an object has: it is the user's code."""
    from difflab.contracts import Capabilities

    missing = [m for m in ("init", "step") if not callable(getattr(sampler, m, None))]
    if not isinstance(getattr(sampler, "capabilities", None), Capabilities):
        missing.append("capabilities (a difflab.contracts.Capabilities)")
    if not hasattr(sampler, "n_steps"):
        missing.append("n_steps (an int, or None for a Markov kernel)")
    else:
        steps = sampler.n_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"sampler {name}: the plug-in's sampler ({type(sampler).__name__}) has n_steps "
                              f"{steps!r}; expected an integer >= 1, or None for a Markov kernel")
    caps = getattr(sampler, "capabilities", None)
    if isinstance(caps, Capabilities):
        needs = {"affine": ("deterministic", "noise_cov", "exact_law_start", "exact_law_output"),
                 "estimate": ("estimate",), "adapts_step_size": ("with_step_size",),
                 "diffusion": ("start_law",)}
        for cap, methods in needs.items():
            if vars(caps)[cap]:
                missing += [f"{m} (it declares {cap})" for m in methods if not callable(getattr(sampler, m, None))]
    if missing:
        raise ConfigError(f"sampler {name}: the plug-in's sampler ({type(sampler).__name__}) lacks "
                          f"{', '.join(missing)}; see the sampler contract in difflab.contracts")
