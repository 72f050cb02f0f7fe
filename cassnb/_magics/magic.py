"""The ``%cql_connect``, ``%%cql`` and ``%cql`` magics, configured with ``%config CQLMagic``.

Each magic is a coroutine run on the shell's own loop: the input transformer rewrites
the magic's call into an awaited call of :meth:`CQLMagic.run_async`. Where a cell cannot
await (inside a plain function, or under ``%%time``), the magic runs its coroutine on a
private loop in a helper thread and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import getpass
import os
import ssl
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import pandas as pd
from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.display import display as _ipython_display
from traitlets import Bool, Enum, Int
from traitlets.config.configurable import Configurable

from cassnb._core import default, kernel
from cassnb._core.cluster import AsyncCluster
from cassnb._core.errors import (
    AuthenticationError,
    CassandraError,
    ConfigurationError,
    ConnectionError,
)
from cassnb._core.session import AsyncSession
from cassnb._magics.parse import (
    CellOptions,
    ConnectOptions,
    bind_placeholders,
    parse_cell_options,
    parse_connect,
    parse_line_options,
    split_statements,
)
from cassnb._magics.render import FrameNote, FrameViews, error_line, trace_frame
from cassnb._magics.run import (
    CellInterrupted,
    Outcome,
    Settings,
    filtering_hint,
    run_statement,
    server_message,
)
from cassnb._magics.transformer import AwaitMagics, asyncio_autoawait

__all__ = ["CQLMagic", "load", "unload"]

MAGICS: Final = ("cql", "cql_connect")
#: How the transformed cell reaches the magics; needs nothing in the user's namespace.
TARGET: Final = "get_ipython().magics_manager.registry['CQLMagic'].run_async"
#: Seconds an interrupted blocking call waits for its coroutine to unwind.
_UNWIND: Final = 2.0


_F = TypeVar("_F", bound=Callable[..., Any])


def _typed(decorator: Any) -> Callable[[_F], _F]:
    """Give one of IPython's untyped decorators a type that keeps the function's own."""
    return cast(Callable[[_F], _F], decorator)


def _show(value: object) -> None:
    """Display a value in the cell's output."""
    _ipython_display(value)  # type: ignore[no-untyped-call]


@dataclass
class Connection:
    """A named connection of the notebook; describes itself without its password."""

    alias: str
    cluster: AsyncCluster
    session: AsyncSession
    where: str

    async def close(self) -> None:
        """Close the session and shut the cluster down."""
        try:
            await self.session.close()
        finally:
            await self.cluster.shutdown()


def _where(options: ConnectOptions) -> str:
    user = f"{options.user}@" if options.user else ""
    port = f":{options.port}"
    keyspace = f"/{options.keyspace}" if options.keyspace else ""
    tls = " (TLS)" if options.ssl_ca else ""
    return f"{user}{','.join(options.contact_points)}{port}{keyspace}{tls}"


