"""to_dask against the single node: local schedulers, dask.distributed, and no secret in graphs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import cloudpickle
import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from scan_data import ScanData

from cassnb import AsyncSession, ConfigurationError, read_cql
from cassnb._scan.dask import close_connections, partitions_read, prepared_queries, to_dask
from cassnb._scan.ranges import split_ring

USER_ENV = "CASSNB_SCAN_TEST_USER"
PASSWORD_ENV = "CASSNB_SCAN_TEST_PASSWORD"
USER = "scan-user-5b0c1d"
PASSWORD = "scan-secret-9f2e7a41c3"


@pytest.fixture(scope="module", autouse=True)
def credentials() -> Iterator[None]:
    """Credentials in the environment only (the plain node accepts any), and closed sessions."""
    saved = {name: os.environ.get(name) for name in (USER_ENV, PASSWORD_ENV)}
    os.environ[USER_ENV] = USER
    os.environ[PASSWORD_ENV] = PASSWORD
    try:
        yield
    finally:
        close_connections()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def workers() -> Iterator[Client]:
    """Two local worker processes of one thread each, shut down after the module."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def skewed(data: ScanData, splits: int | None = None) -> dd.DataFrame:
    return to_dask(
        "skewed",
        data.contact_points,
        keyspace=data.keyspace,
        port=data.port,
        username_env=USER_ENV,
        password_env=PASSWORD_ENV,
        splits=splits,
    )


def pandas_groupby(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby("p").agg({"x": "sum", "d": "mean", "c": "count"}).sort_index()


async def test_partitions_meta_and_rows_match_read_cql(
    node_session: AsyncSession, node_data: ScanData
) -> None:
    """One partition per range, read_cql's dtypes in meta and data, every row once in order."""
    frame = skewed(node_data, splits=6)
    reference = await read_cql("SELECT * FROM skewed", node_session)
    # Object columns stay objects without changing the user's own dask settings.
    assert dask.config.get("dataframe.convert-string", None) is None
    assert frame.npartitions == len(split_ring(node_data.ring, 6))
    assert frame.dtypes.to_dict() == reference.dtypes.to_dict()
    computed = frame.compute(scheduler="sync")
    pd.testing.assert_frame_equal(computed.reset_index(drop=True), reference)


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
async def test_groupby_agg_equals_pandas_on_local_schedulers(
    node_session: AsyncSession, node_data: ScanData, scheduler: str
) -> None:
    """A groupby-agg computed by dask is the pandas one on the same rows."""
    expected = pandas_groupby(await read_cql("SELECT * FROM skewed", node_session))
    frame = skewed(node_data)
    result = (
        frame.groupby("p")
        .agg({"x": "sum", "d": "mean", "c": "count"})
        .compute(scheduler=scheduler)
        .sort_index()
    )
    pd.testing.assert_frame_equal(result, expected)


def test_groupby_agg_equals_pandas_on_distributed_workers(
    workers: Client, node_data: ScanData
) -> None:
    """Worker processes read every partition themselves; the client reads none."""
    client_reads = partitions_read()
    workers.run(close_connections)
    frame = skewed(node_data)
    result = frame.groupby("p").agg({"x": "sum", "d": "mean", "c": "count"}).compute().sort_index()
    expected = pandas_groupby(frame.compute(scheduler="sync"))
    pd.testing.assert_frame_equal(result, expected)
    per_worker = workers.run(partitions_read)
    assert sum(per_worker.values()) == frame.npartitions
    assert all(reads > 0 for reads in per_worker.values())
    assert partitions_read() == client_reads + frame.npartitions


def test_distributed_count_and_projection(workers: Client, node_data: ScanData) -> None:
    """Row counts and column subsets work on workers; the projection reaches the SELECT."""
    frame = skewed(node_data)
    assert len(frame) == node_data.skewed_rows
    total = int(frame["x"].sum().compute())
    assert total == int(frame.compute(scheduler="sync")["x"].sum())
    frame[["p", "x"]].compute(scheduler="sync")
    assert any(cql.startswith('SELECT "p", "x" FROM') for cql in prepared_queries())


def test_graph_holds_no_secret(node_data: ScanData) -> None:
    """Neither the collection nor its materialised graph carries the user name or password."""
    frame = skewed(node_data)
    graph = dict(frame.__dask_graph__())
    for payload in (cloudpickle.dumps(frame), cloudpickle.dumps(graph), pickle.dumps(graph)):
        assert PASSWORD.encode() not in payload
        assert USER.encode() not in payload
        assert PASSWORD_ENV.encode() in payload


def test_empty_and_single_tables(node_data: ScanData) -> None:
    """An empty table gives an empty frame with its dtypes; one partition gives its rows."""
    empty = to_dask("empty", node_data.contact_points, keyspace=node_data.keyspace)
    computed = empty.compute(scheduler="threads")
    assert computed.empty
    assert computed.dtypes.to_dict() == empty.dtypes.to_dict()
    single = to_dask("single", node_data.contact_points, keyspace=node_data.keyspace, splits=9)
    assert len(single.compute(scheduler="threads")) == node_data.single_rows


def test_missing_credentials_name_the_variable(node_data: ScanData) -> None:
    """An unset variable is named in the error; half a pair of names is refused."""
    with pytest.raises(ConfigurationError, match="CASSNB_SCAN_TEST_UNSET"):
        to_dask(
            "skewed",
            node_data.contact_points,
            keyspace=node_data.keyspace,
            username_env=USER_ENV,
            password_env="CASSNB_SCAN_TEST_UNSET",
        )
    with pytest.raises(ConfigurationError, match="both"):
        to_dask(
            "skewed", node_data.contact_points, keyspace=node_data.keyspace, username_env=USER_ENV
        )


def test_dask_stays_out_of_cassnb_until_asked() -> None:
    """Importing cassnb, its frames and read_table loads no dask."""
    probe = "import sys, cassnb, cassnb._scan.ranges, cassnb._frames; print('dask' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_worker_process_exits_cleanly(node_data: ScanData) -> None:
    """A process that read partitions closes its session at exit, promptly and quietly."""
    script = textwrap.dedent(
        f"""
        import dask
        from cassnb._scan.dask import to_dask
        frame = to_dask("single", {node_data.contact_points!r}, keyspace={node_data.keyspace!r})
        print(len(frame.compute(scheduler="threads")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(node_data.single_rows)
    assert "Traceback" not in result.stderr
