"""Pure parsing for the magics: options, CQL statements, ``:name`` placeholders, URLs.

Nothing here talks to Cassandra or to IPython's shell; every function is a plain
transformation of text, so all of it is unit-tested without a node or a kernel.
"""

from __future__ import annotations

import argparse
import enum
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from IPython.core.error import UsageError

__all__ = [
    "CONSISTENCY_LEVELS",
    "CassandraURL",
    "CellOptions",
    "ConnectOptions",
    "Kind",
    "Segment",
    "Statement",
    "bind_placeholders",
    "parse_cell_options",
    "parse_connect",
    "parse_line_options",
    "parse_url",
    "split_statements",
    "table_of",
]

CONSISTENCY_LEVELS: Final = (
    "ANY",
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "SERIAL",
    "LOCAL_SERIAL",
    "LOCAL_ONE",
)

DEFAULT_PORT: Final = 9042


# --- options ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argparse parser that reports mistakes as UsageError and never exits."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or f"{self.prog}: invalid arguments")


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _consistency(text: str) -> str:
    level = text.upper()
    if level not in CONSISTENCY_LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown consistency level {text!r}; use one of {', '.join(CONSISTENCY_LEVELS)}"
        )
    return level


def _python_name(text: str) -> str:
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a Python variable name")
    return text


@dataclass(frozen=True)
class CellOptions:
    """The options of one ``%%cql`` / ``%cql`` call; None means "use the configured value"."""

    out: str | None = None
    fetch_size: int | None = None
    max_rows: int | None = None
    consistency: str | None = None
    timeout: float | None = None
    trace: bool = False
    quiet: bool = False
    connection: str | None = None


def _cell_parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    parser.add_argument("-o", "--out", type=_python_name)
    parser.add_argument("--fetch-size", type=_positive_int)
    parser.add_argument("--max-rows", type=_positive_int)
    parser.add_argument("--consistency", type=_consistency)
    parser.add_argument("--timeout", type=_seconds)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("-c", "--connection")
    return parser


_FLAGS: Final = frozenset({"--trace", "--quiet", "-q"})
_VALUED: Final = frozenset(
    {
        "--out",
        "-o",
        "--fetch-size",
        "--max-rows",
        "--consistency",
        "--timeout",
        "--connection",
        "-c",
    }
)


def _options(namespace: argparse.Namespace) -> CellOptions:
    return CellOptions(
        out=namespace.out,
        fetch_size=namespace.fetch_size,
        max_rows=namespace.max_rows,
        consistency=namespace.consistency,
        timeout=namespace.timeout,
        trace=namespace.trace,
        quiet=namespace.quiet,
        connection=namespace.connection,
    )


