"""Without the compiled decoder: one log line, the pure-Python path, the same frames.

Each way runs in its own process here, as a user without a C compiler would run it.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _native_node import KEYSPACE, Remote, assert_same_frames

from cassnb import local
from cassnb._frames import columnar as _columnar
from cassnb._frames.read import read_cql

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, pickle, sys

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append([record.name, record.levelname, record.getMessage()])

    logging.getLogger("cassnb").addHandler(Keep())
    logging.getLogger("cassnb").setLevel(logging.DEBUG)
    if sys.argv[3] == "missing":
        sys.modules["cassnb._frames._native.columnar"] = None  # as if it was never built

    from cassnb import AsyncCluster
    from cassnb._frames import columnar as _columnar
    from cassnb._frames import read as _frames
    from cassnb._frames.read import read_cql

    async def main():
        async with AsyncCluster([sys.argv[1]], port=int(sys.argv[2])) as cluster:
            async with cluster.connect(sys.argv[4]) as session:
                frames = [
                    await read_cql(
                        "SELECT * FROM types WHERE p = 0", session, fetch_size=2,
                        dtype_backend=backend,
                    )
                    for backend in ("numpy_nullable", "pyarrow")
                ]
                stream = await session.execute_stream("SELECT k FROM types WHERE p = 0")
                async with stream:
                    rows = [row async for row in stream]
                return frames, stream, rows

    frames, stream, rows = asyncio.run(main())
    # A user type's namedtuple class is made at run time and cannot be pickled.
    frames[0] = frames[0].drop(columns="c_udt")
    with open(sys.argv[5], "wb") as out:
        pickle.dump(frames, out)
    print(json.dumps({
        "records": records,
        "native": _columnar.native_available(),
        "decoder": type(_frames.page_decoder).__name__,
        "keys": [row.k for row in rows],
    }))
    """
)


def _run_child(node: local.ClusterInfo, mode: str, env: dict[str, str], out: Path) -> Any:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            node.contact_points[0],
            str(node.port),
            mode,
            KEYSPACE,
            str(out),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cassnb_lines(report: Any) -> list[list[str]]:
    return [record for record in report["records"] if record[0] == "cassnb"]


@pytest.mark.skipif(not _columnar.native_available(), reason="the compiled decoder is not built")
@pytest.mark.parametrize(
    ("mode", "env", "level", "says"),
    [
        ("disabled", {"CASSNB_NO_NATIVE": "1"}, "INFO", "disabled by CASSNB_NO_NATIVE"),
        ("missing", {}, "WARNING", "not available"),
    ],
)
def test_python_path_in_its_own_process(
    node: local.ClusterInfo,
    remote: Remote,
    reference: None,
    tmp_path: Path,
    mode: str,
    env: dict[str, str],
    level: str,
    says: str,
) -> None:
    """One log line says why; frames equal the native ones read in this process."""
    out = tmp_path / "frames.pickle"
    report = _run_child(node, mode, env, out)
    assert report["native"] is False
    assert report["decoder"] == "ColumnwiseDecoder"
    assert report["keys"] == [0, 1, 2, 3, 4]
    (line,) = _cassnb_lines(report)
    assert line[1] == level
    assert says in line[2]
    with out.open("rb") as frames_file:
        python_frames = pickle.load(frames_file)
    for backend, python in zip(("numpy_nullable", "pyarrow"), python_frames, strict=True):
        native = remote.run(
            read_cql(
                "SELECT * FROM types WHERE p = 0",
                remote.session,
                fetch_size=2,
                dtype_backend=backend,  # type: ignore[arg-type]
            )
        )
        if backend == "numpy_nullable":
            native = native.drop(columns="c_udt")
        assert_same_frames(native, python)


@pytest.mark.skipif(not _columnar.native_available(), reason="the compiled decoder is not built")
def test_native_path_logs_nothing(node: local.ClusterInfo, reference: None, tmp_path: Path) -> None:
    """With the decoder built, cassnb says nothing about it."""
    report = _run_child(node, "native", {"CASSNB_NO_NATIVE": ""}, tmp_path / "frames.pickle")
    assert report["native"] is True
    assert report["decoder"] == "NativeDecoder"
    assert _cassnb_lines(report) == []
