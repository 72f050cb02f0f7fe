"""start() reuses a cluster another process is still starting, once it answers CQL."""

from __future__ import annotations

from typing import Any

import pytest

from cassnb import local


def _cluster(version: str | None) -> local.ClusterInfo:
    cluster = local._layout("reused", local.Options(nodes=3, address="127.0.0.41"))
    for node in cluster.nodes:
        node.pid, node.alive, node.version = 4242, True, version
    return cluster


@pytest.mark.parametrize(("version", "waits"), [(None, True), ("5.0.9", False)])
def test_a_running_cluster_is_reused_once_it_answers(
    monkeypatch: pytest.MonkeyPatch, version: str | None, waits: bool
) -> None:
    waited: list[Any] = []
    monkeypatch.setattr(local, "_load", lambda name: _cluster(None))
    monkeypatch.setattr(local, "status", lambda name: _cluster(version))
    monkeypatch.setattr(local, "_wait_ready", lambda *args: waited.append(args))
    monkeypatch.setattr(local, "_launch", lambda *args: pytest.fail("nothing is launched"))

    cluster, started = local.start(local.Options(nodes=3, address="127.0.0.41"), "reused")

    assert started is False
    assert len(cluster.nodes) == 3
    assert bool(waited) is waits
    if waits:
        assert waited[0][1] == []  # nothing launched here: no process of ours to watch
