"""Cutting the token ring, and routing a range like a partition: pure, no node needed."""

from __future__ import annotations

import bisect
import itertools

import pytest
from cassandra.murmur3 import _murmur3, murmur3
from hypothesis import given, settings
from hypothesis import strategies as st

from cassnb import ConfigurationError
from cassnb._scan.ranges import (
    MAX_TOKEN,
    MIN_TOKEN,
    TokenRange,
    ring_ranges,
    routing_key,
    select_cql,
    split_ring,
    table_names,
)

RING_LENGTH = MAX_TOKEN - MIN_TOKEN

tokens = st.integers(MIN_TOKEN, MAX_TOKEN)
#: Any token set: clustered, spread out, or touching the ends of the ring.
rings = st.lists(
    st.one_of(
        tokens, st.sampled_from([MIN_TOKEN, MIN_TOKEN + 1, -1, 0, 1, MAX_TOKEN - 1, MAX_TOKEN])
    ),
    max_size=40,
)


def owner(ring: list[int], token: int) -> int:
    """The ring token whose replicas hold ``token``: the driver's TokenMap.get_replicas rule."""
    point = bisect.bisect_left(ring, token)
    return ring[0] if point == len(ring) else ring[point]


def assert_covers_ring_once(ranges: list[TokenRange]) -> None:
    assert ranges[0].start == MIN_TOKEN
    assert ranges[-1].end == MAX_TOKEN
    for before, after in itertools.pairwise(ranges):
        assert before.end == after.start
    assert all(r.width >= 1 for r in ranges)


@settings(max_examples=400, deadline=None)
@given(ring=rings, splits=st.integers(1, 300))
def test_split_ring_covers_every_token_once_inside_one_ring_range(
    ring: list[int], splits: int
) -> None:
    """Ranges tile (-2**63, 2**63-1] in order; none crosses a ring token; owners as the driver."""
    ranges = split_ring(ring, splits)
    assert_covers_ring_once(ranges)
    ordered = sorted(set(ring))
    for r in ranges:
        inside = bisect.bisect_right(ordered, r.start)
        assert inside == len(ordered) or ordered[inside] >= r.end, (r, ordered[inside])
        if ordered:
            assert r.owner == owner(ordered, r.end)
            # Every token in the range has that owner, not only its end.
            assert owner(ordered, r.start + 1) == r.owner
        else:
            assert r.owner is None


@settings(max_examples=400, deadline=None)
@given(ring=rings, splits=st.integers(1, 300))
def test_split_ring_makes_enough_ranges_of_even_length(ring: list[int], splits: int) -> None:
    """At least ``splits`` ranges and one per ring range; none much longer than its share."""
    base = ring_ranges(ring)
    ranges = split_ring(ring, splits)
    wanted = max(splits, len(base))
    assert wanted <= len(ranges) <= wanted + len(base)
    assert max(r.width for r in ranges) <= 2 * RING_LENGTH // splits + 1


def test_one_token_ring_wraps_around_in_two_ranges() -> None:
    """A single node at token 0: (-2**63, 0] and (0, 2**63-1], both held by token 0."""
    assert ring_ranges([0]) == [TokenRange(MIN_TOKEN, 0, 0), TokenRange(0, MAX_TOKEN, 0)]
    assert split_ring([0], 4) == [
        TokenRange(MIN_TOKEN, MIN_TOKEN // 2, 0),
        TokenRange(MIN_TOKEN // 2, 0, 0),
        TokenRange(0, MAX_TOKEN // 2, 0),
        TokenRange(MAX_TOKEN // 2, MAX_TOKEN, 0),
    ]


def test_three_token_ring_puts_the_wrap_around_pieces_with_the_lowest_token() -> None:
    """The ranges above the highest token and at or below the lowest both go to the lowest."""
    ranges = ring_ranges([-100, 0, 100])
    assert ranges == [
        TokenRange(MIN_TOKEN, -100, -100),
        TokenRange(-100, 0, 0),
        TokenRange(0, 100, 100),
        TokenRange(100, MAX_TOKEN, -100),
    ]


def test_ring_edges_make_no_empty_range() -> None:
    """Tokens at -2**63 and 2**63-1 leave no empty range at either end."""
    assert ring_ranges([MIN_TOKEN, MAX_TOKEN]) == [TokenRange(MIN_TOKEN, MAX_TOKEN, MAX_TOKEN)]
    assert ring_ranges([MAX_TOKEN]) == [TokenRange(MIN_TOKEN, MAX_TOKEN, MAX_TOKEN)]


def test_no_ring_cuts_the_whole_range_evenly() -> None:
    """Without a token map the ring is still cut, with no owner to route to."""
    ranges = split_ring([], 3)
    assert_covers_ring_once(ranges)
    assert len(ranges) == 3
    assert {r.owner for r in ranges} == {None}


def test_narrow_ranges_are_never_cut_below_one_token() -> None:
    """Ranges one token wide stay whole; the rest of the ring takes the pieces."""
    ranges = split_ring([0, 1, 2, 3], 50)
    assert_covers_ring_once(ranges)
    assert len(ranges) >= 50


@pytest.mark.parametrize("splits", [0, -1, 1.5, True, "4"])
def test_bad_split_counts_are_refused(splits: object) -> None:
    with pytest.raises(ConfigurationError, match="splits"):
        split_ring([0], splits)  # type: ignore[arg-type]


@settings(max_examples=2000, deadline=None)
@given(token=tokens)
def test_routing_key_hashes_to_its_token(token: int) -> None:
    """The driver's Murmur3 (compiled and pure Python) hashes the key back to the token."""
    key = routing_key(token)
    assert len(key) == 16
    assert murmur3(key) == token
    assert _murmur3(key) == token


@pytest.mark.parametrize("token", [MIN_TOKEN, MIN_TOKEN + 1, -1, 0, 1, MAX_TOKEN])
def test_routing_key_at_the_ends_of_the_ring(token: int) -> None:
    assert murmur3(routing_key(token)) == token


def test_routing_key_refuses_what_is_not_a_token() -> None:
    with pytest.raises(ValueError, match="not a Murmur3 token"):
        routing_key(MAX_TOKEN + 1)


def test_select_quotes_names_and_appends_conditions() -> None:
    cql = select_cql("Ks", "My Table", ["a", "B"], ["x", 'q"d'], " v > 3 ALLOW FILTERING ")
    assert cql == (
        'SELECT "x", "q""d" FROM "Ks"."My Table" WHERE token("a", "B") > ? '
        'AND token("a", "B") <= ? AND v > 3 ALLOW FILTERING'
    )
    assert select_cql("ks", "t", ["k"], None, None).startswith('SELECT * FROM "ks"."t"')


def test_table_names_take_the_session_keyspace_only_when_needed() -> None:
    assert table_names("t", "ks") == ("ks", "t")
    assert table_names('other."T"', "ks") == ("other", "T")
    with pytest.raises(ConfigurationError, match="names no keyspace"):
        table_names("t", None)
