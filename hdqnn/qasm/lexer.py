"""Tokens of OpenQASM 2 and 3 (the subset hdqnn reads), each with its 1-based line and column."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator


class QasmError(ValueError):
    """A program hdqnn cannot read or write; ``line``/``column`` (1-based) locate the problem."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        self.reason = message
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "id" | "int" | "float" | "string" | "hwqubit" | "op" | "eof"
    text: str
    line: int
    column: int


# ASCII digits only: Python's \d, str.isdigit() and int() also accept digits of other scripts
# ('\u0663', fullwidth '\uff13'), which OpenQASM does not. Identifiers may use Unicode letters
# (OpenQASM 3 names pi as '\u03c0') but no numeric character other than 0-9 (see _check_name).
_DIGITS = r"[0-9]+"
_NUMBER = rf"(?:{_DIGITS}\.[0-9]*|\.{_DIGITS}|{_DIGITS})(?:[eE][+-]?{_DIGITS})?"
_INT = re.compile(_DIGITS)
_SPEC = [
    ("ws", r"[ \t\r\f\v]+"),
    ("newline", r"\n"),
    ("comment", r"//[^\n]*"),
    ("block", r"/\*(?s:.*?)\*/"),
    ("unterminated", r"/\*"),
    ("number", _NUMBER),
    ("string", r'"[^"\n]*"'),
    ("hwqubit", rf"\${_DIGITS}"),
    ("id", r"[^\W\d](?:[^\W\d]|[0-9])*"),
    ("op", r"->|\*\*|==|[-+*/^()\[\]{};,=@<>:.]"),
]
_MASTER = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _SPEC))


def _check_name(name: str, line: int, column: int) -> None:
    """Refuse numeric characters in a name: ``\\w`` admits superscripts, fractions and the like."""
    for i, char in enumerate(name):
        if char.isnumeric() and not char.isascii():
            raise QasmError(f"unexpected character {char!r}", line, column + i)


def iter_tokens(text: str, max_number_chars: int) -> Iterator[Token]:
    """The tokens of ``text``, then ``eof`` tokens forever; QasmError at an unknown character.

    Lazy, so reading holds a few tokens rather than one object per token of the whole text.
    ``max_number_chars`` bounds a numeric literal (see ``Limits.max_number_chars``).
    """
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        m = _MASTER.match(text, pos)
        if m is None:
            raise QasmError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind, value = m.lastgroup, m.group()
        column = pos - line_start + 1
        if kind in ("number", "hwqubit") and len(value) > max_number_chars:
            raise QasmError(f"number of {len(value)} characters exceeds the limit of {max_number_chars} "
                            "(Limits.max_number_chars)", line, column)
        if kind == "number":
            yield Token("int" if _INT.fullmatch(value) else "float", value, line, column)
        elif kind == "string":
            yield Token("string", value[1:-1], line, column)
        elif kind in ("id", "op", "hwqubit"):
            if kind == "id" and not value.isascii():
                _check_name(value, line, column)
            yield Token(kind, value, line, column)
        elif kind == "unterminated":
            raise QasmError("unterminated /* comment", line, column)
        elif kind == "block" and "\n" in value:
            line += value.count("\n")
            line_start = pos + value.rindex("\n") + 1
        elif kind == "newline":
            line += 1
            line_start = pos + 1
        pos = m.end()
    eof = Token("eof", "", line, pos - line_start + 1)
    while True:
        yield eof