@magics_class
class CQLMagic(Magics, Configurable):
    """Run CQL against Apache Cassandra from notebook cells."""

    displaylimit = Int(
        10, help="Rows shown of a result (the value keeps every row); 0 shows pandas' view."
    ).tag(config=True)
    max_rows = Int(
        1_000_000, help="Rows a statement loads at most; a cell says so when it stops there."
    ).tag(config=True)
    short_errors = Bool(True, help="Show errors as one line; False shows the full traceback.").tag(
        config=True
    )
    fetch_size = Int(5000, help="Rows per page fetched from the server.").tag(config=True)
    progress = Bool(True, help="Show a progress bar for results longer than a few pages.").tag(
        config=True
    )
    progress_min_pages = Int(
        3, help="Pages a result must reach before its progress bar appears."
    ).tag(config=True)
    dtype_backend = Enum(
        ("numpy_nullable", "pyarrow"),
        "numpy_nullable",
        help="pandas dtypes of result columns: numpy_nullable or pyarrow.",
    ).tag(config=True)

    def __init__(self, shell: Any) -> None:
        Configurable.__init__(self, config=shell.config)
        Magics.__init__(self, shell=shell)  # type: ignore[no-untyped-call,unused-ignore]
        self.connections: dict[str, Connection] = {}
        self.views = FrameViews()
        # The loop the last magic ran on: the shell's own, unless the cell could not await.
        self.last_loop: asyncio.AbstractEventLoop | None = None

    def _shell(self) -> Any:
        shell = self.shell
        if shell is None:
            raise UsageError("the CQL magics are not attached to a shell")
        return shell

    # --- entry points ---------------------------------------------------------------

    @_typed(no_var_expand)
    @_typed(line_magic("cql_connect"))
    def cql_connect(self, line: str) -> Any:
        """Connect: %cql_connect HOSTS|cassandra://user@hosts:port/ks [--keyspace KS]
        [--port N] [--user U] [--password-env VAR] [--ssl-ca FILE] [--local-dc DC]
        [--alias NAME]; %cql_connect --list; %cql_connect --close NAME;
        %cql_connect --alias NAME switches to an open connection.
        """
        return self._blocking(self.run_async("cql_connect", line, None))

    @_typed(no_var_expand)
    @_typed(line_cell_magic("cql"))
    def cql(self, line: str, cell: str | None = None) -> Any:
        """Run CQL: %%cql [--out NAME] [--fetch-size N] [--max-rows N] [--consistency LEVEL]
        [--timeout SECONDS] [--trace] [--quiet] [--connection ALIAS], statements below;
        or df = %cql [options] STATEMENT. ``:name`` binds the notebook variable ``name``.
        --quiet hides the progress bar and server warnings, and a quiet cell displays
        nothing (keep its rows with --out NAME).
        """
        return self._blocking(self.run_async("cql", line, cell))

    async def run_async(self, magic: str, line: str, cell: str | None) -> Any:
        """Run a magic as a coroutine on the running loop (what transformed cells await)."""
        self.last_loop = asyncio.get_running_loop()
        if magic == "cql":
            return await self._cql(line, cell)
        if magic == "cql_connect":
            return await self._connect(line)
        raise UsageError(f"cassnb has no magic named {magic!r}")

    def _blocking(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a magic's coroutine to its end on a private loop in a helper thread."""
        context = contextvars.copy_context()
        loop = asyncio.new_event_loop()
        outcome: dict[str, Any] = {}

        def main() -> None:
            task = loop.create_task(coroutine)
            outcome["task"] = task
            try:
                outcome["value"] = loop.run_until_complete(task)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                finished.set()

        # Waited on with an Event, not Thread.join: a join interrupted by Ctrl-C may take
        # the thread for finished (CPython 3.11), and we must wait again after cancelling.
        finished = threading.Event()
        thread = threading.Thread(target=context.run, args=(main,), name="cassnb-magic")
        thread.start()
        try:
            finished.wait()
        except KeyboardInterrupt:
            task = outcome.get("task")
            if task is not None:
                with contextlib.suppress(RuntimeError):  # the loop just closed: nothing to stop
                    loop.call_soon_threadsafe(task.cancel)
            if not finished.wait(_UNWIND):
                raise CellInterrupted(0) from None
        if "error" in outcome:
            error = outcome["error"]
            if isinstance(error, asyncio.CancelledError):
                raise CellInterrupted(0) from None
            raise error
        return outcome.get("value")

    # --- errors ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(
        self,
        session: AsyncSession | None = None,
        statement: Any = None,
        connect_hint: str | None = None,
    ) -> Iterator[None]:
        """Show a CQL error as one line (unless short_errors is off); user mistakes too."""
        try:
            yield
        except CassandraError as exc:
            if isinstance(exc, ConfigurationError):
                raise UsageError(str(exc)) from exc
            if not self.short_errors:
                raise
            hint = None
            if session is not None and statement is not None:
                hint = filtering_hint(session, statement, exc)
            elif isinstance(exc, ConnectionError) and not isinstance(exc, AuthenticationError):
                hint = connect_hint
            line = error_line(type(exc).__name__, server_message(exc), hint)
            exc._render_traceback_ = lambda: [line]  # type: ignore[attr-defined]
            raise

    # --- %cql_connect ---------------------------------------------------------------

    async def _connect(self, line: str) -> None:
        options = parse_connect(line)
        if options.list:
            self._print_connections()
            return
        if options.close is not None:
            await self._close(options.close)
            return
        if not options.contact_points:
            assert options.alias is not None
            self._switch(options.alias)
            return
        password = _password(options)
        driver_kwargs: dict[str, Any] = {"port": options.port}
        if options.ssl_ca is not None:
            context = ssl.create_default_context(cafile=options.ssl_ca)
            # Nodes are usually reached by address and their certificates seldom name it;
            # the certificate chain is still verified against the given CA.
            context.check_hostname = False
            driver_kwargs["ssl_context"] = context
        if options.local_dc is not None:
            driver_kwargs["local_dc"] = options.local_dc
        local_dc_hint = (
            None
            if options.local_dc is None
            else f"--local-dc {options.local_dc}: only nodes of that datacenter are used"
        )
        with self._errors(connect_hint=local_dc_hint):
            if options.user is not None and password is not None:
                cluster = AsyncCluster.create_with_auth(
                    list(options.contact_points),
                    username=options.user,
                    password=password,
                    **driver_kwargs,
                )
            else:
                cluster = AsyncCluster(list(options.contact_points), **driver_kwargs)
            del password
            try:
                session = await cluster.connect(options.keyspace)
            except BaseException:
                await cluster.shutdown()
                raise
        alias = options.alias or options.default_alias
        old = self.connections.pop(alias, None)
        self.connections[alias] = Connection(alias, cluster, session, _where(options))
        default.set_default_session(session)
        if old is not None:
            await old.close()
        print(f"connected to {_where(options)} as {alias!r}")

    def _print_connections(self) -> None:
        if not self.connections:
            print("no connections; %cql_connect HOSTS --keyspace KS opens one")
            return
        current = _current_session()
        for alias, connection in self.connections.items():
            mark = "*" if connection.session is current else " "
            keyspace = connection.session.keyspace or "-"
            state = "closed" if connection.session.is_closed else f"keyspace {keyspace}"
            fast_path = connection.cluster.fast_path_status
            print(f"{mark} {alias}: {connection.where} ({state}; {fast_path})")

    async def _close(self, alias: str) -> None:
        connection = self.connections.pop(alias, None)
        if connection is None:
            raise UsageError(f"no connection named {alias!r}; %cql_connect --list shows them")
        if connection.session is _current_session():
            default.set_default_session(None)
        await connection.close()
        print(f"closed {alias!r}")

    def _switch(self, alias: str) -> None:
        connection = self.connections.get(alias)
        if connection is None:
            raise UsageError(
                f"no connection named {alias!r}: give contact points or a URL to open it"
            )
        default.set_default_session(connection.session)
        print(f"using {alias!r}: {connection.where}")

    def _session(self, alias: str | None) -> AsyncSession:
        if alias is not None:
            connection = self.connections.get(alias)
            if connection is None:
                raise UsageError(f"no connection named {alias!r}; %cql_connect --list shows them")
            return connection.session
        try:
            return default.get_default_session()
        except (ConfigurationError, ConnectionError) as exc:
            raise UsageError(str(exc)) from None

    # --- %%cql / %cql ---------------------------------------------------------------

    def _settings(self, options: CellOptions) -> Settings:
        max_rows = options.max_rows if options.max_rows is not None else self.max_rows
        if max_rows < 1:
            raise UsageError("max_rows must be at least 1")
        fetch_size = options.fetch_size if options.fetch_size is not None else self.fetch_size
        if fetch_size < 1:
            raise UsageError("fetch_size must be at least 1")
        return Settings(
            fetch_size=fetch_size,
            max_rows=max_rows,
            consistency=options.consistency,
            timeout=options.timeout,
            trace=options.trace,
            progress=self.progress and not options.quiet,
            progress_min_pages=self.progress_min_pages,
            dtype_backend="pyarrow" if self.dtype_backend == "pyarrow" else "numpy_nullable",
        )

    async def _cql(self, line: str, cell: str | None) -> pd.DataFrame | None:
        if cell is None:
            options, cql = parse_line_options(line)
        else:
            options, cql = parse_cell_options(line), cell
        statements = split_statements(cql)
        if not statements:
            raise UsageError("no CQL statement to run")
        namespace: dict[str, Any] = self._shell().user_ns
        values = [bind_placeholders(statement, namespace) for statement in statements]
        settings = self._settings(options)
        session = self._session(options.connection)
        last: Outcome | None = None
        arrived = 0
        for statement, statement_values in zip(statements, values, strict=True):
            with self._errors(session, statement):
                try:
                    outcome = await run_statement(session, statement, statement_values, settings)
                except CellInterrupted as interrupted:
                    raise CellInterrupted(arrived + interrupted.rows) from None
                except asyncio.CancelledError:
                    raise CellInterrupted(arrived) from None
            if outcome.frame is not None:
                arrived += len(outcome.frame)
            self._report(outcome, options)
            if outcome.frame is not None:
                if last is not None and last.frame is not None:
                    _show(last.frame)
                last = outcome
        if last is None or last.frame is None:
            return None
        if options.out is not None:
            namespace[options.out] = last.frame
        if options.quiet and cell is not None:
            # A quiet cell shows nothing; its rows are kept by --out.
            return None
        return last.frame

    def _report(self, outcome: Outcome, options: CellOptions) -> None:
        if outcome.frame is not None:
            keywords = outcome.statement.keywords
            note = FrameNote(
                limit=max(self.displaylimit, 0),
                cut_at=self._settings(options).max_rows if outcome.cut else None,
                describe=bool(keywords) and keywords[0] in ("DESCRIBE", "DESC"),
            )
            self.views.remember(outcome.frame, note)
            if outcome.cut:
                print(
                    f"cassnb: stopped at max_rows={note.cut_at:,} rows; more rows exist "
                    "(--max-rows N or %config CQLMagic.max_rows)",
                    file=sys.stderr,
                )
        if not options.quiet:
            for warning in outcome.warnings:
                print(f"server warning: {' '.join(warning.split())}", file=sys.stderr)
        if options.trace:
            if outcome.trace_error is not None:
                print(f"no trace: {outcome.trace_error}", file=sys.stderr)
            for trace in outcome.traces:
                duration = getattr(trace, "duration", None)
                took = "" if duration is None else f", {duration.total_seconds() * 1e6:,.0f} µs"
                print(f"trace {trace.trace_id}: coordinator {trace.coordinator}{took}")
                _show(trace_frame(trace.events or []))


