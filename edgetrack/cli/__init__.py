"""The ``edgetrack`` command line: one module per command (``edgetrack/cli/<command>.py``, each
with a ``register(app)``), what they share in ``_common``.

This package is the only part of ``edgetrack`` that reaches up to ``training`` and
``conversion``, and only inside a command: commands that need torch (``convert``, ``quantize``,
``train``, ``bench``'s torch reference) import it when they run (the import-linter contract in
pyproject.toml states the layers).
Every failure ends in one line on stderr and a non-zero exit status, never a traceback:
user errors (``EdgetrackError``) and usage errors exit 2, Ctrl-C exits 130 ("interrupted").
"""
from __future__ import annotations

import importlib
import logging
import sys
from typing import NoReturn

from edgetrack.offline import disable_openvino_telemetry

disable_openvino_telemetry()  # before any command imports openvino: an offline tool calls no one

import typer  # noqa: E402

from edgetrack.errors import EdgetrackError  # noqa: E402

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MixFormerV2 object tracking on Intel CPUs/iGPUs (OpenVINO).",
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens (debug level).")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# in the order ``edgetrack --help`` lists them
COMMANDS = ("run", "bench", "convert", "eval", "analyze", "synth", "data", "train", "quantize", "report")


def _register_all() -> None:
    for name in COMMANDS:
        importlib.import_module(f"edgetrack.cli.{name}").register(app)


_register_all()


def usage_line(err: typer.TyperException) -> str:
    """One line for a command-line usage error (typer bundles its own click: no ``import click``)."""
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "edgetrack"
    msg = " ".join(err.format_message().split())
    if not msg:  # no_args_is_help: the help text went to stdout already
        return f"error: no command given; see '{command} --help'"
    errors = getattr(err.__cause__, "errors", None)  # typer's pydantic coercion keeps the bad value there
    if callable(errors):
        try:
            msg += f" (got {errors()[0]['input']!r})"
        except (LookupError, TypeError, ValueError):
            pass
    return f"error: {msg.rstrip('.')}; see '{command} --help'"


def _exit(line: str, code: int) -> NoReturn:
    typer.echo(line, err=True)
    sys.exit(code)


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except EdgetrackError as err:
        _exit(f"error: {err}", EXIT_USAGE)
    except KeyboardInterrupt:
        _exit("interrupted", EXIT_INTERRUPTED)
    except typer.Abort:
        _exit("aborted", EXIT_INTERRUPTED)
    except typer.Exit as ex:  # pragma: no cover - typer returns these in non-standalone mode
        sys.exit(ex.exit_code)
    except typer.TyperException as err:  # click usage errors (missing option, bad value, no such command)
        _exit(usage_line(err), EXIT_USAGE)
    # In non-standalone mode typer turns Ctrl-C into a returned 130 and --help into 0.
    if rv == EXIT_INTERRUPTED:
        _exit("interrupted", EXIT_INTERRUPTED)
    sys.exit(rv if isinstance(rv, int) else 0)
