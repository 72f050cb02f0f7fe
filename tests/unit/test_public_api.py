"""The public surface: one flat, sorted __all__, and imports that point one way."""

from __future__ import annotations

import json
import subprocess
import sys

import cassnb


def modules_after(statement: str) -> set[str]:
    probe = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert cassnb.__all__ == sorted(cassnb.__all__)
    for name in cassnb.__all__:
        assert getattr(cassnb, name) is not None, name
    assert set(cassnb.__all__) <= set(dir(cassnb))


def test_streaming_module_offers_stream_config() -> None:
    from cassnb.streaming import StreamConfig

    assert StreamConfig is cassnb.StreamConfig


def test_importing_cassnb_pulls_in_no_heavy_layer() -> None:
    loaded = modules_after("import cassnb")
    assert not {"pandas", "IPython", "tqdm", "cassandra", "numpy"} & loaded


def test_the_core_pulls_in_neither_pandas_nor_ipython() -> None:
    loaded = modules_after("import cassnb; cassnb.AsyncCluster; cassnb.AsyncStreamingResultSet")
    assert "cassandra" in loaded
    assert not {"pandas", "IPython", "tqdm"} & loaded
    # The fast path's modules load with the first cluster that uses it, not before.
    assert not {m for m in loaded if m.startswith("cassnb._driver.fast")}


def test_local_uses_the_standard_library_only() -> None:
    loaded = modules_after("import cassnb.local")
    assert {m for m in loaded if m.startswith("cassnb")} == {"cassnb", "cassnb.local"}
    assert not {"cassandra", "pandas", "numpy", "IPython"} & loaded
