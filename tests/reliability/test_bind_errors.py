"""Arguments the driver cannot use end in cassnb errors, never in a bare Python exception."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _fuzz import SCHEMA, TYPED_INSERT
from _keyspaces import schema_session

from cassnb import AsyncSession, ConfigurationError, QueryError, StreamConfig
from cassnb.local import ClusterInfo


@pytest.fixture
async def session(rel_node: ClusterInfo) -> AsyncIterator[AsyncSession]:
    """A session with the fuzz keyspace and its typed table."""
    async with schema_session(rel_node, SCHEMA) as session:
        yield session


@pytest.mark.parametrize("parameters", [object(), 5, 1.5])
async def test_parameters_that_are_no_sequence_or_mapping_are_refused(
    session: AsyncSession, parameters: object
) -> None:
    with pytest.raises(ConfigurationError, match="sequence or a mapping"):
        await session.execute("SELECT release_version FROM system.local", parameters)  # type: ignore[arg-type]


async def test_a_value_the_serializer_rejects_is_a_query_error(session: AsyncSession) -> None:
    typed = await session.prepare(TYPED_INSERT)
    with pytest.raises(QueryError, match="could not bind"):
        await session.execute(typed, [0, 0, 0])  # an int for the text column


async def test_a_page_size_beyond_the_protocol_is_a_configuration_error(
    session: AsyncSession,
) -> None:
    # Unchecked, the driver fails to encode it and reports the node as unable to serve.
    too_big = 2**31
    with pytest.raises(ConfigurationError, match="fetch_size"):
        StreamConfig(fetch_size=too_big)
    with pytest.raises(ConfigurationError, match="fetch_size"):
        await session.execute_page("SELECT * FROM system.local", fetch_size=too_big)
    page = await session.execute_page("SELECT * FROM system.local", fetch_size=too_big - 1)
    assert len(page) == 1
