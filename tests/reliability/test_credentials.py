"""Security: wrong passwords, missing permissions, TLS-only nodes, and the password kept secret."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _reliability import report

from cassnb import (
    AsyncCluster,
    AsyncSession,
    AuthenticationError,
    ConnectionError,
    QueryError,
    StreamConfig,
)
from cassnb.local import ClusterInfo

KEYSPACE = "cassnb_rel_security"
READER = "cassnb_rel_reader"
#: Distinctive, so that finding it anywhere means it leaked.
READER_PASSWORD = "Rel-Reader-Pw-8d1f3c"
WRONG_PASSWORD = "Rel-Wrong-Pw-5be290"
SECRETS = (READER_PASSWORD, WRONG_PASSWORD)
#: Bound on how long a refused connection may take to be reported.
REFUSED_WITHIN_S = 10.0
_HERE = Path(__file__).parent


async def _set_up_reader(node: ClusterInfo) -> None:
    user, password = node.credentials or ("", "")
    cluster = AsyncCluster.create_with_auth(
        node.contact_points, username=user, password=password, port=node.port
    )
    async with cluster, cluster.connect() as session:
        for statement in [
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.allowed (k int PRIMARY KEY, v text)",
            f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.secret (k int PRIMARY KEY, v text)",
            f"INSERT INTO {KEYSPACE}.allowed (k, v) VALUES (1, 'visible')",
            f"INSERT INTO {KEYSPACE}.secret (k, v) VALUES (1, 'hidden')",
            # Made afresh, so that it has exactly this password and this one grant.
            f"DROP ROLE IF EXISTS {READER}",
            f"CREATE ROLE {READER} WITH PASSWORD = '{READER_PASSWORD}' AND LOGIN = true",
            f"GRANT SELECT ON TABLE {KEYSPACE}.allowed TO {READER}",
        ]:
            await session.execute(statement, timeout=60)


@pytest.fixture(scope="module")
def reader_node(auth_node: ClusterInfo) -> ClusterInfo:
    """The password node, with a role that may only read one table."""
    asyncio.run(_set_up_reader(auth_node))
    return auth_node


@pytest.fixture
async def reader(reader_node: ClusterInfo) -> AsyncIterator[AsyncSession]:
    """A session logged in as the reading role."""
    cluster = AsyncCluster.create_with_auth(
        reader_node.contact_points, username=READER, password=READER_PASSWORD
    )
    async with cluster, cluster.connect() as session:
        yield session


@pytest.fixture
def every_log_record(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger at DEBUG, the driver's included."""
    for name in ("", "cassandra", "cassnb"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _chain(exc: BaseException | None) -> str:
    """The text of an exception and of everything it was raised from."""
    parts = []
    while exc is not None:
        parts += [str(exc), repr(exc), repr(getattr(exc, "errors", None))]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


async def test_a_wrong_password_is_an_authentication_error(reader_node: ClusterInfo) -> None:
    cluster = AsyncCluster.create_with_auth(
        reader_node.contact_points, username=READER, password=WRONG_PASSWORD
    )
    began = time.monotonic()
    async with cluster:
        with pytest.raises(AuthenticationError) as caught:
            await asyncio.wait_for(cluster.connect(), REFUSED_WITHIN_S)
    elapsed = time.monotonic() - began
    message = str(caught.value)
    report("wrong password", seconds=elapsed, message=message)
    assert READER in message and "password" in message.lower()
    assert _leaks(_chain(caught.value)) == []


async def test_a_role_reads_only_what_it_was_granted(reader: AsyncSession) -> None:
    allowed = await reader.execute(f"SELECT v FROM {KEYSPACE}.allowed WHERE k = 1")
    assert [row.v for row in allowed] == ["visible"]
    with pytest.raises(QueryError) as select_secret:
        await reader.execute(f"SELECT v FROM {KEYSPACE}.secret WHERE k = 1")
    with pytest.raises(QueryError) as write_allowed:
        await reader.execute(f"INSERT INTO {KEYSPACE}.allowed (k, v) VALUES (2, 'no')")
    stream = await reader.execute_stream(f"SELECT v FROM {KEYSPACE}.secret")
    async with stream:
        with pytest.raises(QueryError) as stream_secret:
            await stream.__anext__()
    report(
        "missing permission",
        select=str(select_secret.value),
        insert=str(write_allowed.value),
        stream=str(stream_secret.value),
    )
    for caught in (select_secret, write_allowed, stream_secret):
        assert "permission" in str(caught.value).lower()
    # The session is still good for what it may do.
    assert (await reader.execute(f"SELECT v FROM {KEYSPACE}.allowed WHERE k = 1")).one()


async def test_a_tls_only_node_refuses_plain_clients(tls_node: ClusterInfo) -> None:
    began = time.monotonic()
    async with AsyncCluster(tls_node.contact_points, connect_timeout=5) as cluster:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(cluster.connect(), REFUSED_WITHIN_S)
    plain_s = time.monotonic() - began

    # TLS, but without trusting the node's CA: the certificate does not verify.
    began = time.monotonic()
    untrusting = ssl.create_default_context()
    untrusting.check_hostname = False
    async with AsyncCluster(
        tls_node.contact_points, ssl_context=untrusting, connect_timeout=5
    ) as cluster:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(cluster.connect(), REFUSED_WITHIN_S)
    unverified_s = time.monotonic() - began
    report("TLS-only node", plain_refused_s=plain_s, unknown_ca_refused_s=unverified_s)


async def test_a_tls_only_node_accepts_a_verified_client(tls_node: ClusterInfo) -> None:
    assert tls_node.ca_cert is not None
    context = ssl.create_default_context(cafile=tls_node.ca_cert)
    address = tls_node.contact_points[0]
    # The node's certificate names its address, so the host name is checked as well.
    async with (
        AsyncCluster(
            tls_node.contact_points,
            ssl_context=context,
            ssl_options={"server_hostname": address},
        ) as cluster,
        cluster.connect() as session,
    ):
        row = (await session.execute("SELECT release_version FROM system.local")).one()
    assert row is not None
    report("verified TLS client", server=row.release_version, verified_host=address)


async def test_the_password_never_shows(
    reader_node: ClusterInfo, every_log_record: pytest.LogCaptureFixture
) -> None:
    cluster = AsyncCluster.create_with_auth(
        reader_node.contact_points, username=READER, password=READER_PASSWORD
    )
    shown: list[str] = []
    async with cluster:
        session = await cluster.connect()
        result = await session.execute(f"SELECT v FROM {KEYSPACE}.allowed")
        stream = await session.execute_stream(
            f"SELECT v FROM {KEYSPACE}.allowed", stream_config=StreamConfig(fetch_size=1)
        )
        async with stream:
            rows = [row async for row in stream]
        provider = cluster._driver_kwargs["auth_provider"]
        for thing in (cluster, session, result, stream, provider, *rows):
            shown += [repr(thing), str(thing)]
        with pytest.raises(QueryError) as refused:
            await session.execute(f"SELECT v FROM {KEYSPACE}.secret")
        shown.append(_chain(refused.value))
        await session.close()
    wrong = AsyncCluster.create_with_auth(
        reader_node.contact_points, username=READER, password=WRONG_PASSWORD
    )
    async with wrong:
        with pytest.raises(AuthenticationError) as denied:
            await wrong.connect()
        shown += [repr(wrong), str(wrong), _chain(denied.value)]

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [formatter.format(record) for record in every_log_record.records]
    report(
        "password in repr, errors and logs",
        texts_checked=len(shown),
        log_records_checked=len(logged),
        driver_records=sum(r.name.startswith("cassandra") for r in every_log_record.records),
    )
    assert _leaks("\n".join(shown)) == []
    assert _leaks("\n".join(logged)) == []
    assert len(logged) > 10


def test_the_password_never_shows_in_cell_output(reader_node: ClusterInfo) -> None:
    # IPython runs in a child process, so that its shell stays out of this test session.
    env = {
        **os.environ,
        "CASSNB_SECRET_ADDRESS": reader_node.contact_points[0],
        "CASSNB_SECRET_USER": READER,
        "CASSNB_SECRET_KEYSPACE": KEYSPACE,
        "CASSNB_REL_PASSWORD": READER_PASSWORD,
        "CASSNB_REL_WRONG_PASSWORD": WRONG_PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, str(_HERE / "_magic_secrets.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5_000:] + done.stderr[-5_000:]
    assert _leaks(done.stdout + done.stderr) == []
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    report("password in %%cql output", **figures)
    assert figures["cells"] >= 6
    assert figures["failed_cells"] == 3  # the two refused reads and the wrong password
