"""Logging set-up shared by the entry points: secrets never reach a log line.

Libraries log more than we choose at DEBUG (websockets prints request headers, where a
bearer token travels, and every frame, where session.start carries it), so every
record is checked against the secret values in use before it is written.
"""

from __future__ import annotations

import logging
import os

SECRET_ENV = ("LLM_API_KEY", "SERPER_API_KEY", "PARLEY_AUTH_TOKEN", "PARLEY_MEMORY_DB")
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
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: int | str, extra_secrets: tuple[str | None, ...] = ()) -> RedactSecrets:
    """Log to stderr at ``level``, with secrets from the environment and ``extra_secrets`` masked."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redactor = RedactSecrets()
    for name in SECRET_ENV:
        redactor.add(os.environ.get(name))
    for value in extra_secrets:
        redactor.add(value)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    # websockets at DEBUG dumps every frame: users' words and audio do not belong in a log.
    logging.getLogger("websockets").setLevel(max(logging.getLogger().level, logging.INFO))
    return redactor
