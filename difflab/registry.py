"""A registry of named plug-in records (ground floor): the sampler registry (``difflab.samplers``)
and the target-kind registry (``difflab.targets``) are both one of these.

Three sources, in this order: the built-ins, one line each (name: (module, attribute), the module
imported when the entry is first asked for, so reading one entry imports one module); installed
plug-ins (entry points of ``group``, loaded when asked for); and entries registered in this process
(``--plugin`` files and modules, the Python API). A built-in's name cannot be taken.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from difflab.errors import ConfigError


class Registry(Mapping):
    """name -> record. ``what`` names the records in messages ('sampler', 'target kind');
    ``record_type`` is the class every record must be (checked for plug-ins)."""

    def __init__(self, what: str, package: str, table: dict, group: str, record_type: type):
        self.what, self.package, self.table, self.group = what, package, table, group
        self.record_type = record_type
        self._registered: dict = {}

    def _installed(self) -> dict:
        """Entry points of installed plug-ins, name: entry point (loaded only when asked for)."""
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group=self.group) if ep.name not in self.table}

    def __getitem__(self, name: str):
        if name in self._registered:
            return self._registered[name]
        if name in self.table:
            module, attr = self.table[name]
            return vars(importlib.import_module(f"{self.package}.{module}"))[attr]
        installed = self._installed()
        if name not in installed:
            raise KeyError(name)  # the Mapping protocol (`in` relies on it)
        record = self._checked(lambda: installed[name].load(), f"plug-in {installed[name].value}", name)
        self._registered[name] = record
        return record

    def offers(self, name: str) -> bool:
        """Whether ``name`` is a built-in, installed or registered record, without loading it."""
        return name in self._registered or name in self.table or name in self._installed()

    def __iter__(self):
        return iter(dict.fromkeys([*self.table, *self._installed(), *self._registered]))

    def __len__(self) -> int:
        return len(list(iter(self)))

    def _checked(self, load, source: str, name: str):
        """An installed plug-in's record, loaded: of the record type and named as its entry point, or one line."""
        kind = self.record_type
        try:
            record = load()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 -- the user's code: any failure (sys.exit too) is one line
            raise ConfigError(f"{self.what} {name}: {source} could not be loaded: {type(exc).__name__}: {exc}") from None
        if not isinstance(record, kind) or record.name != name:
            raise ConfigError(f"{self.what} {name}: {source} is not a difflab.contracts.{kind.__name__} named '{name}'")
        return record

    def register(self, record, source: str = "the Python API") -> str:
        """Make a record available by its name in this process; returns the name."""
        kind = self.record_type
        if not isinstance(record, kind):
            raise ConfigError(f"{self.what}: {source}: expected a difflab.contracts.{kind.__name__}, got "
                              f"{type(record).__name__}")
        if record.name in self.table:
            raise ConfigError(f"{self.what}: {source}: '{record.name}' is a built-in {self.what}'s name; choose another")
        known = self._registered.get(record.name)
        if known is not None and known is not record:
            raise ConfigError(f"{self.what}: {source}: another {self.what} named '{record.name}' is already registered")
        self._registered[record.name] = record
        return record.name

    def is_builtin(self, name: str) -> bool:
        return name in self.table
