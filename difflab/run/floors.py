"""Exact-draw floors, computed once per (target, particle count, metric settings) and cached.

A run's floors (``floor_<m>`` and ``floor_se_<m>``: each final metric on ``FLOOR_DRAWS`` sets of n
exact target draws) depend on the target, n and the metric settings, never on the sampler, its
options or the run's seed. So they are computed once, from a seed of their own derived from that
key, against a reference set that is likewise fixed by the target and the metric settings (every
run on the target reads the same reference: its metrics and its floors share it), and kept in an
on-disk cache that every run of a sweep reads.

The cache folder: ``cache_dir`` given (``--cache-dir``, ``difflab.sample(cache=...)``), else
``$DIFFLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/difflab``, else ``~/.cache/difflab``. One JSON file
an entry, ``floors-<sha256 of the key>.json``, holding the key, the floors, the reference's
bandwidth and self-terms, and a checksum. An entry is written to a temporary file in the folder and
renamed into place (atomic: concurrent runs racing to create one entry leave one complete entry; a
reader never sees a partial one). An entry is trusted only if it is a regular file of bounded size,
parses, holds exactly this key and passes its checksum; anything else (truncated, tampered, another
key's) is recomputed and rewritten, with one warning line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

FORMAT = "difflab-floor-cache"
# An entry's format and the code that computed it: bump when a metric's computation or the floors'
# recipe changes (an older entry is recomputed, silently: it is not damaged, only outdated). Version 2:
# the pair terms summed in cache-sized blocks (the floors move at round-off, ~1e-15 relative).
VERSION = 2
# The seeds of the reference draws and of the floors come from keys holding SEED_VERSION, not VERSION:
# a new computation of the same metrics keeps every reference, floor and reported value; bump it only
# when the draws themselves must change.
SEED_VERSION = 1
MAX_ENTRY_BYTES = 1 << 20
# Exact-draw sets behind a cached entry. Computed once per (target, n), the floors can afford to be
# right: the standard error of a heavy-tailed metric (mmd2, energy, ksd2) estimated from 16 sets is
# itself off by a factor of 2 at times (measured: mmd2 on gaussian at n = 1,000, 16 sets gave a
# standard error of 2.2e-4 where 200 sets give 4.7e-4), and a shared entry would carry such an error
# into every run on the target. (A law built in Python, with no entry, keeps metrics.FLOOR_DRAWS.)
DRAWS = 100


def canonical(obj) -> str:
    """The JSON text a key or an entry is hashed by (sorted keys, no spaces; tuples as lists)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def digest(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def seed_of(key) -> int:
    """A 128-bit seed derived from a key: the same key gives the same draws in every process."""
    return int(digest(key)[:32], 16)


def default_dir() -> Path:
    env = os.environ.get("DIFFLAB_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "difflab"


@dataclass(frozen=True)
class Entry:
    """What an entry holds: the floors (summary keys) and the reference's bandwidth and self-terms."""

    floors: dict
    bandwidth: float | None = None
    ref_self: tuple | None = None


class FloorCache:
    """The cache in ``folder`` (None: no cache: every lookup misses and nothing is written)."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    @classmethod
    def of(cls, cache) -> FloorCache:
        """``cache``: True (the default folder), False or None (off), or a folder."""
        if cache is False or cache is None:
            return cls(None)
        return cls(default_dir() if cache is True else Path(cache))

    def path(self, key) -> Path:
        return self.folder / f"floors-{digest(key)[:40]}.json"

    def load(self, key) -> tuple[Entry | None, str | None]:
        """(the entry, None), (None, None) when there is none, or (None, what is wrong with it)."""
        if self.folder is None:
            return None, None
        doc, problem = read_entry(self.path(key))
        return (None, problem) if doc is None else _checked(doc, key)

    def describe(self, path: Path) -> dict:
        """What ``difflab cache`` shows of an entry: its target's name and particle count, read with
        the same bounds as a run reads it, and what is wrong with it (None: sound, its own key and
        checksum)."""
        doc, problem = read_entry(path)
        key = doc.get("key") if doc is not None else None
        if problem is None:
            entry, problem = _checked(doc, key)
            if entry is None and problem is None:
                problem = f"outdated (version {doc.get('version')}): the next run on it recomputes it"
        ok = problem is None and isinstance(key, dict) and isinstance(key.get("target"), list) and key["target"] and _number(key.get("n"))
        return {"target": str(key["target"][0]) if ok else "?", "particles": int(key["n"]) if ok else None,
                "problem": problem}

    def store(self, key, entry: Entry) -> str | None:
        """Write the entry atomically; returns what went wrong (the run goes on without it), or None."""
        if self.folder is None:
            return None
        body = {"key": key, "floors": entry.floors, "bandwidth": entry.bandwidth,
                "ref_self": None if entry.ref_self is None else list(entry.ref_self)}
        doc = {"format": FORMAT, "version": VERSION, **body, "checksum": digest(body)}
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".floors-", suffix=".tmp", dir=self.folder)
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(canonical(doc))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(key))
            tmp = None
        except OSError as exc:
            return f"{self.folder}: {exc.strerror or exc}"
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return None

    def entries(self) -> list[Path]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(self.folder.glob("floors-*.json"))

    def clear(self) -> int:
        """Remove every entry (and stale temporaries); returns how many entries were removed."""
        gone = 0
        for p in self.entries():
            p.unlink(missing_ok=True)
            gone += 1
        if self.folder is not None and self.folder.is_dir():
            for p in self.folder.glob(".floors-*.tmp"):
                p.unlink(missing_ok=True)
        return gone


def read_entry(path: Path) -> tuple[dict | None, str | None]:
    """(the parsed entry, None), (None, None) when there is none, or (None, what is wrong with the
    file): a regular file (not followed through a link) of at most MAX_ENTRY_BYTES of JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None, "not a regular file"
        raw = f.read(MAX_ENTRY_BYTES + 1)
    if len(raw) > MAX_ENTRY_BYTES:
        return None, f"larger than {MAX_ENTRY_BYTES} bytes"
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "not valid JSON (truncated?)"
    return (doc, None) if isinstance(doc, dict) else (None, "not a difflab floor-cache entry")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _checked(doc, key) -> tuple[Entry | None, str | None]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None, "not a difflab floor-cache entry"
    if doc.get("version") != VERSION:
        v = doc.get("version")
        if _number(v) and v < VERSION:  # outdated, not damaged: recomputed without a warning
            return None, None
        return None, f"format version {v!r}, not {VERSION}"
    if set(doc) != {"format", "version", "key", "floors", "bandwidth", "ref_self", "checksum"}:
        return None, "unexpected fields"
    body = {k: doc[k] for k in ("key", "floors", "bandwidth", "ref_self")}
    if doc["checksum"] != digest(body):
        return None, "checksum mismatch (altered)"
    if canonical(doc["key"]) != canonical(key):
        return None, "another key's entry"
    floors, bw, ref_self = doc["floors"], doc["bandwidth"], doc["ref_self"]
    if not isinstance(floors, dict) or not floors or not all(isinstance(k, str) and _number(v) for k, v in floors.items()):
        return None, "floors are not numbers"
    if bw is not None and not (_number(bw) and math.isfinite(bw) and bw > 0):
        return None, "bad bandwidth"
    if ref_self is not None and not (isinstance(ref_self, list) and len(ref_self) == 2 and all(map(_number, ref_self))):
        return None, "bad self-terms"
    return Entry({k: float(v) for k, v in floors.items()}, None if bw is None else float(bw),
                 None if ref_self is None else (float(ref_self[0]), float(ref_self[1]))), None


def _generator(key):
    import numpy as np

    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed_of(key))))


