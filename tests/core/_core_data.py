"""Names shared by the core tests and their fixtures: the keyspace and its tables."""

from __future__ import annotations

from dataclasses import dataclass

KEYSPACE = "cassnb_test"

#: Rows in the paging table, all in one partition: a few thousand, read in small pages.
PAGED_ROWS = 3_000
#: Rows in the large table: 100 partitions of 1,000 rows.
BIG_PARTITIONS = 100
BIG_ROWS_PER_PARTITION = 1_000
BIG_ROWS = BIG_PARTITIONS * BIG_ROWS_PER_PARTITION

SCHEMA = [
    f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
    "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.paged (p int, c int, v text, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.big (p int, c int, v text, PRIMARY KEY (p, c))",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.users "
    "(id uuid PRIMARY KEY, name text, email text, created_at timestamp)",
    f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k text PRIMARY KEY, v int)",
]


@dataclass(frozen=True)
class Data:
    """Where the shared test data lives."""

    contact_points: list[str]
    port: int
    keyspace: str = KEYSPACE
    paged_rows: int = PAGED_ROWS
    big_rows: int = BIG_ROWS
