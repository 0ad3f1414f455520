"""Grid expansion and stable trial names.

A trial is one ``hdqnn train`` run. Its configuration is labelled ``<algo>__<hash>``, the hash
being the first 8 hex digits of the SHA-256 of the trial's options without the seed and the
environment (canonical JSON, sorted keys), and its **group** folder is ``<env>__<label>``. So a name
depends only on what the run does: the same options give the same folder in any sweep file, in any
order, and re-running or extending a sweep finds the trials it already ran. The label is passed to
train as its ``tag`` (unless the sweep sets one): ``hdqnn compare`` groups runs by (env, tag), so
the seeds of a configuration are its samples, and one configuration keeps its label across envs.

Layout under the sweep folder: ``runs/<group>/seed<seed>/`` is the train run folder.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import SweepConfig, SweepConfigError

HASH_DIGITS = 8
RUNS_DIR = "runs"
#: Characters kept in names taken from option values (others become '-').
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Trial:
    """One train run of the sweep.

    label: the configuration's name in ``hdqnn compare``; group: ``<env>__<label>``, its folder;
    seed: the run's seed; options: the canonical train options (seed included, the sweep's own
    ``out`` not).
    """

    label: str
    group: str
    seed: Any
    options: dict[str, Any]

    @property
    def name(self) -> str:
        """``<group>/seed<seed>``: unique within a sweep folder."""
        return f"{self.group}/seed{self.seed}"

    @property
    def slug(self) -> str:
        """The name as one file name (for logs, status and lock files)."""
        return f"{self.group}__seed{self.seed}"

    def run_dir(self, root: Path) -> Path:
        return Path(root) / RUNS_DIR / self.group / f"seed{self.seed}"


def config_hash(options: dict[str, Any]) -> str:
    """First ``HASH_DIGITS`` hex digits of the SHA-256 of ``options`` as canonical JSON."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def config_label(options: dict[str, Any], algo_key: str, env_key: str, seed_key: str) -> str:
    """``<algo>__<hash of the options without the seed and the environment>``."""
    config = {k: v for k, v in options.items() if k not in (seed_key, env_key)}
    return f"{_UNSAFE.sub('-', str(options.get(algo_key, 'algo')))}__{config_hash(config)}"


def expand(config: SweepConfig, implied: Callable[[dict[str, Any]], dict[str, Any]], algo_key: str,
           env_key: str, seed_key: str) -> list[Trial]:
    """Every trial of ``config``, ordered seed-major so all configurations get a first seed early.

    implied: options -> the values train would take for ``algo_key``, ``env_key`` and ``seed_key``
    where the options leave them out (its defaults, or a preset's); they are written out, so a name
    never depends on a default that changes later. Two entries that give the same run are an error.
    """
    keys = list(config.grid)
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    for t, entry in enumerate(config.trials):
        for values in itertools.product(*(config.grid[k] for k in keys)):
            options = {**config.base, **entry, **dict(zip(keys, values))}
            options = {**implied(options), **options}
            label = config_label(options, algo_key, env_key, seed_key)
            group = f"{_UNSAFE.sub('-', str(options.get(env_key, 'env')))}__{label}"
            trial = Trial(label, group, options.get(seed_key), options)
            where = f"trials[{t}] with " + ", ".join(f"{k}={v!r}" for k, v in zip(keys, values))
            if trial.name in seen:
                raise SweepConfigError(f"{where} repeats the run of {seen[trial.name]} ({trial.name})")
            seen[trial.name] = where
            trials.append(trial)
    seeds = list(dict.fromkeys(t.seed for t in trials))
    return sorted(trials, key=lambda t: seeds.index(t.seed))


__all__ = ["Trial", "config_hash", "config_label", "expand", "RUNS_DIR"]
