"""One run: options and settings (``settings``), the driver loop (``driver``), one ``sample`` run
from options to run file (``sampling``), the run-file schema (``io``), the warnings a run stores
(``warnings``) and sweeps (``sweep``). Imports the layers below it: contracts, maths, targets,
samplers, plugins."""
