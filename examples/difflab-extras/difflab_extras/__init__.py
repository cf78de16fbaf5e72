"""An example difflab plug-in package: two overdamped Langevin discretisations difflab does not
ship, each declared with difflab's contracts (``difflab.contracts``) and registered through the
entry-point group ``difflab.samplers`` (see pyproject.toml)."""
