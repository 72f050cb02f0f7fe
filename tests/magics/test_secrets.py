"""Passwords and TLS: a password reaches the server and nothing else.

A role with a distinctive password is made on the password node, so that searching for
the password in outputs, log records and a saved notebook means something (the
superuser's password is also its name).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cassnb import AsyncCluster
from cassnb.local import ClusterInfo

from ._magics_kernel import EXTENSION, Kernel

ROLE = "cassnb_magic_tester"
PASSWORD = "Mg-7d1f3a9c-Pw"
WRONG = "Wr-0b5e2c88-Pw"
ENV = {"CASSNB_TEST_PASSWORD": PASSWORD, "CASSNB_WRONG_PASSWORD": WRONG}


async def _make_role(node: ClusterInfo) -> None:
    user, superpassword = node.credentials or ("cassandra", "cassandra")
    cluster = AsyncCluster.create_with_auth(
        node.contact_points, username=user, password=superpassword
    )
    async with cluster, cluster.connect() as session:
        await session.execute(
            f"CREATE ROLE IF NOT EXISTS {ROLE} WITH PASSWORD = '{PASSWORD}' AND LOGIN = true"
        )


@pytest.fixture(scope="module")
def role(auth_node: ClusterInfo) -> str:
    """A login role on the password node whose password is PASSWORD."""
    asyncio.run(_make_role(auth_node))
    return auth_node.contact_points[0]


@pytest.fixture
def logged_kernel(role: str, tmp_path: Path) -> Iterator[tuple[Kernel, Path]]:
    """A kernel whose every log record, at every level and from every logger, goes to a file."""
    log = tmp_path / "all.log"
    started = Kernel(env=ENV)
    try:
        started.ok(
            "import logging\n"
            f"handler = logging.FileHandler({str(log)!r})\n"
            "handler.setFormatter(logging.Formatter('%(name)s %(levelname)s %(message)s'))\n"
            "logging.getLogger().addHandler(handler)\n"
            "logging.getLogger().setLevel(logging.DEBUG)\n"
            f"%load_ext {EXTENSION}"
        )
        yield started, log
    finally:
        started.close()


def test_password_from_the_environment_is_never_shown_or_logged(
    logged_kernel: tuple[Kernel, Path], role: str
) -> None:
    kernel, log = logged_kernel
    replies = [
        kernel.ok(f"%cql_connect {role} --user {ROLE} --password-env CASSNB_TEST_PASSWORD"),
        kernel.ok("%%cql\nSELECT cluster_name, release_version FROM system.local"),
        kernel.ok("%cql_connect --list"),
        kernel.ok(
            "import cassnb\nsession = cassnb.get_default_session()\n"
            "print(repr(session), repr(session.cluster))\n"
            "print(vars(session.cluster))"
        ),
        kernel.run(f"%cql_connect {role} --user {ROLE} --password-env CASSNB_WRONG_PASSWORD"),
        kernel.run(f"%cql_connect cassandra://{ROLE}:{PASSWORD}@{role}/system"),
    ]
    assert "1 row" in replies[1].text
    assert replies[2].stdout.startswith(f"* {ROLE}@{role}")
    assert replies[4].status == "error"
    assert replies[4].error_text.startswith("AuthenticationError: ")
    assert len(replies[4].error_text.splitlines()) == 1
    assert replies[5].ename == "UsageError" and "--password-env" in replies[5].stderr
    kernel.ok("import logging\nfor h in logging.getLogger().handlers: h.flush()")
    for reply in replies:
        assert PASSWORD not in reply.everything
        assert WRONG not in reply.everything
    logged = log.read_text()
    assert "cassandra" in logged  # the driver did log, at DEBUG
    assert PASSWORD not in logged and WRONG not in logged


def test_user_alone_asks_with_a_hidden_prompt(
    logged_kernel: tuple[Kernel, Path], role: str
) -> None:
    kernel, _ = logged_kernel
    msg_id = kernel.start(f"%cql_connect {role} --user {ROLE}", allow_stdin=True)
    request = kernel.client.get_stdin_msg(timeout=30)
    assert request["msg_type"] == "input_request"
    assert request["content"]["password"] is True
    assert ROLE in request["content"]["prompt"]
    kernel.client.input(PASSWORD)
    reply = kernel.collect(msg_id)
    assert reply.status == "ok", reply.error_text
    assert PASSWORD not in reply.everything
    assert "1 row" in kernel.ok("%cql SELECT release_version FROM system.local").text


def test_no_prompt_where_the_frontend_cannot_answer(
    logged_kernel: tuple[Kernel, Path], role: str
) -> None:
    kernel, _ = logged_kernel
    reply = kernel.run(f"%cql_connect {role} --user {ROLE}")
    assert reply.ename == "UsageError"
    assert "--password-env" in reply.stderr


def test_saved_notebook_holds_no_password(
    role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASSNB_TEST_PASSWORD", PASSWORD)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(f"%load_ext {EXTENSION}"),
        nbformat.v4.new_code_cell(
            f"%cql_connect {role} --user {ROLE} --password-env CASSNB_TEST_PASSWORD"
        ),
        nbformat.v4.new_code_cell("%%cql\nSELECT cluster_name, release_version FROM system.local"),
        nbformat.v4.new_code_cell("%cql_connect --list"),
        nbformat.v4.new_code_cell("import os\n'CASSNB_TEST_PASSWORD' in os.environ"),
    ]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    path = tmp_path / "secret.ipynb"
    nbformat.write(notebook, path)
    saved = path.read_text()
    assert ROLE in saved and "True" in saved
    assert PASSWORD not in saved
    assert notebook.cells[2].outputs[0]["output_type"] == "execute_result"


def test_tls_with_a_ca_file(tls_node: ClusterInfo, tables: ClusterInfo) -> None:
    assert tls_node.ca_cert is not None and os.path.isfile(tls_node.ca_cert)
    address = tls_node.contact_points[0]
    kernel = Kernel()
    try:
        kernel.ok(f"%load_ext {EXTENSION}")
        connected = kernel.ok(f"%cql_connect {address} --ssl-ca {tls_node.ca_cert} --alias tls")
        assert "(TLS)" in connected.stdout
        assert "1 row" in kernel.ok("%cql SELECT release_version FROM system.local").text
        plain = kernel.run(f"%cql_connect {address} --alias plain")
        assert plain.status == "error"
        assert plain.error_text.startswith("ConnectionError: ")
        assert len(plain.error_text.splitlines()) == 1
    finally:
        kernel.close()
