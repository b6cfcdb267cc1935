"""L2 over TLS with client certificates, and with passwords / ACL users, on real redis-servers."""
from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from mlcache import MultiLevelCache, TierUnavailableError
from mlcache.localservers import RedisServer, free_port


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("mlcache-client")
    files = {
        "ca": d / "ca.crt", "server_crt": d / "server.crt", "server_key": d / "server.key",
        "client_crt": d / "client.crt", "client_key": d / "client.key",
    }
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["server_crt"])
    server.private_key_pem.write_to_path(files["server_key"])
    client.cert_chain_pems[0].write_to_path(files["client_crt"])
    client.private_key_pem.write_to_path(files["client_key"])
    for p in files.values():
        pathlib.Path(p).chmod(0o644)  # redis-server may run as another user than the test
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def tls_redis(tls_files: dict[str, str]) -> Iterator[tuple[RedisServer, int]]:
    tls_port = free_port()
    server = RedisServer(extra_args=[
        "--tls-port", str(tls_port),
        "--tls-cert-file", tls_files["server_crt"],
        "--tls-key-file", tls_files["server_key"],
        "--tls-ca-cert-file", tls_files["ca"],
        "--tls-auth-clients", "yes",
    ])
    with server:
        yield server, tls_port


def tls_config(port: int, files: dict[str, str], namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "redis_url": f"rediss://127.0.0.1:{port}/0",
        "redis_ssl_keyfile": files["client_key"],
        "redis_ssl_certfile": files["client_crt"],
        "redis_ssl_ca_certs": files["ca"],
        "postgres_url": None,
        "key_prefix": namespace,
        **extra,
    }


async def test_rediss_with_client_certificate(tls_redis: tuple[RedisServer, int], tls_files: dict[str, str],
                                              namespace: str) -> None:
    _, port = tls_redis
    config = tls_config(port, tls_files, namespace, strict=True)
    async with MultiLevelCache(config) as writer, MultiLevelCache(config) as reader:
        await writer.put("secure", {"tls": True})
        assert await reader.lookup("secure") == ({"tls": True}, "L2")


async def test_rediss_without_client_certificate_is_refused(
    tls_redis: tuple[RedisServer, int], tls_files: dict[str, str], namespace: str
) -> None:
    _, port = tls_redis
    config = tls_config(port, tls_files, namespace, strict=True)
    del config["redis_ssl_keyfile"], config["redis_ssl_certfile"]
    with pytest.raises(TierUnavailableError, match="L2"):
        await MultiLevelCache(config).initialize()


@pytest.fixture(scope="module")
def password_redis() -> Iterator[RedisServer]:
    with RedisServer(password="s3cret-pw", extra_args=["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]) as s:
        yield s


async def test_password_and_acl_user_in_the_url(password_redis: RedisServer, namespace: str) -> None:
    port = password_redis.port
    for url in (password_redis.url, f"redis://alice:alice-pw@127.0.0.1:{port}/0"):
        config = {"redis_url": url, "postgres_url": None, "key_prefix": namespace, "strict": True}
        async with MultiLevelCache(config) as a, MultiLevelCache(config) as b:
            await a.put("authed", 1)
            assert await b.lookup("authed") == (1, "L2")


@pytest.mark.parametrize("url", ["redis://:wrong-pw@127.0.0.1:{port}/0", "redis://alice:wrong-pw@127.0.0.1:{port}/0"])
async def test_wrong_password_never_appears_in_errors(password_redis: RedisServer, namespace: str, url: str) -> None:
    config = {"redis_url": url.format(port=password_redis.port), "postgres_url": None, "key_prefix": namespace}
    with pytest.raises(TierUnavailableError) as info:
        await MultiLevelCache({**config, "strict": True}).initialize()
    assert "wrong-pw" not in str(info.value) and "wrong-pw" not in repr(info.value)
    # Not strict: the cache starts and serves from L1; L2 failures are counted misses.
    async with MultiLevelCache(config) as cache:
        await cache.put("k", 1)
        assert await cache.get("k") == 1
        cache.l1_cache.lru.clear()
        assert await cache.get("k") is None
        stats = await cache.l2_cache.get_stats()
        assert stats["errors"] >= 2 and stats["skipped_writes"] == 1
