"""The one error type a user can cause, and the ways every stage words a message. The CLI prints a UserError's
message on one line and exits 2."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and how to fix it."""


def did_you_mean(name: str, choices) -> str:
    """ "did you mean 'x'? " for the choice closest to a misspelt name, or "" when none is close."""
    hint = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f"did you mean '{hint[0]}'? " if hint else ""


def unknown_key(key: str, allowed, where: str) -> UserError:
    """An unknown key of a TOML table (a task or sweep file), with the closest allowed key or the list."""
    return unknown_keys([(key, allowed, where)])


def unknown_keys(found: list[tuple]) -> UserError:
    """Every unknown key of a file at once, (key, allowed keys, where) each: one line per key, with the closest
    allowed key or the list."""
    lines = []
    for key, allowed, where in found:
        allowed = sorted(allowed) if isinstance(allowed, set) else list(allowed)
        hint = difflib.get_close_matches(key, allowed, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else f"; allowed keys: {', '.join(allowed)}"
        lines.append(f"{where}: unknown key '{key}'{extra}")
    return UserError("\n".join(lines))


def counted(n: int, noun: str, plural: str = "") -> str:
    """ "1 trial", "2 trials": a count and its noun, in the number the count asks for (`plural`: when not noun+s)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's first line of text, cut at `limit` characters; its type's name if it has no text."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
