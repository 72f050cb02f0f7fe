"""Fixtures shared by every suite: real Cassandra nodes started (or reused) by cassnb.local.

A fixture reuses a node that is already running with the same options, starts one
otherwise, and at the end of the test session stops only what it started.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from cassnb import local

# Each configuration lives on its own addresses, so the plain node, the password node and
# the TLS node can run side by side (three JVMs at most).
PLAIN = ("default", local.Options(nodes=1, address="127.0.0.1"))
AUTH = ("auth", local.Options(nodes=1, auth=True, address="127.0.0.4"))
TLS = ("tls", local.Options(nodes=1, tls=True, address="127.0.0.5"))
THREE = ("trio", local.Options(nodes=3, address="127.0.0.11"))


def _run(name: str, options: local.Options) -> Iterator[local.ClusterInfo]:
    cluster, started = local.start(options, name)
    try:
        yield cluster
    finally:
        if started:
            local.stop(name, quiet=True)


@pytest.fixture(scope="session")
def node() -> Iterator[local.ClusterInfo]:
    """A single plain node on 127.0.0.1:9042."""
    yield from _run(*PLAIN)


@pytest.fixture(scope="session")
def auth_node() -> Iterator[local.ClusterInfo]:
    """A single node on 127.0.0.4 that requires a password (superuser cassandra/cassandra)."""
    yield from _run(*AUTH)


@pytest.fixture(scope="session")
def tls_node() -> Iterator[local.ClusterInfo]:
    """A single node on 127.0.0.5 that only accepts TLS clients; `.ca_cert` is its CA."""
    yield from _run(*TLS)


@pytest.fixture(scope="session")
def three_nodes() -> Iterator[local.ClusterInfo]:
    """Three nodes on 127.0.0.11-13, for the `cluster3` session (run apart from the others)."""
    yield from _run(*THREE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With the fast path switched off, fail a run that imported any of its modules."""
    from cassnb._driver import fast_path, switched_off

    if not switched_off():
        return
    status = fast_path()
    loaded = sorted(name for name in sys.modules if name.startswith("cassnb._driver.fast"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if loaded:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        message = f"{status}, yet the run imported: {', '.join(loaded)}"
    else:
        message = f"{status}: none of the fast path's modules was imported"
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(message, red=bool(loaded), green=not loaded)
