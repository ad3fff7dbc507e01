"""How every command says it failed: one line on stderr, ``error (code): message``, never a traceback."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Column, Table
from sqlalchemy.exc import DBAPIError

from faceatlas.db import one_reason
from faceatlas.engine import json_ready
from faceatlas.errors import CommandLineError, DatabaseUnavailable, FaceAtlasError, FileMissing, InvalidInput

try:  # the click typer runs on: its own copy since typer 0.2x, click itself before
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - an older typer
    from click.exceptions import UsageError  # type: ignore[assignment]

err = Console(stderr=True)

# the width of a command's results when standard output is no terminal (a file, a pipe): as wide as any line
# is, so that no id, name or path in a table is cut ("lin-manuel-…") nor a line broken in two
UNWRAPPED_WIDTH = 1_000_000


class Output(Console):
    """The console of a command's results on standard output: a reader that goes away (``| head``)
    ends the command quietly, status 141, as :func:`stdout_gone` (rich's own way was status 1, which
    says "some inputs failed": `detect a b c d | head -1`). Into a file or a pipe it has no width
    (:data:`UNWRAPPED_WIDTH`, ``COLUMNS`` aside): rich's 80 columns there cut a table's ids and
    paths with "…" (`gallery list > list.txt`); on a terminal, the terminal's width."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        return size if self.is_terminal else ConsoleDimensions(UNWRAPPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_gone()


class WholeTable(Table):
    """Every table a command prints: a value in it is never cut. Each column folds (``overflow="fold"``,
    wrapping allowed) where rich's default cut it with "…": on a terminal narrower than the table (or
    ``COLUMNS=40``), and on stderr (its 80 columns into a file: `watch`'s summary), an id, a name, a
    path or a score goes on over the next lines of its cell, every character of it printed
    (`lin-manuel-miranda-a-…`, `lin…` and `1.0…` matched nothing). Its headers as rich's
    :class:`~rich.table.Table` takes them: names, or columns (given their own overflow, kept)."""

    def __init__(self, *headers: Column | str, **options: Any) -> None:
        super().__init__(*(Column(header, overflow="fold") if isinstance(header, str) else header
                           for header in headers), **options)

    def add_column(self, header: Any = "", footer: Any = "", *, overflow: Any = "fold",
                   **options: Any) -> None:
        super().add_column(header, footer, overflow=overflow, **options)


# said after a deletion by a command without Redis (gallery delete, album's erasures, admin tenant delete)
ANSWERS_IN_MEMORY = ("note: without FACEATLAS_REDIS_URL a server keeps the answers of its Idempotency-Key calls in "
                     "its own memory, out of this command's reach: a retry of a call on what was deleted may still "
                     "be answered from them until the server restarts (or FACEATLAS_IDEMPOTENCY_SECONDS pass). "
                     "Delete through the API or the console to have them replaced; with Redis, set "
                     "FACEATLAS_REDIS_URL here as the servers do.")
# said after such a deletion when the servers' Redis (FACEATLAS_REDIS_URL) could not be reached
ANSWERS_UNREACHED = ("warning: Redis (FACEATLAS_REDIS_URL) could not be reached: the servers' stored answers of "
                     "Idempotency-Key calls on what was deleted stay until their keys expire "
                     "(FACEATLAS_IDEMPOTENCY_SECONDS)")


