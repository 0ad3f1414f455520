"""A sweep's configuration: a YAML file and/or command-line flags, checked field by field.

A sweep file names ``hdqnn train`` options (flag names without the dashes: ``algo``, ``env``,
``steps``, ``seed``, ``qubits``, ...) in three places::

    out: runs/sweep_tiny      # the sweep's folder
    base: {env: Pendulum-v1, steps: 300}       # options of every trial
    grid: {algo: [td3, hdqnn-td3], seed: [0, 1]}  # every combination of these values
    trials: [{qubits: 4}, {qubits: 6, layers: 3}]  # optional: option sets, each crossed with the grid

plus how to run it (``parallel``, ``cpus_per_trial``, ``max_retries``, ``address``). Every mistake
raises ``SweepConfigError`` (a ValueError) naming the field, e.g. ``grid.algo[1]``, before any trial
starts. Option names and values are checked by a ``TrainOptions`` (the train command's own parser).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

#: Keys a sweep file may have at its top level.
TOP_LEVEL_KEYS = ("out", "parallel", "cpus_per_trial", "max_retries", "address", "base", "grid", "trials")
DEFAULT_MAX_RETRIES = 2
DEFAULT_CPUS_PER_TRIAL = 1
#: Scalar types an option value may have (lists of them for list-valued options).
SCALAR_TYPES = (str, int, float, bool)


class SweepConfigError(ValueError):
    """A malformed sweep configuration; the message names the offending field."""


#: Resolves one train option: (name as written, value) -> (canonical name, canonical value); raises
#: ValueError saying what is wrong (the config adds which field).
OptionResolver = Callable[[str, Any], "tuple[str, Any]"]


@dataclass
class SweepConfig:
    """A checked sweep: where it writes, the option sets it expands, and how it runs.

    Option dicts hold canonical option names (the train parser's destinations) and values already
    converted by the train parser, so two spellings of one run name the same trial.
    """

    out: Path
    """the sweep's folder (trial runs under ``out/runs``, logs, status and the comparison)"""
    base: dict[str, Any] = field(default_factory=dict)
    """options shared by every trial"""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """option -> values; the sweep runs every combination"""
    trials: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    """option sets, each crossed with the grid and laid over ``base``"""
    parallel: int | None = None
    """trials at once (None: as many as the CPUs allow at ``cpus_per_trial`` each)"""
    cpus_per_trial: int = DEFAULT_CPUS_PER_TRIAL
    """CPUs (and torch threads) of each trial"""
    max_retries: int = DEFAULT_MAX_RETRIES
    """restarts of a trial whose worker died; each resumes from the trial's last checkpoint"""
    address: str | None = None
    """Ray cluster address (``auto``, ``ray://host:10001``); None starts a local Ray instance"""


def fail(source: str, path: str, problem: str) -> SweepConfigError:
    """The error for one field: ``<source>: field 'grid.algo[1]': <problem>``."""
    return SweepConfigError(f"{source}: field {path!r}: {problem}")


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve(resolve: OptionResolver, key: str, value: Any, source: str, path: str) -> tuple[str, Any]:
    try:
        return resolve(key, value)
    except ValueError as exc:
        raise fail(source, path, str(exc)) from None


def _positive_int(value: Any, source: str, path: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(source, path, f"must be an integer >= {minimum}; got {value!r}")
    return value


def _check_value(value: Any, source: str, path: str) -> None:
    """An option value is a scalar or a list of scalars (a list-valued option such as hidden sizes)."""
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise fail(source, path, "an empty list is not an option value")
    for item in items:
        if item is None or not isinstance(item, SCALAR_TYPES):
            raise fail(source, path, f"must be a number, string or boolean (or a list of them); got {item!r}")


def _options(raw: Any, source: str, path: str, resolve: OptionResolver) -> dict[str, Any]:
    """A mapping of train options, each resolved to its canonical name and value."""
    if not isinstance(raw, Mapping):
        raise fail(source, path, f"must be a mapping of hdqnn train options; got {type(raw).__name__}")
    options: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if not isinstance(key, str):
            raise fail(source, where, "option names must be strings")
        _check_value(value, source, where)
        name, canonical = _resolve(resolve, key, value, source, where)
        if name in options:
            raise fail(source, where, f"sets option {name!r} a second time")
        options[name] = canonical
    return options


def _grid(raw: Any, source: str, resolve: OptionResolver) -> dict[str, list[Any]]:
    if not isinstance(raw, Mapping):
        raise fail(source, "grid", f"must be a mapping of option -> list of values; got {type(raw).__name__}")
    grid: dict[str, list[Any]] = {}
    for key, values in raw.items():
        where = f"grid.{key}"
        if not isinstance(key, str):
            raise fail(source, where, "option names must be strings")
        if not isinstance(values, list) or not values:
            raise fail(source, where, f"must be a non-empty list of values; got {values!r}")
        resolved = []
        name = None
        for i, value in enumerate(values):
            _check_value(value, source, f"{where}[{i}]")
            name, canonical = _resolve(resolve, key, value, source, f"{where}[{i}]")
            if canonical in resolved:
                raise fail(source, f"{where}[{i}]", f"repeats the value {value!r}")
            resolved.append(canonical)
        if name in grid:
            raise fail(source, where, f"sets option {name!r} a second time")
        grid[name] = resolved
    return grid


def _trials(raw: Any, source: str, resolve: OptionResolver, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise fail(source, "trials", f"must be a non-empty list of option mappings; got {raw!r}")
    entries = []
    for i, entry in enumerate(raw):
        options = _options(entry, source, f"trials[{i}]", resolve)
        clash = sorted(set(options) & set(grid))
        if clash:
            raise fail(source, f"trials[{i}].{clash[0]}", "is also swept by the grid; set it in one place")
        entries.append(options)
    return entries


def _apply_overrides(config: SweepConfig, overrides: Mapping[str, list[Any]], resolve: OptionResolver) -> None:
    """Command-line options replace the file's: one value goes to ``base``, several to ``grid``."""
    for key, values in overrides.items():
        where = f"--{key}"
        if not isinstance(values, list) or not values:
            raise fail("command line", where, f"needs at least one value; got {values!r}")
        resolved = []
        name = key
        for value in values:
            _check_value(value, "command line", where)
            name, canonical = _resolve(resolve, key, value, "command line", where)
            resolved.append(canonical)
        config.base.pop(name, None)
        config.grid.pop(name, None)
        for entry in config.trials:
            entry.pop(name, None)
        if len(resolved) == 1:
            config.base[name] = resolved[0]
        else:
            config.grid[name] = resolved


def parse_config(raw: Any, resolve: OptionResolver, source: str = "sweep config",
                 out: str | Path | None = None,
                 overrides: Mapping[str, list[Any]] | None = None) -> SweepConfig:
    """Check a sweep mapping (a parsed YAML file) and resolve its options.

    raw: the mapping; resolve: checks one train option (see ``OptionResolver``); source: where it
    came from, for error messages; out: overrides the file's ``out``; overrides: option -> values
    from the command line, replacing that option wherever the file sets it.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SweepConfigError(f"{source}: a sweep config must be a mapping; got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise fail(source, str(key), f"unknown field{_suggest(str(key), TOP_LEVEL_KEYS)}; "
                       f"a sweep config has {', '.join(TOP_LEVEL_KEYS)}")
    out = out if out is not None else raw.get("out")
    if not isinstance(out, (str, Path)) or not str(out):
        raise fail(source, "out", "the sweep's folder is required (set `out:` or pass --out)")
    grid = _grid(raw.get("grid", {}), source, resolve)
    config = SweepConfig(
        out=Path(out).expanduser().resolve(),
        base=_options(raw.get("base", {}), source, "base", resolve),
        grid=grid,
        trials=_trials(raw["trials"], source, resolve, grid) if "trials" in raw else [{}],
        cpus_per_trial=_positive_int(raw.get("cpus_per_trial", DEFAULT_CPUS_PER_TRIAL), source, "cpus_per_trial"),
        max_retries=_positive_int(raw.get("max_retries", DEFAULT_MAX_RETRIES), source, "max_retries", minimum=0),
    )
    if raw.get("parallel") is not None:
        config.parallel = _positive_int(raw["parallel"], source, "parallel")
    address = raw.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        raise fail(source, "address", f"must be a Ray address such as 'auto' or 'ray://host:10001'; got {address!r}")
    config.address = address
    _apply_overrides(config, overrides or {}, resolve)
    return config


def load_yaml(path: str | Path) -> Any:
    """The parsed YAML of a sweep file; SweepConfigError for a missing or unparsable file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"sweep config {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"{path}: not valid YAML: {exc}") from exc


__all__ = ["SweepConfig", "SweepConfigError", "OptionResolver", "parse_config", "load_yaml", "TOP_LEVEL_KEYS"]
