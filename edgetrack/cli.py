"""The ``edgetrack`` command line.

Commands that need torch (``convert``, ``quantize``, ``train``) import it inside the command;
user errors become one line on stderr and exit status 2.
"""
from __future__ import annotations

import logging
import sys

import typer

from edgetrack.errors import EdgetrackError

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


def _register_all() -> None:
    from edgetrack import cli_eval, cli_quantize, cli_runtime, cli_synth, cli_train

    for module in (cli_runtime, cli_eval, cli_synth, cli_train, cli_quantize):
        module.register(app)


_register_all()


def main() -> None:
    try:
        app(standalone_mode=False)
    except EdgetrackError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except (typer.Exit,) as ex:  # pragma: no cover - typer internals
        sys.exit(ex.exit_code)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