def _split_words(text: str, prog: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{prog}: {exc}") from None


def parse_cell_options(line: str) -> CellOptions:
    """Parse the options on a ``%%cql`` line; the line holds options only."""
    parser = _cell_parser("%%cql")
    words = _split_words(line, "%%cql")
    namespace, extra = parser.parse_known_args(words)
    if extra:
        raise UsageError(
            f"%%cql: unexpected {' '.join(extra)!r} on the %%cql line; options go on the "
            "first line and the CQL below it"
        )
    return _options(namespace)


_WORD: Final = re.compile(r"\S+")
_OPTION_LIKE: Final = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*(=.*)?")


def parse_line_options(line: str) -> tuple[CellOptions, str]:
    """Split ``%cql [options] CQL`` into its options and the CQL text, kept verbatim."""
    words: list[str] = []
    position = 0
    while (match := _WORD.search(line, position)) is not None:
        word = match.group()
        name, has_value, _ = word.partition("=")
        if word == "--":
            position = match.end()
            break
        if name in _FLAGS and not has_value:
            words.append(word)
            position = match.end()
        elif name in _VALUED:
            words.append(word)
            position = match.end()
            if not has_value:
                value = _WORD.search(line, position)
                if value is None:
                    raise UsageError(f"%cql: {word} needs a value")
                words.append(value.group())
                position = value.end()
        elif _OPTION_LIKE.fullmatch(word):
            raise UsageError(f"%cql: unknown option {name}")
        else:
            position = match.start()
            break
    else:
        position = len(line)
    namespace = _cell_parser("%cql").parse_args(words)
    return _options(namespace), line[position:].strip()


# --- statements -------------------------------------------------------------------------


class Kind(enum.Enum):
    """What a piece of CQL text is, for the purpose of splitting and binding."""

    CODE = "code"
    STRING = "string"
    QUOTED_NAME = "quoted name"
    COMMENT = "comment"


@dataclass(frozen=True)
class Segment:
    """A run of CQL text of one kind."""

    kind: Kind
    text: str


def _segments(cql: str) -> list[Segment]:
    """Cut CQL into code, string, quoted-name and comment runs."""
    segments: list[Segment] = []
    code_start = 0
    i = 0
    n = len(cql)

    def close_code(end: int) -> None:
        if end > code_start:
            segments.append(Segment(Kind.CODE, cql[code_start:end]))

    while i < n:
        char = cql[i]
        pair = cql[i : i + 2]
        end: int
        kind: Kind
        if char == "'":
            end, kind = _quoted_end(cql, i, "'"), Kind.STRING
        elif char == '"':
            end, kind = _quoted_end(cql, i, '"'), Kind.QUOTED_NAME
        elif pair == "$$":
            found = cql.find("$$", i + 2)
            end, kind = (n if found < 0 else found + 2), Kind.STRING
        elif pair in ("--", "//"):
            found = cql.find("\n", i)
            end, kind = (n if found < 0 else found), Kind.COMMENT
        elif pair == "/*":
            found = cql.find("*/", i + 2)
            end, kind = (n if found < 0 else found + 2), Kind.COMMENT
        else:
            i += 1
            continue
        close_code(i)
        segments.append(Segment(kind, cql[i:end]))
        i = code_start = end
    close_code(n)
    return segments


def _quoted_end(cql: str, start: int, quote: str) -> int:
    """Return where a quoted run starting at ``start`` ends; a doubled quote is an escape."""
    i = start + 1
    while True:
        found = cql.find(quote, i)
        if found < 0:
            return len(cql)
        if cql.startswith(quote * 2, found):
            i = found + 2
            continue
        return found + 1


_PLACEHOLDER: Final = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)(?![:\w])")
_FIRST_WORDS: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Statement:
    """One CQL statement of a cell, as segments of text."""

    segments: tuple[Segment, ...]
    placeholders: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names: list[str] = []
        for segment in self.segments:
            if segment.kind is Kind.CODE:
                names.extend(_PLACEHOLDER.findall(segment.text))
        object.__setattr__(self, "placeholders", tuple(names))

    @property
    def text(self) -> str:
        """The statement as written, comments included, without its ``;``."""
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def code(self) -> str:
        """The statement without comments, for recognising what kind of statement it is."""
        return " ".join(
            segment.text for segment in self.segments if segment.kind is not Kind.COMMENT
        ).strip()

    @property
    def keywords(self) -> list[str]:
        """The statement's first two words, upper-cased, comments skipped."""
        code = "".join(s.text if s.kind is Kind.CODE else " ; " for s in self.segments)
        return [word.upper() for word in _FIRST_WORDS.findall(code)[:2]]

    @property
    def has_positional_markers(self) -> bool:
        """Whether the statement already uses ``?`` bind markers."""
        return any(seg.kind is Kind.CODE and "?" in seg.text for seg in self.segments)

    def with_markers(self) -> str:
        """Return the statement text with every ``:name`` placeholder turned into ``?``."""
        parts = []
        for segment in self.segments:
            if segment.kind is Kind.CODE:
                parts.append(_PLACEHOLDER.sub("?", segment.text))
            else:
                parts.append(segment.text)
        return "".join(parts).strip()


