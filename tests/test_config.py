"""Config from the guide's dict and the environment: every mistake names its key, never a value."""
from __future__ import annotations

from typing import Any

import pytest

from mlcache import CacheConfig, ConfigError, MultiLevelCache

NO_ENV: dict[str, str] = {}


def parse(raw: dict[str, Any], env: dict[str, str] = NO_ENV) -> CacheConfig:
    return CacheConfig.from_dict(raw, environ=env)


def test_guide_flat_keys() -> None:
    cfg = parse({
        "l1_capacity": 50000,
        "l1_max_capacity": 200000,
        "redis_url": "redis://localhost:6379/0",
        "postgres_url": "postgresql://claude_agent:password@localhost:5433/claude_agents_auth",
        "prometheus_port": 8000,
    })
    assert cfg.l1.initial_capacity == 50000 and cfg.l1.max_capacity == 200000
    assert cfg.l2.redis_url == "redis://localhost:6379/0"
    assert cfg.l3.database_url.startswith("postgresql://")
    assert cfg.prometheus_port == 8000


def test_guide_sections() -> None:
    cfg = parse({
        "l1": {"initial_capacity": 10000, "max_capacity": 100000, "target_hit_rate": 95.0,
               "resize_interval": 300, "hit_rate_window": 1000},
        "l2": {"redis_url": "redis://localhost:6379/0", "key_prefix": "claude_cache", "max_connections": 50,
               "retry_on_timeout": True, "health_check_interval": 30, "default_ttl": 3600,
               "warming_enabled": True},
        "l3": {"database_url": "postgresql://user:pass@localhost:5433/db",
               "connection_pool_size": {"min": 5, "max": 20}, "command_timeout": 10,
               "materialized_view_refresh": 3600},
    })
    assert cfg.l2.key_prefix == "claude_cache" and cfg.default_ttl == 3600.0
    assert (cfg.l3.pool_min, cfg.l3.pool_max) == (5, 20)
    assert cfg.l1.resize_interval == 300.0


def test_section_aliases_and_tls_flat_keys() -> None:
    cfg = parse({
        "l2_config": {"key_prefix": "x"},
        "redis_url": "rediss://localhost:6380/0",
        "redis_ssl_keyfile": "/path/to/client.key",
        "redis_ssl_certfile": "/path/to/client.crt",
        "redis_ssl_ca_certs": "/path/to/ca.crt",
    })
    assert cfg.l2.key_prefix == "x" and cfg.l2.redis_ssl_ca_certs == "/path/to/ca.crt"


def test_environment_fills_in_urls() -> None:
    env = {"REDIS_URL": "redis://r:6379/0", "POSTGRES_URL": "postgresql://u:p@pg/db"}
    cfg = parse({}, env)
    assert cfg.l2.redis_url == "redis://r:6379/0" and cfg.l3.database_url == "postgresql://u:p@pg/db"
    # the dict wins, and an explicit None turns the level off
    cfg = parse({"redis_url": "redis://other/1", "postgres_url": None}, env)
    assert cfg.l2.redis_url == "redis://other/1" and cfg.l3.database_url is None


def test_defaults_without_anything() -> None:
    cfg = parse({})
    assert cfg.l2.redis_url is None and cfg.l3.database_url is None
    assert cfg.l1.initial_capacity == 10_000 and cfg.default_ttl == 3600.0


@pytest.mark.parametrize(
    "raw,named",
    [
        ({"l1_capacit": 5}, "l1_capacit"),
        ({"l1": {"initial_capacty": 5}}, "l1.initial_capacty"),
        ({"l3": {"connection_pool_size": {"minimum": 1}}}, "connection_pool_size.minimum"),
        ({"l1_capacity": "50000"}, "l1_capacity"),
        ({"l1_capacity": True}, "l1_capacity"),
        ({"l1_capacity": 0}, "l1_capacity"),
        ({"l1_capacity": 5.0}, "l1_capacity"),
        ({"l1": {"target_hit_rate": 101}}, "target_hit_rate"),
        ({"l1": {"hit_rate_window": 0}}, "hit_rate_window"),
        ({"l2": {"max_connections": "50"}}, "max_connections"),
        ({"l2": {"retry_on_timeout": 1}}, "retry_on_timeout"),
        ({"l2": {"default_ttl": 0}}, "default_ttl"),
        ({"default_ttl": float("nan")}, "default_ttl"),
        ({"prometheus_port": 70000}, "prometheus_port"),
        ({"l3": {"connection_pool_size": {"min": 9, "max": 2}}}, "connection_pool_size"),
        ({"l3": {"table": "x; drop"}}, "table"),
        ({"l3": {"command_timeout": -1}}, "command_timeout"),
        ({"l1": {"initial_capacity": 10, "max_capacity": 5}}, "max_capacity"),
        ({"l1": 5}, "l1"),
        ({"key_prefix": "a", "l2": {"key_prefix": "b"}}, "key_prefix"),
        ({"strict": "yes"}, "strict"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")) as info:
        parse(raw)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("key", ["redis_url", "postgres_url"])
def test_bad_url_never_echoes_the_password(key: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        parse({key: "http://user:s3cret-pw@host/0"})
    assert "s3cret" not in str(info.value)


def test_tls_options_need_rediss() -> None:
    with pytest.raises(ConfigError, match="redis_ssl_certfile"):
        parse({"redis_url": "redis://localhost/0", "redis_ssl_certfile": "/x.crt"})


def test_capacity_alone_raises_the_ceiling() -> None:
    cfg = parse({"l1_capacity": 500_000})
    assert cfg.l1.max_capacity == 500_000


def test_cache_rejects_bad_config_before_connecting() -> None:
    with pytest.raises(ConfigError, match="l2.bogus"):
        MultiLevelCache({"l2": {"bogus": 1}})