def one_line(text: str) -> str:
    """``text`` on one line: a message of several lines (a YAML or validation error) joined by spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def json_text(data: Any, *, indent: int | None = None) -> str:
    """``data`` as the JSON every ``--json`` prints: a NaN or infinity is null (``json.dumps``
    wrote ``NaN``, which no JSON parser reads: `eval folder --json` of a gallery without
    non-mated searches), what JSON has no type for is its text."""
    return json.dumps(json_ready(data), indent=indent, default=str, allow_nan=False)


def emit_json(data: Any, *, indent: int | None = None) -> None:
    """``data`` on standard output as every ``--json`` prints it (:func:`json_text`), plain text: no
    colour or style, a terminal's or not (rich's ``print_json`` styled it on a terminal, `docker exec
    -t ... --json > out.json` was no JSON, and ``NO_COLOR`` did not stop it)."""
    print(json_text(data, indent=indent))


def print_error(exc: FaceAtlasError, console: Console | None = None, *, about: str | None = None) -> None:
    """``error (code): message`` in one unwrapped line on ``console`` (stderr by default); ``about``:
    the input it concerns (one of several), put first unless the message names it already."""
    message = one_line(str(exc))
    if about is not None and about not in message:
        message = f"{about}: {message}"
    (console or err).print(f"[red]error ({exc.code}):[/red] {escape(message)}", soft_wrap=True)


def print_camera_failures(failed: dict[str, FaceAtlasError], console: Console) -> None:
    """One line per camera of a run that failed (``failed``: its name and its error), said as
    :func:`print_error` says an error, ``error (code): camera 'name': reason``, after the summary of
    the cameras that ran; a message that names its camera already is not prefixed again. Names are
    the user's: give a ``console`` without emoji codes."""
    for name, error in failed.items():
        said = str(error)
        named = f"camera {name}:" in said or f"camera {name!r}:" in said
        print_error(error, console, about=None if named else f"camera {name!r}")


# the codes of an input that gave no answer (a photo without a face): the command ran, and an input of it
# had nothing to answer with (exit 1, as a command over many inputs where some failed); not an error (2), as
# a database that cannot be reached is (`compare`, `liveness`, `gallery search`, `remote search` exited 2 for
# a photo without a face while `detect` answered it, 0 and `faces: []`)
NO_ANSWER = frozenset({"no_face"})


def exit_status(error: FaceAtlasError | str) -> int:
    """The exit status of a command that ends with ``error`` (an error, or its code: the server's
    for `remote`): 1 when an input gave no answer (:data:`NO_ANSWER`: ``no_face``), 2 for any other.
    Every command's status for an error is decided here (:func:`fail`, :func:`exit_for_failures`)."""
    code = error if isinstance(error, str) else error.code
    return 1 if code in NO_ANSWER else 2


def fail(exc: FaceAtlasError, as_json: bool = False, exit_code: int | None = None) -> NoReturn:
    """Report ``exc`` (as one JSON object on stdout with ``as_json``, else one line on stderr) and
    exit, with ``exit_code`` or else :func:`exit_status`'s (1 for ``no_face``, 2 for the others).
    A stdout that cannot take the JSON object (``> /dev/full``) gets nothing: the line goes to
    stderr (it was a traceback of that second failure)."""
    if as_json:
        try:
            print(json.dumps({"error": exc.code, "message": one_line(str(exc))}), flush=True)
        except OSError:
            _discard_stdout()
            print_error(exc)
    else:
        print_error(exc)
    raise typer.Exit(exit_status(exc) if exit_code is None else exit_code) from exc


@contextmanager
def writing_stdout(done: str | None = None) -> Iterator[None]:
    """Around what a command prints on standard output (its results, its JSON lines, its summary),
    flushed at the end: a stdout that cannot be written (``> /dev/full``, a full disk) is one line
    on stderr, ``error (bad_request): cannot write the standard output: no space left on device``,
    and exit 2 (it was a traceback: the JSON error went to that stdout too); a reader that went
    away (``| head``) ends the command quietly, status 141. Only printing goes in the block: any
    :class:`OSError` in it is taken for stdout's. ``done``: what the command did all the same (a
    decision stored), said after the reason (it looked as if nothing had been done)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()
    except OSError as exc:
        stdout_unwritable(exc, done)


def stdout_unwritable(exc: OSError, done: str | None = None) -> NoReturn:
    """Standard output failed with ``exc`` (``> /dev/full``, a full disk, closed): one line on stderr,
    ``error (bad_request): cannot write the standard output: REASON`` (``; done`` after it), exit 2;
    what is still buffered for it goes nowhere (:func:`_discard_stdout`)."""
    _discard_stdout()
    reason = exc.strerror.lower() if exc.strerror else one_line(str(exc))
    print_error(InvalidInput(f"cannot write the standard output: {reason}" + (f"; {done}" if done else "")))
    raise typer.Exit(2) from None


class WatchedStdout:
    """Standard output while a command runs (:func:`watching_stdout`), its writes passed on to the
    stream it stands for: the error a write or a flush of it raised is kept, so that the group's
    error handler knows an :class:`OSError` for standard output's own wherever it was printed."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        try:
            written = self.stream.write(text)  # None from some writers (a codecs StreamWriter)
            return len(text) if written is None else int(written)
        except OSError as exc:
            self.failure = exc
            raise

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            self.failure = exc
            raise

    def raised(self, exc: BaseException) -> bool:
        """Whether ``exc`` is (or was raised from or while handling) what standard output raised."""
        seen: BaseException | None = exc
        while seen is not None and self.failure is not None:
            if seen is self.failure:
                return True
            seen = seen.__cause__ or seen.__context__
        return False

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer: the stream's own
        return getattr(self.stream, name)


