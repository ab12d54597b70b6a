"""The root of the ``lepton`` command line: the command groups, ``--debug``/``--version``, and ``main``.

Commands only parse options and call library functions; known errors become
one line on stderr and a non-zero exit (a traceback only with ``--debug``).
Each command group lives in a module of its own in this package.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from lepton_cdk import __version__

from . import cutover, data, demo, init, manifest, pipeline, review, serving, target

app = typer.Typer(
    name="lepton",
    help="Move an ML workload (its data and its model) from one cloud to another, as reviewed infrastructure code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}

# Error types whose message is written for the user: one line naming the problem and the fix.
_USER_ERROR_MODULES = ("lepton_cdk", "model_pipeline", "infra")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lepton-cdk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar="LEPTON_DEBUG", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    _state["debug"] = debug


# In this order, so `lepton --help` lists demo first.
app.command("demo")(demo.demo)
app.command("init")(init.init)
app.add_typer(manifest.app, name="manifest")
app.command("review")(review.review)
app.add_typer(target.app, name="target")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(data.app, name="data")
app.add_typer(cutover.app, name="cutover")
serving.register(app)


def _is_user_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _USER_ERROR_MODULES


def _one_line(exc: BaseException) -> str:
    if _is_user_error(exc):
        return f"error: {exc}"
    return f"error: unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        # without standalone mode click hands back typer.Exit's code instead of raising it
        status = app(args=argv, prog_name="lepton", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:
        # typer ships its own copy of click: recognise its usage errors by shape, not by import
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if _state["debug"]:
            raise
        typer.echo(_one_line(exc), err=True)
        return 1
    except KeyboardInterrupt:
        typer.echo("interrupted; nothing was half-written (outputs are swapped in only when complete)", err=True)
        return 130
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
