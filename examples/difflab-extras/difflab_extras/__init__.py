"""An example difflab plug-in package: two overdamped Langevin discretisations difflab does not
ship, each declared with difflab's contracts (``difflab.contracts``) and registered through the
entry-point group ``difflab.samplers``, and a target family (``kind: banana``) registered through
``difflab.targets`` (see pyproject.toml)."""
