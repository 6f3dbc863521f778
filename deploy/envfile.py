"""The app's ``.env``: read it, and change only the variables setup.sh manages.

Lines setup.sh does not manage (comments, settings an operator added) stay as
they are, in place.  The file is created with mode 0600 and rewritten only when
its content changes, so a second run with the same answers leaves it untouched.

Values are written for both readers of the file: python-dotenv (the app and
its CLI) and systemd's ``EnvironmentFile=``.  Anything beyond letters, digits
and ``@%+=:,./_-`` goes in single quotes, which neither reader expands.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_PLAIN = re.compile(r"^[A-Za-z0-9@%+=:,./_-]*$")
HEADER = (
    "# Written by setup.sh: re-run it to change these answers; it keeps the\n"
    "# secrets and every line it does not manage. Other settings: .env.example.\n"
)


def parse_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def read(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            match = _LINE.match(line)
            if match and not line.lstrip().startswith("#"):
                values[match.group(1)] = parse_value(match.group(2))
    return values


def quote(value: str) -> str:
    if _PLAIN.match(value):
        return value
    if "'" in value or "\n" in value or "\\" in value:
        raise ValueError(f"cannot store {value!r} in .env: quotes, backslashes or newlines")
    return f"'{value}'"


def updated_text(old: str, updates: dict[str, str | None]) -> str:
    """``old`` with each variable in ``updates`` set (or removed when None)."""
    remaining = dict(updates)
    lines = []
    for line in old.splitlines():
        match = _LINE.match(line)
        name = match.group(1) if match and not line.lstrip().startswith("#") else None
        if name in remaining:
            value = remaining.pop(name)
            if value is not None:
                lines.append(f"{name}={quote(value)}")
            continue
        if name in updates:  # a second line for a variable already written
            continue
        lines.append(line)
    additions = [f"{name}={quote(value)}" for name, value in remaining.items() if value is not None]
    text = "\n".join(lines).rstrip("\n")
    if not text:
        text = HEADER.rstrip("\n")
    return text + "\n" + "".join(f"{line}\n" for line in additions)


def write(path: Path, updates: dict[str, str | None]) -> bool:
    """Apply ``updates`` to the file at ``path``; True when its content changed."""
    old = path.read_text() if path.exists() else ""
    new = updated_text(old, updates)
    if path.exists():
        os.chmod(path, 0o600)  # whatever happened to it, the secrets are the owner's alone
        if new == old:
            return False
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(new)
    os.chmod(path, 0o600)
    return True