@contextmanager
def watching_stdout() -> Iterator[WatchedStdout]:
    """Around every command (the group's ``invoke``): ``sys.stdout`` is a :class:`WatchedStdout` of
    itself, so that an error of standard output that escapes the command is said by
    :func:`stdout_unwritable`, as :func:`writing_stdout` says it; it was said as any other file's
    error by detect, compare, gallery and the others (``error (error): [Errno 28] No space left on
    device``) while ar, drive and batch said what could not be written (``error (bad_request):
    cannot write the standard output: no space left on device``)."""
    watched = WatchedStdout(sys.stdout)
    if watched.stream is not None:  # None: no stdout held (:func:`hold_stdout`), nothing to watch
        sys.stdout = watched
    try:
        yield watched
    finally:
        if sys.stdout is watched:
            sys.stdout = watched.stream


@contextmanager
def said_stdout_failure() -> Iterator[None]:
    """Around the whole CLI (``faceatlas.cli.run``): a standard output that cannot be written while
    click prints what no command does (``faceatlas --help > /dev/full``: its help, before any
    command's handler runs) is said as every command says it (:func:`stdout_unwritable`), status 2;
    it was a traceback, status 1. A reader of the help gone (``| head``) is status 141 (was 1)."""
    with watching_stdout() as stdout:
        try:
            yield
        except SystemExit as done:
            # a reader gone while the help printed (`faceatlas --help | head`): rich's console ends
            # 1 on a broken pipe (``Console.on_broken_pipe``); our status for it is 141, as every command's
            if done.code == 1 and isinstance(done.__context__, BrokenPipeError):
                raise SystemExit(141) from None
            raise
        except OSError as exc:
            if not stdout.raised(exc):
                raise
            try:
                stdout_gone() if isinstance(exc, BrokenPipeError) else stdout_unwritable(exc)
            except typer.Exit as done:  # outside click's main: its status, as click would end with it
                raise SystemExit(done.exit_code) from None


def flush_stdout() -> None:
    """What the command printed with ``print`` (its JSON, its lines), flushed as the command ends, as
    :func:`writing_stdout` flushes: into a pipe or a file ``print`` holds up to 8 KiB, and a reader
    that had gone away (``| head``) was "Exception ignored ... BrokenPipeError" and status 120 as
    the process exited (`models list --json | true`); now 141, quietly, and a full disk exit 2."""
    with writing_stdout():
        pass


def stdout_gone() -> NoReturn:
    """The reader of standard output went away (``| head``): nothing to say, and nowhere to say it;
    status 141 (128 + SIGPIPE, as the shell reports a Unix tool stopped by a closed pipe)."""
    _discard_stdout()
    raise typer.Exit(141)


class _ClosedStdout(io.TextIOBase):
    """Standard output when the command was started without one (``>&-``): Python sets ``sys.stdout``
    to None then, and ``print`` (and rich) wrote into nothing: `detect --json photo.jpg >&-` ended 0,
    its results lost unsaid. Written to, it fails as a stdout that cannot be written does
    (``> /dev/full``): one line on stderr, ``cannot write the standard output: it is closed``, exit 2."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not text:
            return 0
        raise OSError(errno.EBADF, "It is closed", "the standard output")


def hold_stdout() -> None:
    """Called as the command starts: a closed standard output (fd 1) is held on /dev/null, so no file
    the command opens takes its number (and a model or a database is never written by a print),
    and ``sys.stdout`` fails when written (:class:`_ClosedStdout`)."""
    if sys.stdout is not None:
        return
    try:
        os.fstat(1)
    except OSError:
        held = os.open(os.devnull, os.O_WRONLY)  # the lowest free number: 1
        if held != 1:
            os.dup2(held, 1)
            os.close(held)
    sys.stdout = _ClosedStdout()


def _discard_stdout() -> None:
    """Standard output to /dev/null from now on: what is still buffered for it goes nowhere, so the
    flush as the process exits cannot fail again ("Exception ignored", status 120). Nothing to do
    when stdout is no file (a test's capture)."""
    try:
        number = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: no file behind it
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, number)
    finally:
        os.close(null)


