"""What the magics tests share besides fixtures: a real kernel driven as a notebook does.

A :class:`Kernel` runs cells the way a notebook frontend does (execute requests on the
shell channel, outputs on iopub) and keeps what each cell printed, displayed and raised.

Kept out of conftest.py, so that no test module imports from a ``conftest``.
"""

from __future__ import annotations

import os
import queue
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

#: The keyspace of the magics' tables, loaded by conftest.py.
KEYSPACE = "cassnb_magics_test"
EXTENSION = "cassnb"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes."""
    return _ANSI.sub("", text)


@dataclass
class Reply:
    """What one cell did: its reply status and every output it produced."""

    status: str
    stdout: str = ""
    stderr: str = ""
    result: dict[str, Any] | None = None
    displays: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    content: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The cell value's plain-text form ('' when the cell has no value)."""
        return "" if self.result is None else str(self.result.get("text/plain", ""))

    @property
    def ename(self) -> str | None:
        """The class name of the cell's error, from its reply (None when it succeeded)."""
        name = self.content.get("ename")
        return None if name is None else str(name)

    @property
    def error_text(self) -> str:
        """The error as shown: the traceback lines, colour codes removed."""
        if self.error is None:
            return ""
        return strip_ansi("\n".join(self.error["traceback"]))

    @property
    def everything(self) -> str:
        """Every piece of text the cell sent, for searching."""
        return repr(self.messages)


class Kernel:
    """A Python kernel started like a notebook's, with cells run one at a time."""

    def __init__(self, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        environment = dict(os.environ)
        environment.update(env or {})
        self.manager.start_kernel(env=environment, cwd=str(cwd or Path.cwd()))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        """The kernel process's id."""
        provisioner: Any = self.manager.provisioner
        return int(provisioner.process.pid)

    def start(self, code: str, *, allow_stdin: bool = False) -> str:
        """Send a cell for execution and return its message id."""
        return str(self.client.execute(code, allow_stdin=allow_stdin, stop_on_error=False))

    def collect(self, msg_id: str, timeout: float = 120.0) -> Reply:
        """Gather a cell's outputs until the kernel is idle again, then its reply."""
        reply = Reply(status="")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the cell did not finish within {timeout} s")
            try:
                message = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            self._record(reply, message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        reply.content = self.wait_reply(msg_id, timeout)["content"]
        reply.status = reply.content["status"]
        return reply

    def wait_for_output(self, msg_id: str, needle: str, timeout: float = 60.0) -> str:
        """Read a running cell's outputs until one contains ``needle``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.client.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            text = str(message["content"].get("text", ""))
            if needle in text:
                return text
        raise TimeoutError(f"no output with {needle!r} within {timeout} s")

    def wait_reply(self, msg_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Return the cell's execute_reply from the shell channel."""
        deadline = time.monotonic() + timeout
        while True:
            message: dict[str, Any] = self.client.get_shell_msg(
                timeout=max(deadline - time.monotonic(), 0.01)
            )
            if message["parent_header"].get("msg_id") == msg_id:
                return message

    @staticmethod
    def _record(reply: Reply, message: dict[str, Any]) -> None:
        kind = message["msg_type"]
        content = message["content"]
        if kind in ("status", "execute_input"):
            return
        reply.messages.append({"msg_type": kind, "content": content})
        if kind == "stream":
            if content["name"] == "stdout":
                reply.stdout += content["text"]
            else:
                reply.stderr += content["text"]
        elif kind == "execute_result":
            reply.result = content["data"]
        elif kind == "display_data":
            reply.displays.append(content["data"])
        elif kind == "error":
            reply.error = content

    def run(self, code: str, timeout: float = 120.0) -> Reply:
        """Run a cell and return what it did."""
        return self.collect(self.start(code), timeout)

    def ok(self, code: str, timeout: float = 120.0) -> Reply:
        """Run a cell that must succeed."""
        reply = self.run(code, timeout)
        assert reply.status == "ok", reply.error_text or reply.stderr
        return reply

    def close(self) -> None:
        """Shut the kernel down."""
        self.client.stop_channels()
        if self.manager.is_alive():
            self.manager.shutdown_kernel(now=False)
