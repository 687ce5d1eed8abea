"""Logging set-up shared by the entry points: secrets never reach a log line.

Libraries log more than we choose at DEBUG (websockets prints request headers, where a
bearer token travels, and every frame, where session.start carries it), so every
record is checked against the secret values in use before it is written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

SECRET_ENV = ("LLM_API_KEY", "SERPER_API_KEY", "PARLEY_AUTH_TOKEN", "PARLEY_MEMORY_DB", "PARLEY_LOG_HASH_KEY")
"""Environment variables whose values are secrets."""

MASK = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replaces every known secret value in a record's message and traceback with ``[redacted]``."""

    def __init__(self, secrets: set[str] | None = None) -> None:
        super().__init__()
        self.secrets: set[str] = set(secrets or ())

    def add(self, value: str | None) -> None:
        """Also hide ``value`` (short values are ignored: masking them would garble ordinary words)."""
        if value and len(value) >= 6:
            self.secrets.add(value)

    def redact(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message in place; always keep the record."""
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


CONTEXT_FIELDS = ("session_id", "turn_id", "user_id", "route", "transport", "interrupted", "timings")
"""Fields a record may carry (``extra=``) that the JSON format writes as keys of their own."""


def hash_user_id(user_id: str, key: str) -> str:
    """A stable pseudonym: the same user gets the same value, which does not give the id back without ``key``."""
    return "u-" + hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:16]


class HashUserIds(logging.Filter):
    """Replaces a record's ``user_id`` (and the same value among its message arguments) with its hash."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self._key = key

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's user id (field and arguments) by its keyed hash; always keep the record."""
        user_id = getattr(record, "user_id", None)
        if isinstance(user_id, str) and user_id:
            hashed = hash_user_id(user_id, self._key)
            record.user_id = hashed
            if isinstance(record.args, tuple):
                record.args = tuple(hashed if arg == user_id else arg for arg in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's context fields.

    String values are masked by ``redactor`` once more here: the filter cleans the message and
    traceback, this catches a secret in a context field.
    """

    def __init__(self, redactor: RedactSecrets) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object on one line."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(self._clean(entry), ensure_ascii=False, default=str)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redactor.redact(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        return value


def configure_logging(level: int | str, extra_secrets: tuple[str | None, ...] = (), fmt: str = "text",
                      user_ids: str = "plain") -> RedactSecrets:
    """Log to stderr at ``level``, with secrets from the environment and ``extra_secrets`` masked.

    ``fmt``: ``text`` (for people) or ``json`` (one object per line, for a log pipeline);
    ``user_ids``: ``plain`` or ``hash`` (keyed by env ``PARLEY_LOG_HASH_KEY``).
    """
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redactor = RedactSecrets()
    for name in SECRET_ENV:
        redactor.add(os.environ.get(name))
    for value in extra_secrets:
        redactor.add(value)
    for handler in logging.getLogger().handlers:
        # Called again (server.py: once before the heavy imports, once with every flag): replace, never stack.
        for old in [f for f in handler.filters if isinstance(f, HashUserIds | RedactSecrets)]:
            handler.removeFilter(old)
        if user_ids == "hash":  # before the redactor: the message is rebuilt from the hashed arguments
            handler.addFilter(HashUserIds(os.environ.get("PARLEY_LOG_HASH_KEY", "parley")))
        handler.addFilter(redactor)
        if fmt == "json":
            handler.setFormatter(JsonFormatter(redactor))
    if user_ids == "hash" and not os.environ.get("PARLEY_LOG_HASH_KEY"):
        logging.getLogger(__name__).warning("--log_user_id hash without PARLEY_LOG_HASH_KEY: anyone can hash a "
                                            "guessed user id and compare; set a secret key")
    # websockets at DEBUG dumps every frame: users' words and audio do not belong in a log.
    logging.getLogger("websockets").setLevel(max(logging.getLogger().level, logging.INFO))
    return redactor