def split_statements(cql: str) -> list[Statement]:
    """Split a cell into statements on ``;`` outside strings, quoted names and comments.

    Statements made only of whitespace and comments are dropped.
    """
    statements: list[Statement] = []
    current: list[Segment] = []

    def finish(at_end: bool = False) -> None:
        if not any(seg.kind is not Kind.COMMENT and seg.text.strip() for seg in current):
            current.clear()
            return
        statement = Statement(tuple(current))
        if not at_end and _open_batch(statement):
            # The statements of a BEGIN BATCH ... APPLY BATCH are one statement.
            current.append(Segment(Kind.CODE, ";"))
            return
        statements.append(statement)
        current.clear()

    for segment in _segments(cql):
        if segment.kind is not Kind.CODE:
            current.append(segment)
            continue
        pieces = segment.text.split(";")
        for index, piece in enumerate(pieces):
            if piece:
                current.append(Segment(Kind.CODE, piece))
            if index < len(pieces) - 1:
                finish()
    finish(at_end=True)
    return statements


_APPLY_BATCH: Final = re.compile(r"\bAPPLY\s+BATCH\s*\Z", re.IGNORECASE)


def _open_batch(statement: Statement) -> bool:
    """Tell whether a statement is a BEGIN ... BATCH still waiting for its APPLY BATCH."""
    return statement.keywords[:1] == ["BEGIN"] and not _APPLY_BATCH.search(statement.code)


def bind_placeholders(statement: Statement, namespace: Mapping[str, Any]) -> list[Any]:
    """Return the values for a statement's placeholders, in order, from ``namespace``."""
    missing = [name for name in dict.fromkeys(statement.placeholders) if name not in namespace]
    if missing:
        names = ", ".join(f":{name}" for name in missing)
        raise UsageError(
            f"{names}: no variable named {', '.join(missing)} in the notebook; "
            "define it before running the cell"
        )
    if statement.placeholders and statement.has_positional_markers:
        raise UsageError("a statement cannot mix :name placeholders and ? markers")
    return [namespace[name] for name in statement.placeholders]


_TABLE_REF: Final = re.compile(
    r'\bFROM\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_]*)'
    r'(?:\s*\.\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_]*))?',
    re.IGNORECASE,
)


def _cql_name(token: str) -> str:
    if token.startswith('"'):
        return token[1:-1].replace('""', '"')
    return token.lower()


def table_of(statement: Statement) -> tuple[str | None, str] | None:
    """Return ``(keyspace or None, table)`` that a SELECT reads from, when it says."""
    match = _TABLE_REF.search(statement.code)
    if match is None:
        return None
    first, second = match.groups()
    if second is None:
        return None, _cql_name(first)
    return _cql_name(first), _cql_name(second)


# --- connections ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectOptions:
    """What ``%cql_connect`` was asked to do; never holds a password."""

    contact_points: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    keyspace: str | None = None
    user: str | None = None
    password_env: str | None = None
    ssl_ca: str | None = None
    local_dc: str | None = None
    alias: str | None = None
    list: bool = False
    close: str | None = None

    @property
    def default_alias(self) -> str:
        """The alias used when none is given: who and where, so a rerun replaces it."""
        hosts = ",".join(self.contact_points)
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        user = f"{self.user}@" if self.user else ""
        return f"{user}{hosts}{port}"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}")
    return value


def _connect_parser() -> _Parser:
    parser = _Parser(prog="%cql_connect", add_help=False, allow_abbrev=False)
    parser.add_argument("target", nargs="*")
    parser.add_argument("-k", "--keyspace")
    parser.add_argument("-p", "--port", type=_port)
    parser.add_argument("-u", "--user")
    parser.add_argument("--password-env")
    parser.add_argument("--ssl-ca")
    parser.add_argument("--local-dc")
    parser.add_argument("-a", "--alias")
    parser.add_argument("-l", "--list", action="store_true")
    parser.add_argument("--close", metavar="NAME")
    return parser


_PASSWORD_HELP: Final = (
    "put the password in an environment variable and pass its name with --password-env VAR, "
    "or give --user alone to be asked for it"
)