def interrupted(done: int, total: int | None, what: str, kept: str, as_json: bool = False,
                summary: dict[str, Any] | None = None) -> NoReturn:
    """A long command stopped by Ctrl-C or a kill: one line on stderr saying how far it got and
    what of it is kept, then status 130 (as every interrupted command). ``as_json``: first, on
    stdout, the same as one JSON object, ``summary`` (what was done so far, where the command
    knows it) with ``"interrupted": true, "done", "total", "kept"`` (stdout was empty, and a
    script's ``jq`` failed on it; `detect --json` printed its results so far)."""
    if as_json:
        with writing_stdout():
            emit_json({**(summary or {}), "interrupted": True, "done": done, "total": total or None, "kept": kept})
    of = f" of {total}" if total else ""
    err.print(f"interrupted after {done}{of} {what}: {kept}", soft_wrap=True)
    raise typer.Exit(130)


def coded(code: str, message: str) -> FaceAtlasError:
    """An error under a code of its own (the server's, across the wire; a missing extra's), said as
    :func:`fail` says every error."""
    error = FaceAtlasError(message)
    error.code = code
    return error


def fail_import(exc: ImportError, extra: str, as_json: bool = False) -> NoReturn:
    """An optional extra that is not installed (``extra``: its name, ``drive`` or ``ar``): the
    install hint, as :func:`fail` says an error (code ``missing_dependency``); exit 2."""
    hint = f"pip install 'faceatlas[{extra}]'"
    message = one_line(str(exc))
    fail(coded("missing_dependency", message if hint in message else f"{message} ({hint})"), as_json)


def exit_for_failures(failed: int | Sequence[str], total: int) -> None:
    """The exit status of a command over many inputs, once its report is out: 0 when none
    failed, 1 when some did (the others' results stand), 2 when none gave an answer and one of
    them failed with an error (a script must not go on as if the others' results stood).
    ``failed``: how many failed, or the code of each failure: an input that gave no answer
    (``no_face``, :func:`exit_status`) is no error, so photos without a face alone are 1."""
    codes = ["error"] * failed if isinstance(failed, int) else list(failed)
    if codes:
        errors = any(exit_status(code) == 2 for code in codes)
        raise typer.Exit(2 if errors and len(codes) >= total else 1)


def os_error(exc: OSError) -> FaceAtlasError:
    """A file that cannot be read or written as the error a user understands: ``PATH: reason``; one
    that is not there is :class:`FileMissing` (``file_not_found``), as every command's check says it."""
    reason = exc.strerror.lower() if exc.strerror else one_line(str(exc))
    if exc.filename is not None:
        message = f"{os.fsdecode(exc.filename)}: {reason}"
        if isinstance(exc, FileNotFoundError):
            return FileMissing(message)
        if isinstance(exc, IsADirectoryError | NotADirectoryError | PermissionError):
            return InvalidInput(message)
        return FaceAtlasError(message)
    return FaceAtlasError(one_line(str(exc)))


def database_error(exc: DBAPIError) -> DatabaseUnavailable:
    """A database that cannot be opened or used (down, not a database file, refused credentials)."""
    cause = getattr(exc, "orig", None) or exc
    return DatabaseUnavailable(f"cannot use the database: {one_reason(cause)}")


def is_usage_error(exc: BaseException) -> bool:
    """A command line that does not parse, but not a group called bare (click shows its help then)."""
    return isinstance(exc, UsageError) and type(exc).__name__ != "NoArgsIsHelpError"


def usage_error(exc: UsageError) -> CommandLineError:
    """click's usage error as one line that says where the help is."""
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return CommandLineError(one_line(exc.format_message()) + hint)
