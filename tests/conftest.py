"""Servers for the test suite.

Session-scoped, started lazily on first use and stopped at the end:

* ``redis_url`` / ``postgres_url``: the URL to connect to.  Taken from
  ``MLCACHE_TEST_REDIS_URL`` / ``MLCACHE_TEST_POSTGRES_URL`` when set (an
  external server), else a throwaway local server on a free loopback port.
* ``redis_server`` / ``postgres_server``: the local server object, or None when
  the URL came from the environment.
* ``owned_redis_server`` / ``owned_postgres_server``: the same server, for tests
  that pause or restart it; they *fail* with a clear message (never skip) when
  an external URL is in use, since we cannot pause a server we don't own.
* ``fresh_redis_server`` / ``fresh_postgres_server``: a private server per test
  (function scope), for fault tests that must not disturb the shared one.

Nothing is skipped for lack of a server: if one cannot be started, the fixture
raises and the tests that need it error out, so a broken machine is never
mistaken for a green run.

Only ``mlcache.localservers`` is imported from the project (stdlib only), so
this file works whatever state the rest of the package is in.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mlcache.localservers import PostgresServer, RedisServer

# The cache's own fixtures (namespaces, direct clients) live beside this file.
pytest_plugins = ["cachefixtures"]

REDIS_ENV = "MLCACHE_TEST_REDIS_URL"
POSTGRES_ENV = "MLCACHE_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    if os.environ.get(REDIS_ENV):
        yield None
        return
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    if redis_server is None:
        return os.environ[REDIS_ENV]
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    if os.environ.get(POSTGRES_ENV):
        yield None
        return
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer | None) -> str:
    if postgres_server is None:
        return os.environ[POSTGRES_ENV]
    return postgres_server.url


@pytest.fixture
def owned_redis_server(redis_server: RedisServer | None) -> Iterator[RedisServer]:
    if redis_server is None:
        pytest.fail(
            f"this test pauses/stops the Redis server, which it cannot do to the external "
            f"server given by {REDIS_ENV}; unset {REDIS_ENV} to run it against a local server"
        )
    # A test that paused the server and then failed must not leave it paused
    # for the rest of the session.
    yield redis_server
    if redis_server.running:
        redis_server.resume()


@pytest.fixture
def owned_postgres_server(postgres_server: PostgresServer | None) -> PostgresServer:
    if postgres_server is None:
        pytest.fail(
            f"this test restarts the PostgreSQL server, which it cannot do to the external "
            f"server given by {POSTGRES_ENV}; unset {POSTGRES_ENV} to run it against a local server"
        )
    return postgres_server


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def fresh_postgres_server() -> Iterator[PostgresServer]:
    # About a second to initdb and start: use it only where the shared one won't do.
    with PostgresServer() as server:
        yield server