def parse_connect(line: str) -> ConnectOptions:
    """Parse a ``%cql_connect`` line; an error message never repeats a value from it."""
    try:
        words = shlex.split(line)
    except ValueError:
        raise UsageError("%cql_connect: unbalanced quotes in the line") from None
    for word in words:
        if word.split("=", 1)[0] in ("--password", "--pass", "--pw"):
            raise UsageError(
                f"%cql_connect: a password is never taken on the line (the notebook would "
                f"keep it); {_PASSWORD_HELP}"
            )
    namespace, extra = _connect_parser().parse_known_args(words)
    unknown = [word.split("=", 1)[0] for word in extra if word.startswith("-")]
    if unknown:
        raise UsageError(f"%cql_connect: unknown option {unknown[0]}")
    if extra:
        raise UsageError("%cql_connect: unexpected arguments")
    targets: list[str] = namespace.target
    if namespace.list or namespace.close is not None:
        if targets or (namespace.list and namespace.close is not None):
            raise UsageError("%cql_connect: --list and --close NAME stand alone")
        return ConnectOptions(list=namespace.list, close=namespace.close)

    hosts: list[str] = []
    port: int | None = None
    keyspace: str | None = None
    user: str | None = None
    for target in targets:
        if "://" in target:
            if len(targets) > 1:
                raise UsageError("%cql_connect: give either one cassandra:// URL or hosts")
            url = parse_url(target)
            hosts.extend(url.contact_points)
            port, keyspace, user = url.port, url.keyspace, url.user
        else:
            hosts.extend(host for host in target.split(",") if host)
    if namespace.port is not None:
        port = namespace.port
    if namespace.keyspace is not None:
        keyspace = namespace.keyspace
    if namespace.user is not None:
        user = namespace.user
    if namespace.password_env is not None:
        if user is None:
            raise UsageError("%cql_connect: --password-env needs --user (or user@ in the URL)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", namespace.password_env):
            raise UsageError(
                "%cql_connect: --password-env takes the NAME of an environment variable, "
                "not the password itself"
            )
    if not hosts and namespace.alias is None:
        raise UsageError(
            "%cql_connect: give contact points (127.0.0.1,127.0.0.2) or a "
            "cassandra://user@host:port/keyspace URL; --list shows the connections"
        )
    if namespace.ssl_ca is not None and not os.path.isfile(os.path.expanduser(namespace.ssl_ca)):
        raise UsageError(f"%cql_connect: --ssl-ca {namespace.ssl_ca}: no such file")
    return ConnectOptions(
        contact_points=tuple(hosts),
        port=port if port is not None else DEFAULT_PORT,
        keyspace=keyspace,
        user=user,
        password_env=namespace.password_env,
        ssl_ca=None if namespace.ssl_ca is None else os.path.expanduser(namespace.ssl_ca),
        local_dc=namespace.local_dc,
        alias=namespace.alias,
    )


@dataclass(frozen=True)
class CassandraURL:
    """The parts of a ``cassandra://`` URL; it has no place for a password."""

    contact_points: tuple[str, ...]
    port: int | None
    keyspace: str | None
    user: str | None


def parse_url(url: str) -> CassandraURL:
    """Parse ``cassandra://[user@]host1[,host2...][:port][/keyspace]``; refuse a password."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "cassandra":
        raise UsageError("%cql_connect: a URL must start with cassandra://")
    netloc, _, path = rest.partition("/")
    if "?" in path or "#" in path or "?" in netloc:
        raise UsageError("%cql_connect: a cassandra:// URL takes no query string; use options")
    user: str | None = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        if ":" in userinfo:
            raise UsageError(
                f"%cql_connect: the URL carries a password, which would stay in the "
                f"notebook; remove it from the URL and {_PASSWORD_HELP}"
            )
        user = userinfo or None
    hosts: list[str] = []
    ports: set[int] = set()
    for item in netloc.split(","):
        host, port = _host_port(item)
        if host:
            hosts.append(host)
        if port is not None:
            ports.add(port)
    if not hosts:
        raise UsageError("%cql_connect: the URL names no host")
    if len(ports) > 1:
        raise UsageError("%cql_connect: every host of a URL must use the same port")
    keyspace = path.strip("/") or None
    if keyspace is not None and "/" in keyspace:
        raise UsageError("%cql_connect: the URL path is a single keyspace name")
    return CassandraURL(tuple(hosts), ports.pop() if ports else None, keyspace, user)


def _host_port(item: str) -> tuple[str, int | None]:
    item = item.strip()
    if item.startswith("["):
        host, _, tail = item[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    if not port_text:
        return host, None
    try:
        return host, _port(port_text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"%cql_connect: {exc}") from None
