"""Modules bound on first use, so that declarations can be read without importing them.

The sampler modules state their options next to their kernels, and ``difflab sample NAME --help``
reads those options: importing numpy there would cost more than the rest of the help (about
0.1 s). ``np = lazy("numpy", globals(), "np")`` binds a stand-in that imports numpy at its first
attribute access and then puts numpy itself in the module's namespace, so every later look-up is
an ordinary global (no indirection in the hot paths). The same idea as scientific Python's SPEC 1
(lazy loading), kept local to the modules that ask for it.
"""

from __future__ import annotations

import importlib


class _Lazy:
    __slots__ = ("_alias", "_name", "_namespace")

    def __init__(self, name: str, namespace: dict, alias: str):
        self._name, self._namespace, self._alias = name, namespace, alias

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._name)
        self._namespace[self._alias] = module
        return getattr(module, attr)


def lazy(name: str, namespace: dict, alias: str):
    """A stand-in for module ``name`` bound as ``alias`` in ``namespace`` (a module's globals())."""
    return _Lazy(name, namespace, alias)
