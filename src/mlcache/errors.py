"""mlcache's exceptions.  Messages name the key or setting at fault, never a value or a password."""
from __future__ import annotations


class MLCacheError(Exception):
    """Root of every exception mlcache raises on purpose."""


class ConfigError(MLCacheError, ValueError):
    """A configuration key is unknown, or its value has the wrong type or range."""


class SerializationError(MLCacheError, TypeError):
    """A value cannot be stored so that it comes back equal, or stored bytes cannot be read."""


class TierError(MLCacheError):
    """A level (L2 Redis, L3 PostgreSQL) failed.  Raised to callers only in ``strict`` mode."""

    def __init__(self, level: str, message: str) -> None:
        super().__init__(f"{level}: {message}")
        self.level = level


class TierUnavailableError(TierError):
    """The level could not be reached or refused the command."""


class TierTimeoutError(TierError):
    """The level did not answer within its deadline."""
