"""Reading runs back: result tables, fits and cost rankings (``analysis``), figures (``plot``,
extra [plot]) and ArviZ/netCDF export (``export``)."""