def _current_session() -> AsyncSession | None:
    try:
        return default.get_default_session()
    except CassandraError:
        return None


def _password(options: ConnectOptions) -> str | None:
    if options.user is None:
        return None
    if options.password_env is not None:
        value = os.environ.get(options.password_env)
        if value is None:
            raise UsageError(
                f"%cql_connect: the environment variable {options.password_env} is not set"
            )
        return value
    try:
        return getpass.getpass(f"Password for {options.user}: ")
    except (StdinNotImplementedError, EOFError, OSError):
        raise UsageError(
            "%cql_connect: this frontend cannot ask for a password; put it in an environment "
            "variable and pass its name with --password-env VAR"
        ) from None


# --- loading --------------------------------------------------------------------------


def load(ip: Any) -> None:
    """Register the magics, the awaiting transformer, the limited views and the hook."""
    registry = ip.magics_manager.registry
    if "CQLMagic" in registry:
        return
    magics = CQLMagic(ip)
    ip.register_magics(magics)
    ip.configurables.append(magics)
    ip.input_transformers_post.append(AwaitMagics(MAGICS, TARGET, lambda: asyncio_autoawait(ip)))
    magics.views.install(ip.display_formatter)
    kernel.install()


def unload(ip: Any) -> None:
    """Remove what ``load`` registered; open connections stay open."""
    magics = ip.magics_manager.registry.pop("CQLMagic", None)
    if magics is None:
        return
    for kind in ("line", "cell"):
        table = ip.magics_manager.magics[kind]
        for name in MAGICS:
            if getattr(table.get(name), "__self__", None) is magics:
                del table[name]
    if magics in ip.configurables:
        ip.configurables.remove(magics)
    ip.input_transformers_post[:] = [
        t for t in ip.input_transformers_post if not isinstance(t, AwaitMagics)
    ]
    magics.views.uninstall()
