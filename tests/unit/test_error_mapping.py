"""The mapping table, on driver exceptions built as the driver builds them.

Server read and write timeouts cannot be provoked on demand on a healthy single node, so
their mapping is checked here; every other failure is also provoked for real in
tests/core/test_errors.py.
"""

from __future__ import annotations

import logging

import pytest
from cassandra import (
    AuthenticationFailed,
    ConsistencyLevel,
    InvalidRequest,
    OperationTimedOut,
    ReadTimeout,
    Unauthorized,
    Unavailable,
    WriteTimeout,
    WriteType,
)
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.protocol import OverloadedErrorMessage, SyntaxException

from cassnb._core.errors import (
    AuthenticationError,
    CassandraError,
    ConnectionError,
    QueryError,
    QueryTimeout,
    driver_errors,
    raised_by_us,
    translate,
)


def test_server_timeouts_are_query_timeouts() -> None:
    read = ReadTimeout(
        'Error from server: code=1200 [Coordinator node timed out] message="Operation timed out"',
        consistency=ConsistencyLevel.ONE,
        required_responses=1,
        received_responses=0,
        data_retrieved=False,
    )
    write = WriteTimeout("Error from server: code=1100", consistency=1, write_type=WriteType.SIMPLE)
    for driver_error in (read, write):
        ours = translate(driver_error)
        assert isinstance(ours, QueryTimeout)
        assert ours.__cause__ is driver_error
    assert "Operation timed out" in str(translate(read))


def test_client_timeout_is_a_query_timeout() -> None:
    ours = translate(OperationTimedOut({"127.0.0.1:9042": "Client request timeout"}))
    assert isinstance(ours, QueryTimeout)
    assert "client-side timeout" in str(ours)


def test_no_host_available_with_one_server_side_reason() -> None:
    unavailable = Unavailable("Cannot achieve consistency level THREE", consistency=10)
    ours = translate(NoHostAvailable("Unable", {"h1": unavailable, "h2": unavailable}))
    assert type(ours) is QueryError
    assert "Cannot achieve consistency level THREE" in str(ours)

    denied = AuthenticationFailed("Provided username cassandra and/or password are incorrect")
    ours = translate(NoHostAvailable("Unable", {"h1": denied}))
    assert type(ours) is AuthenticationError

    invalid = InvalidRequest("Keyspace 'nope' does not exist")
    assert type(translate(NoHostAvailable("Unable", {"h1": invalid}))) is QueryError


def test_no_host_available_for_connection_reasons() -> None:
    refused = ConnectionException("Connection refused")
    mixed = {"h1": refused, "h2": Unauthorized("no")}
    for errors in ({"h1": refused}, mixed, {}, ["h1"]):
        ours = translate(NoHostAvailable("Unable", errors))
        assert type(ours) is ConnectionError, errors
    assert "h1: Connection refused" in str(translate(NoHostAvailable("Unable", {"h1": refused})))
    assert "no node is up" in str(translate(NoHostAvailable("Unable", {})))


def test_server_error_messages_are_kept() -> None:
    syntax = SyntaxException(code=0x2000, message="line 1:0 no viable alternative", info=None)
    ours = translate(syntax)
    assert type(ours) is QueryError
    assert str(ours).endswith('message="line 1:0 no viable alternative"')
    overloaded = OverloadedErrorMessage(code=0x1001, message="busy", info=None)
    assert type(translate(overloaded)) is ConnectionError


def test_driver_errors_maps_driver_exceptions_only() -> None:
    with pytest.raises(QueryError) as caught, driver_errors("reading"):
        raise Unauthorized("no SELECT permission")
    assert str(caught.value).startswith("reading: ")
    with pytest.raises(KeyError), driver_errors():
        raise KeyError("a bug, not a driver failure")
    ours = QueryError("already ours")
    with pytest.raises(QueryError) as caught, driver_errors():
        raise ours
    assert caught.value is ours
    assert isinstance(translate(RuntimeError("odd")), CassandraError)


def test_duplicate_driver_logs_are_demoted_in_our_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver_log = logging.getLogger("cassandra.cluster")
    caplog.set_level(logging.WARNING)
    with raised_by_us():
        driver_log.warning("[control connection] Error connecting to %s:", "h1")
    driver_log.warning("[control connection] Error connecting to %s:", "h2")
    logging.getLogger("cassandra.protocol").warning("Server warning: %s", "tombstones")
    assert [record.getMessage() for record in caplog.records] == [
        "[control connection] Error connecting to h2:"
    ]
