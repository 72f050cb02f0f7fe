"""Driver failures arrive as cassnb errors, with the server's message and the cause kept."""

from __future__ import annotations

import builtins
import uuid

import pytest
from _core_data import KEYSPACE
from cassandra import InvalidRequest, OperationTimedOut, Unauthorized
from cassandra.cluster import NoHostAvailable
from cassandra.protocol import SyntaxException

import cassnb
from cassnb import (
    AsyncCluster,
    AsyncSession,
    AuthenticationError,
    CassandraError,
    ConfigurationError,
    ConnectionError,
    QueryError,
    QueryTimeout,
)
from cassnb.local import ClusterInfo

WRONG_PASSWORD = "not-the-password-7731"
NOBODY, NOBODY_PASSWORD = "cassnb_nobody", "nobody-secret-4409"


def test_no_error_subclasses_a_builtin_but_exception() -> None:
    for name in (
        "CassandraError",
        "ConnectionError",
        "AuthenticationError",
        "QueryError",
        "QueryTimeout",
        "ConfigurationError",
    ):
        error = getattr(cassnb, name)
        assert issubclass(error, CassandraError)
        builtin_bases = {base for base in error.__mro__ if base.__module__ == "builtins"}
        assert builtin_bases == {Exception, BaseException, object}, name
    assert not issubclass(ConnectionError, builtins.ConnectionError)
    assert issubclass(AuthenticationError, ConnectionError)
    assert issubclass(QueryTimeout, QueryError)


async def test_syntax_error(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match="no viable alternative") as caught:
        await session.execute("SELEC * FROM kv")
    assert isinstance(caught.value.__cause__, SyntaxException)


async def test_syntax_error_when_preparing(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match="Syntax error"):
        await session.prepare("SELEC * FROM kv WHERE k = ?")


async def test_unknown_table(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match="no_such_table") as caught:
        await session.execute("SELECT * FROM no_such_table")
    assert isinstance(caught.value.__cause__, InvalidRequest)


async def test_unknown_keyspace_in_a_query(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match="no_such_keyspace"):
        await session.execute("SELECT * FROM no_such_keyspace.kv")


async def test_unknown_keyspace_at_connect(cluster: AsyncCluster) -> None:
    with pytest.raises(QueryError, match="no_such_keyspace"):
        await cluster.connect("no_such_keyspace")
    async with cluster.connect(KEYSPACE) as session:
        assert (await session.execute("SELECT * FROM kv LIMIT 1")) is not None


async def test_unknown_keyspace_in_set_keyspace(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match="no_such_keyspace"):
        await session.set_keyspace("no_such_keyspace")
    assert session.keyspace == KEYSPACE


async def test_consistency_the_node_cannot_meet(session: AsyncSession) -> None:
    with pytest.raises(QueryError, match="Cannot achieve consistency level THREE") as caught:
        await session.execute("SELECT * FROM kv LIMIT 1", consistency="THREE")
    assert not isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value.__cause__, NoHostAvailable)


async def test_wrongly_typed_bind_value(session: AsyncSession) -> None:
    insert = await session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    with pytest.raises(QueryError, match=r'column "v".*Int32Type') as caught:
        await session.execute(insert, ["key", "not a number"])
    assert isinstance(caught.value.__cause__, TypeError)
    with pytest.raises(QueryError, match="Too many arguments"):
        await session.execute(insert, ["key", 1, 2])


async def test_unreachable_node() -> None:
    cluster = AsyncCluster(["127.0.0.9"], connect_timeout=0.5)
    try:
        with pytest.raises(ConnectionError, match=r"127\.0\.0\.9") as caught:
            await cluster.connect()
    finally:
        await cluster.shutdown()
    assert not isinstance(caught.value, AuthenticationError)
    assert isinstance(caught.value.__cause__, NoHostAvailable)


async def test_client_timeout(session: AsyncSession) -> None:
    with pytest.raises(QueryTimeout, match="timeout") as caught:
        await session.execute("SELECT * FROM paged WHERE p = 0", timeout=0.0001)
    assert isinstance(caught.value.__cause__, OperationTimedOut)
    assert len(await session.execute("SELECT * FROM kv LIMIT 1")) <= 1


async def test_bad_arguments_are_configuration_errors(session: AsyncSession) -> None:
    with pytest.raises(ConfigurationError, match="consistency"):
        await session.execute("SELECT * FROM kv", consistency="MOSTLY")
    with pytest.raises(ConfigurationError, match="timeout"):
        await session.execute("SELECT * FROM kv", timeout=-1)
    with pytest.raises(ConfigurationError, match="query must be"):
        await session.execute(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="unknown option"):
        AsyncCluster(["127.0.0.1"], no_such_option=True)


async def test_bad_credentials(auth_node: ClusterInfo) -> None:
    cluster = AsyncCluster.create_with_auth(
        contact_points=auth_node.contact_points, username="cassandra", password=WRONG_PASSWORD
    )
    assert WRONG_PASSWORD not in repr(cluster)
    try:
        with pytest.raises(AuthenticationError) as caught:
            await cluster.connect()
    finally:
        await cluster.shutdown()
    error = caught.value
    assert "incorrect" in str(error)
    cause = error.__cause__
    assert cause is not None
    for text in (str(error), repr(error), str(cause), repr(cause), repr(cluster)):
        assert WRONG_PASSWORD not in text


async def _create_role_without_permissions(auth_node: ClusterInfo) -> None:
    assert auth_node.credentials is not None
    user, password = auth_node.credentials
    admin = AsyncCluster.create_with_auth(
        contact_points=auth_node.contact_points, username=user, password=password
    )
    async with admin, admin.connect() as session:
        await session.execute(
            "CREATE KEYSPACE IF NOT EXISTS cassnb_auth_test WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        await session.execute(
            "CREATE TABLE IF NOT EXISTS cassnb_auth_test.secrets (k int PRIMARY KEY)"
        )
        await session.execute(
            f"CREATE ROLE IF NOT EXISTS {NOBODY} "
            f"WITH PASSWORD = '{NOBODY_PASSWORD}' AND LOGIN = true"
        )


async def test_unauthorized(auth_node: ClusterInfo) -> None:
    await _create_role_without_permissions(auth_node)
    cluster = AsyncCluster.create_with_auth(
        contact_points=auth_node.contact_points, username=NOBODY, password=NOBODY_PASSWORD
    )
    async with cluster, cluster.connect() as session:
        with pytest.raises(QueryError, match="permission") as caught:
            await session.execute("SELECT * FROM cassnb_auth_test.secrets")
        assert isinstance(caught.value.__cause__, Unauthorized)
        with pytest.raises(QueryError, match="permission"):
            await session.execute("INSERT INTO cassnb_auth_test.secrets (k) VALUES (1)")
        # The session stays usable for what the role may do.
        assert (await session.execute("SELECT key FROM system.local")).one() is not None


async def test_a_string_where_a_uuid_belongs_is_a_bind_error(session: AsyncSession) -> None:
    by_id = await session.prepare("SELECT * FROM users WHERE id = ?")
    with pytest.raises(QueryError, match="could not bind"):
        await session.execute(by_id, [str(uuid.uuid4())])
