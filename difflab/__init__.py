"""difflab: a sampling lab on targets whose scores are known in closed form.

The Python API (``difflab.api``): ``sample``, ``load``, ``load_target``, ``compare``, ``Run``,
``load_plugin``; the contracts a sampler of your own follows: ``difflab.contracts``. Importing the
package is cheap on purpose (no numpy, scipy or h5py until a name below is used): ``difflab
--help`` stays quick.
"""

from difflab._version import __version__

_API = {"sample": "difflab.api", "load": "difflab.api", "load_target": "difflab.api", "compare": "difflab.api",
        "Run": "difflab.run.io", "load_plugin": "difflab.plugins", "DifflabError": "difflab.errors"}
__all__ = ["DifflabError", "Run", "__version__", "compare", "load", "load_plugin", "load_target", "sample"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'difflab' has no attribute {name!r}")
    import importlib

    return vars(importlib.import_module(_API[name]))[name]
