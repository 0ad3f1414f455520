"""The ``hdqnn train`` command as the sweep sees it: its flags, read from its own argparse parser.

A sweep option named ``env``, ``env-id`` or ``env_id`` is whichever train flag has that spelling,
and its value goes through that flag's parser (type, choices), so a sweep file is checked exactly
as the command line would be, before any trial starts, and two spellings of one value (``1e-3``
and ``0.001``; ``Pendulum`` and ``Pendulum-v1``, the version train would pick) name the same trial.
"""
from __future__ import annotations

import argparse
import difflib
from typing import Any, Callable, Mapping

#: Destinations of the train options the sweep itself needs to know.
ALGO, ENV, SEED, STEPS = "algo", "env_id", "seed", "total_timesteps"
OUT, RESUME, TAG, THREADS, PROGRESS, PRESET = "out_dir", "resume", "tag", "threads", "progress", "preset"
#: Options the sweep sets for every trial; a sweep file may not.
RESERVED = {OUT: "each trial's folder is chosen by the sweep (under `out`)",
            RESUME: "the sweep resumes unfinished trials by itself"}


class _ParseError(Exception):
    pass


def _raise(message: str) -> None:
    raise _ParseError(message)


def _plain(value: Any) -> Any:
    """A parsed value as JSON data (tuples become lists, other objects strings)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class TrainCommand:
    """Builds, checks and resolves ``hdqnn train`` arguments from its parser.

    parser: train's argparse parser; command: the argv prefix that runs train (None: the worker's
    ``python -m hdqnn train``); resolve_env: a function returning the env id train runs for a given
    one (``Pendulum`` -> ``Pendulum-v1``) or raising ValueError for an unusable one, called once per
    env value; presets: train's named argument sets
    (``--preset NAME`` applies one under the explicit flags); check_run: a function raising
    ValueError for a set of options train would refuse (ranges, combinations), called per trial.
    """

    def __init__(self, parser: argparse.ArgumentParser, command: list[str] | None = None,
                 resolve_env: Callable[[str], str] | None = None,
                 presets: Mapping[str, Mapping[str, Any]] | None = None,
                 check_run: Callable[[dict[str, Any]], None] | None = None):
        self.parser = parser
        self.parser.error = _raise  # a bad value must raise here, not exit the sweep
        self.command = command
        self.resolve_env = resolve_env
        self.presets = presets or {}
        self.check_run = check_run
        self._by_name: dict[str, argparse.Action] = {}
        for action in parser._actions:  # noqa: SLF001 (argparse has no public list of its actions)
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            self._by_name[action.dest] = action
            for option in action.option_strings:
                if option.startswith("--") and not option.startswith("--no-"):
                    self._by_name[option[2:]] = action
                    self._by_name[option[2:].replace("-", "_")] = action

    def has(self, dest: str) -> bool:
        return dest in self._by_name

    def implied(self, options: Mapping[str, Any], dests: tuple[str, ...] = (ALGO, ENV, SEED)) -> dict[str, Any]:
        """The values train takes for ``dests`` that ``options`` leave out: the preset's, else the defaults."""
        preset = self.presets.get(options.get(PRESET), {})
        return {d: _plain(preset.get(d, self.parser.get_default(d))) for d in dests
                if d not in options and self.has(d)}

    def tokens(self, dest: str, value: Any) -> list[str]:
        """Command-line tokens that set option ``dest`` to ``value``."""
        action = self._by_name[dest]
        flag = next(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse.BooleanOptionalAction):
            return [flag] if value else ["--no-" + flag[2:]]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
            sets_true = isinstance(action, argparse._StoreTrueAction)  # noqa: SLF001
            return [flag] if bool(value) == sets_true else []
        values = value if isinstance(value, list) else [value]
        return [flag, *(str(v).lower() if isinstance(v, bool) else str(v) for v in values)]

    def resolve(self, key: str, value: Any) -> tuple[str, Any]:
        """(destination, parsed value) of option ``key``; ValueError saying what is wrong."""
        action = self._by_name.get(key)
        if action is None:
            known = sorted({o[2:] for a in self._by_name.values() for o in a.option_strings if o.startswith("--")})
            close = difflib.get_close_matches(key.replace("_", "-"), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{key!r} is not an option of hdqnn train{hint}")
        if action.dest in RESERVED:
            raise ValueError(f"{key!r} cannot be set in a sweep: {RESERVED[action.dest]}")
        is_flag = isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction,  # noqa: SLF001
                                      argparse._StoreFalseAction))  # noqa: SLF001
        if is_flag and not isinstance(value, bool):
            raise ValueError(f"{key!r} is a switch; use true or false, not {value!r}")
        if is_flag and not self.tokens(action.dest, value) and value != self.parser.get_default(action.dest):
            raise ValueError(f"hdqnn train cannot set {key!r} to {value!r}")
        try:
            parsed = self.parser.parse_args(self.tokens(action.dest, value))
        except _ParseError as exc:
            raise ValueError(str(exc)) from None
        parsed_value = _plain(getattr(parsed, action.dest))
        if action.dest == ENV and self.resolve_env is not None:
            parsed_value = self.resolve_env(parsed_value)
        return action.dest, parsed_value

    def fresh_args(self, options: dict[str, Any], run_dir: str) -> list[str]:
        """train arguments for a fresh start of ``options`` in ``run_dir``."""
        args = []
        for dest, value in options.items():
            args += self.tokens(dest, value)
        return args + self.tokens(OUT, run_dir)

    def resume_args(self, run_dir: str) -> list[str]:
        return self.tokens(RESUME, run_dir)


def gymnasium_env_id(env_id: str) -> str:
    """The versioned id train runs for ``env_id`` (ValueError unless Gymnasium has it registered):
    ``Pendulum`` and ``Pendulum-v1`` are one trial. Cheap: makes no environment."""
    from ..rl.args import resolve_env_id

    return resolve_env_id(env_id)


__all__ = ["TrainCommand", "gymnasium_env_id", "ALGO", "ENV", "SEED", "STEPS", "TAG", "THREADS", "PROGRESS"]
