"""Tokens of OpenQASM 2 and 3 (the subset hdqnn reads), each with its 1-based line and column."""
from __future__ import annotations

import re
from dataclasses import dataclass


class QasmError(ValueError):
    """A program hdqnn cannot read or write; ``line``/``column`` (1-based) locate the problem."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        self.reason = message
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


@dataclass(frozen=True)
class Token:
    kind: str  # "id" | "int" | "float" | "string" | "hwqubit" | "op" | "eof"
    text: str
    line: int
    column: int


_NUMBER = r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?"
_SPEC = [
    ("ws", r"[ \t\r\f\v]+"),
    ("newline", r"\n"),
    ("comment", r"//[^\n]*"),
    ("block", r"/\*(?:.|\n)*?\*/"),
    ("unterminated", r"/\*"),
    ("number", _NUMBER),
    ("string", r'"[^"\n]*"'),
    ("hwqubit", r"\$\d+"),
    ("id", r"[^\W\d]\w*"),
    ("op", r"->|\*\*|==|[-+*/^()\[\]{};,=@<>:.]"),
]
_MASTER = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _SPEC))


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text`` then an ``eof`` token; raises QasmError at an unknown character."""
    tokens: list[Token] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        m = _MASTER.match(text, pos)
        if m is None:
            raise QasmError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind, value = m.lastgroup, m.group()
        column = pos - line_start + 1
        if kind == "number":
            is_int = value.isdigit()
            tokens.append(Token("int" if is_int else "float", value, line, column))
        elif kind == "string":
            tokens.append(Token("string", value[1:-1], line, column))
        elif kind in ("id", "op", "hwqubit"):
            tokens.append(Token(kind, value, line, column))
        elif kind == "unterminated":
            raise QasmError("unterminated /* comment", line, column)
        elif kind == "block" and "\n" in value:
            line += value.count("\n")
            line_start = pos + value.rindex("\n") + 1
        elif kind == "newline":
            line += 1
            line_start = pos + 1
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens
