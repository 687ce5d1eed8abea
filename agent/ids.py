"""Validation of identifiers that reach file paths, SQL and logs."""

from __future__ import annotations

import re

_USER_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
"""Used with ``fullmatch``: ``match`` with a final ``$`` also accepts a trailing newline."""


class InvalidIdError(ValueError):
    """An identifier from outside (user id, memory id) that Parley refuses."""


def validate_user_id(user_id: object) -> str:
    """Return ``user_id`` unchanged if it is safe, else raise :class:`InvalidIdError`.

    Allowed: 1 to 64 characters of ASCII letters, digits and ``_ . @ -``, and not
    ``.`` or ``..`` (user ids may end up in file names and URLs).
    """
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id) or user_id in {".", ".."}:
        raise InvalidIdError(
            "invalid user id: use 1-64 characters from A-Z a-z 0-9 _ . @ - "
            f"(got {str(user_id)[:80]!r})"
        )
    return user_id