# The reference parts (draws, directions, sorted projections, bandwidth, self-terms) of the last
# few targets judged in this process, by their reference key: read-only arrays, shared by the runs.
_REFERENCES: dict = {}
_MAX_REFERENCES = 4


class Judge:
    """A run's metric suite and its floors.

    For a target built from a target file (``target.spec``), the reference draws and directions
    come from a generator seeded by the target's key and the metric settings, and the floors from
    one seeded by that key and n, read from the cache or computed and stored there. A law built in
    Python (guidance's conditional) has no key: its suite draws from the run's metric stream and
    its floors from the run's floor stream, as before the cache.
    """

    def __init__(self, target, n: int, cache: FloorCache, rng_metric):
        from difflab.maths import metrics

        self.cache, self.n, self.entry, self.problem, self.key = cache, n, None, None, None
        self._ref_name = None  # the reference's key in the process's memo (a target file's target)
        self.discrete = target.discrete
        self.draws = metrics.FLOOR_DRAWS  # sets behind the floors: DRAWS for a cached entry
        spec = target.spec
        if spec is None:
            self.suite = metrics.MetricSuite(target, rng_metric)
            return
        suite = "discrete" if target.discrete else "continuous"
        settings = {"discrete": True} if target.discrete else {**metrics.SUITE_DEFAULTS, "stein": True}
        ref_key = {"version": SEED_VERSION, "target": spec.key(), "suite": suite, "settings": settings}
        self.key = {**ref_key, "n": n, "draws": DRAWS}
        self.draws = DRAWS
        self.entry, self.problem = cache.load(self.key)
        if target.discrete:
            self.suite = metrics.DiscreteMetricSuite(target)
            return
        name = canonical(ref_key)
        parts = _REFERENCES.get(name)
        if parts is None:
            cached = self.entry or Entry({})
            suite = metrics.MetricSuite(target, _generator(ref_key), bandwidth=cached.bandwidth,
                                        ref_self=cached.ref_self)
        else:
            _REFERENCES.pop(name)  # re-inserted below: the most recently used is kept longest
            suite = metrics.MetricSuite.from_reference(target, parts)
        self.suite = suite
        self._ref_name = name
        self._remember()

    def _remember(self):
        """Keep this suite's reference in the process (a sweep's worker, a notebook loop) for the
        next run on the target: the same draws the generator would give again, at no cost."""
        name = self._ref_name
        if name is None:
            return
        _REFERENCES[name] = self.suite.reference_parts()
        while len(_REFERENCES) > _MAX_REFERENCES:
            _REFERENCES.pop(next(iter(_REFERENCES)))

    def floors(self, sample, rng_floor) -> tuple[dict, str, list[str]]:
        """(the floors, where they came from, warning lines). Where they came from is the entry's
        name whether this run read it or wrote it (the floors are the same: the run file does not
        depend on which run came first), else 'computed (no cache)'."""
        from difflab.maths.metrics import floor_stats

        if self.key is None:
            return floor_stats(self.suite.final, sample, rng_floor, self.n), "computed (the run's own stream)", []
        path = self.cache.path(self.key) if self.cache.folder is not None else None
        if self.entry is not None:
            return dict(self.entry.floors), f"cache {path.name}", []
        floors = floor_stats(self.suite.final, sample, _generator(self.key), self.n, draws=self.draws)
        self._remember()  # the self-terms are known now
        warnings = [f"warning: floor cache entry {path}: {self.problem}; recomputed it"] if self.problem else []
        if path is None:
            return floors, "computed (no cache)", warnings
        entry = Entry(floors) if self.discrete else Entry(floors, self.suite.bandwidth, self.suite.ref_self)
        failed = self.cache.store(self.key, entry)
        if failed:
            return floors, "computed (not cached)", [*warnings, f"warning: floor cache: cannot write {failed}"]
        return floors, f"cache {path.name}", warnings
