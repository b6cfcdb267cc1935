"""Typed configuration, validated once from the guide's dict and the environment.

The guide's flat keys (``l1_capacity``, ``redis_url``, ...) and the per-level sections
``l1`` / ``l2`` / ``l3`` (also spelled ``l1_config`` ...) with the guide's key names are both
accepted.  ``REDIS_URL`` and ``POSTGRES_URL`` fill in a URL the dict leaves out; an explicit
``None`` turns a level off even when the variable is set.  Every error names the key at
fault and never echoes a value (a URL may carry a password).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from .errors import ConfigError

# Sizes that bound what one value may cost every level; documented in the README.
DEFAULT_MAX_VALUE_BYTES = 8 * 1024 * 1024
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class L1Config:
    initial_capacity: int = 10_000
    max_capacity: int = 100_000
    target_hit_rate: float = 95.0
    resize_interval: float = 300.0
    hit_rate_window: int = 1000
    # mlcache's own: the eviction policy, a bound on L1's estimated bytes, and whether the
    # adaptive sizing controller runs (every resize_interval, off the lookup path).
    policy: str = "lru"
    max_memory_bytes: Optional[int] = None
    adaptive: bool = True
    # The longest an L1 entry lives whatever its TTL: the last bound on how stale another
    # process's L1 can be if an invalidation message is lost (None: no cap).
    max_ttl: Optional[float] = 300.0


@dataclass(frozen=True)
class L2Config:
    redis_url: Optional[str] = None
    key_prefix: str = "mlcache"
    max_connections: int = 50
    retry_on_timeout: bool = True
    health_check_interval: float = 30.0
    default_ttl: Optional[float] = 3600.0
    warming_enabled: bool = False
    redis_ssl_keyfile: Optional[str] = None
    redis_ssl_certfile: Optional[str] = None
    redis_ssl_ca_certs: Optional[str] = None
    # Far below redis-py's unbounded default: a hung Redis must cost milliseconds, not minutes.
    socket_timeout: float = 1.0
    socket_connect_timeout: float = 1.0
    # Deadlines per operation (reads give up and fall through; writes are skipped) and the
    # circuit breaker: consecutive failures to open, first and longest open period.
    read_timeout: float = 0.05
    write_timeout: float = 0.25
    breaker_failures: int = 5
    breaker_reset: float = 0.5
    breaker_max_reset: float = 30.0
    # Cross-process L1 invalidation over Redis pub/sub (see backplane.py), on redis_url or a
    # Redis of its own.
    backplane: bool = True
    backplane_url: Optional[str] = None


@dataclass(frozen=True)
class L3Config:
    database_url: Optional[str] = None
    pool_min: int = 5
    pool_max: int = 20
    command_timeout: float = 10.0
    materialized_view_refresh: float = 3600.0
    table: str = "mlcache_entries"
    sweep_interval: float = 60.0
    read_timeout: float = 0.25
    write_timeout: float = 1.0
    breaker_failures: int = 5
    breaker_reset: float = 0.5
    breaker_max_reset: float = 30.0


@dataclass(frozen=True)
class CacheConfig:
    l1: L1Config = field(default_factory=L1Config)
    l2: L2Config = field(default_factory=L2Config)
    l3: L3Config = field(default_factory=L3Config)
    prometheus_port: Optional[int] = None
    prometheus_addr: str = "0.0.0.0"
    strict: bool = False
    # Small enough that many concurrent misses leave in two or more batches, so Python decodes
    # one batch's replies while the server works on the next (see batching.py).
    max_batch: int = 32
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES

    @property
    def default_ttl(self) -> Optional[float]:
        return self.l2.default_ttl

    @classmethod
    def from_dict(
        cls, raw: Optional[Mapping[str, Any]] = None, environ: Optional[Mapping[str, str]] = None
    ) -> "CacheConfig":
        return _parse(raw or {}, os.environ if environ is None else environ)


# --- value checkers: each returns the normalised value or raises ConfigError naming `name` ---

def _int(lo: int, hi: Optional[int] = None) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"config key {name!r} must be an int")
        if v < lo or (hi is not None and v > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise ConfigError(f"config key {name!r} must be {bound}")
        return v
    return check


def _num(lo: float, hi: float = math.inf, *, open_lo: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config key {name!r} must be a number")
        f = float(v)
        if math.isnan(f) or f > hi or f < lo or (open_lo and f == lo):
            raise ConfigError(f"config key {name!r} is out of range")
        return f
    return check


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"config key {name!r} must be a bool")
    return v


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"config key {name!r} must be a non-empty str")
    return v


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, v: None if v is None else check(name, v)


def _choice(*options: str) -> Callable[[str, Any], str]:
    def check(name: str, v: Any) -> str:
        if v not in options:
            raise ConfigError(f"config key {name!r} must be one of {', '.join(options)}")
        return str(v)
    return check


def _url(*schemes: str) -> Callable[[str, Any], Optional[str]]:
    def check(name: str, v: Any) -> Optional[str]:
        if v is None:
            return None
        if not isinstance(v, str) or not v.startswith(tuple(s + "://" for s in schemes)):
            raise ConfigError(f"config key {name!r} must be a URL starting with one of {', '.join(schemes)}")
        return v
    return check


def _identifier(name: str, v: Any) -> str:
    # The table name is interpolated into DDL (identifiers cannot be bind parameters), so only
    # plain lower-case identifiers are allowed.
    if not isinstance(v, str) or not v or len(v) > 63 or not (v[0].isalpha() or v[0] == "_") \
            or not all(c.islower() or c.isdigit() or c == "_" for c in v) or not v.isascii():
        raise ConfigError(f"config key {name!r} must be a lower-case SQL identifier")
    return v


def _ttl(name: str, v: Any) -> Optional[float]:
    if v is None:
        return None
    return _num(0.0, MAX_TTL_SECONDS, open_lo=True)(name, v)


_L1_KEYS: dict[str, Optional[Callable[[str, Any], Any]]] = {
    "initial_capacity": _int(1),
    "max_capacity": _int(1),
    "target_hit_rate": _num(0.0, 100.0),
    "resize_interval": _num(0.0, open_lo=True),
    "hit_rate_window": _int(1),
    "policy": _choice("lru", "tinylfu"),
    "max_memory_bytes": _optional(_int(1)),
    "adaptive": _bool,
    "max_ttl": _ttl,
}
_L2_KEYS: dict[str, Optional[Callable[[str, Any], Any]]] = {
    "redis_url": _url("redis", "rediss", "unix"),
    "key_prefix": _str,
    "max_connections": _int(1),
    "retry_on_timeout": _bool,
    "health_check_interval": _num(0.0),
    "default_ttl": _ttl,
    "warming_enabled": _bool,
    "redis_ssl_keyfile": _optional(_str),
    "redis_ssl_certfile": _optional(_str),
    "redis_ssl_ca_certs": _optional(_str),
    "socket_timeout": _num(0.0, 3600.0, open_lo=True),
    "socket_connect_timeout": _num(0.0, 3600.0, open_lo=True),
    "read_timeout": _num(0.0, 3600.0, open_lo=True),
    "write_timeout": _num(0.0, 3600.0, open_lo=True),
    "breaker_failures": _int(1),
    "breaker_reset": _num(0.0, 3600.0, open_lo=True),
    "breaker_max_reset": _num(0.0, 86400.0, open_lo=True),
    "backplane": _bool,
    "backplane_url": _url("redis", "rediss", "unix"),
}
_L3_KEYS: dict[str, Optional[Callable[[str, Any], Any]]] = {
    "database_url": _url("postgresql", "postgres"),
    "connection_pool_size": None,  # a {min, max} dict, handled below
    "command_timeout": _num(0.0, 3600.0, open_lo=True),
    "materialized_view_refresh": _num(0.0, open_lo=True),
    "table": _identifier,
    "sweep_interval": _num(0.0, open_lo=True),
    "read_timeout": _num(0.0, 3600.0, open_lo=True),
    "write_timeout": _num(0.0, 3600.0, open_lo=True),
    "breaker_failures": _int(1),
    "breaker_reset": _num(0.0, 3600.0, open_lo=True),
    "breaker_max_reset": _num(0.0, 86400.0, open_lo=True),
}
_TOP_KEYS: dict[str, Optional[Callable[[str, Any], Any]]] = {
    "prometheus_port": _optional(_int(0, 65535)),
    "prometheus_addr": _str,
    "strict": _bool,
    "max_batch": _int(1, 10_000),
    "max_value_bytes": _int(1024, 512 * 1024 * 1024),
}
# The guide's flat keys and where they land.
_FLAT = {
    "l1_capacity": ("l1", "initial_capacity"),
    "l1_max_capacity": ("l1", "max_capacity"),
    "l1_policy": ("l1", "policy"),
    "l1_max_memory_bytes": ("l1", "max_memory_bytes"),
    "l1_max_ttl": ("l1", "max_ttl"),
    "backplane": ("l2", "backplane"),
    "redis_url": ("l2", "redis_url"),
    "postgres_url": ("l3", "database_url"),
    "key_prefix": ("l2", "key_prefix"),
    "default_ttl": ("l2", "default_ttl"),
    "redis_ssl_keyfile": ("l2", "redis_ssl_keyfile"),
    "redis_ssl_certfile": ("l2", "redis_ssl_certfile"),
    "redis_ssl_ca_certs": ("l2", "redis_ssl_ca_certs"),
}
_Check = Optional[Callable[[str, Any], Any]]
_SECTIONS: dict[str, dict[str, _Check]] = {"l1": _L1_KEYS, "l2": _L2_KEYS, "l3": _L3_KEYS}
_SECTION_ALIASES = {"l1": "l1", "l1_config": "l1", "l2": "l2", "l2_config": "l2", "l3": "l3", "l3_config": "l3"}


def _parse(raw: Mapping[str, Any], environ: Mapping[str, str]) -> CacheConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("config must be a dict")
    values: dict[str, dict[str, Any]] = {"l1": {}, "l2": {}, "l3": {}, "": {}}
    origin: dict[tuple[str, str], str] = {}

    def assign(section: str, key: str, value: Any, name: str) -> None:
        check = _SECTIONS[section][key] if section else _TOP_KEYS[key]
        value = _pool_size(name, value) if check is None else check(name, value)
        previous = origin.get((section, key))
        if previous is not None and values[section][key] != value:
            raise ConfigError(f"config keys {previous!r} and {name!r} set the same setting differently")
        values[section][key] = value
        origin[(section, key)] = name

    for name, value in raw.items():
        if not isinstance(name, str):
            raise ConfigError("config keys must be str")
        if name in _SECTION_ALIASES:
            section = _SECTION_ALIASES[name]
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {name!r} must be a dict")
            for key, sub in value.items():
                if key not in _SECTIONS[section]:
                    raise ConfigError(f"unknown config key {name}.{key!s}")
                assign(section, key, sub, f"{name}.{key}")
        elif name in _FLAT:
            assign(*_FLAT[name], value, name)
        elif name in _TOP_KEYS:
            assign("", name, value, name)
        else:
            raise ConfigError(f"unknown config key {name!r}")

    for env, (section, key) in (("REDIS_URL", ("l2", "redis_url")), ("POSTGRES_URL", ("l3", "database_url"))):
        if key not in values[section] and environ.get(env):
            assign(section, key, environ[env], env)

    pool = values["l3"].pop("connection_pool_size", {})
    values["l3"].update(pool)
    l1 = L1Config(**values["l1"])
    if l1.initial_capacity > l1.max_capacity:
        if "max_capacity" in values["l1"]:
            raise ConfigError(f"config key {origin[('l1', 'initial_capacity')]!r} exceeds "
                              f"{origin[('l1', 'max_capacity')]!r}")
        # Only the capacity was given: let the ceiling follow it rather than refuse.
        l1 = L1Config(**{**values["l1"], "max_capacity": l1.initial_capacity})
    l2 = L2Config(**values["l2"])
    if l2.redis_url is not None and not l2.redis_url.startswith("rediss://"):
        for opt in ("redis_ssl_keyfile", "redis_ssl_certfile", "redis_ssl_ca_certs"):
            if getattr(l2, opt) is not None:
                raise ConfigError(f"config key {origin[('l2', opt)]!r} needs a rediss:// redis_url")
    l3 = L3Config(**values["l3"])
    if l3.pool_min > l3.pool_max:
        raise ConfigError("config key 'l3.connection_pool_size' has min above max")
    return CacheConfig(l1=l1, l2=l2, l3=l3, **values[""])


def _pool_size(name: str, value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {name!r} must be a dict with 'min' and 'max'")
    out = {}
    for key, sub in value.items():
        if key not in ("min", "max"):
            raise ConfigError(f"unknown config key {name}.{key!s}")
        out["pool_" + key] = _int(0 if key == "min" else 1, 10_000)(f"{name}.{key}", sub)
    return out
