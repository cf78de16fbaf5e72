"""difflab: a command-line sampling lab on targets whose scores are known in closed form.

Importing the package is cheap on purpose (no numpy, scipy or h5py): ``difflab --help`` stays quick.
"""

__version__ = "0.1.0"
