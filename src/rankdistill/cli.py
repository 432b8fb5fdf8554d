"""The ``rankdistill`` command line: one typer app, one module per verb under ``rankdistill.commands``."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer
from rich.console import Console

from rankdistill.errors import RankdistillError

app = typer.Typer(
    name="rankdistill",
    help="Distil a listwise LLM re-ranker into a fast cross-encoder: retrieve, teach, build, train, rerank, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Verbs in pipeline order; each module defines ``register(app)``.
VERBS = ("retrieve", "teach", "build", "train", "rerank", "fuse", "evaluate", "pipeline", "study", "serve", "export")

for _verb in VERBS:
    _name = f"rankdistill.commands.{_verb}"
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)

err_console = Console(stderr=True)


def _show_library_logs() -> None:
    """rankdistill's INFO logs (what ran and how long, fallbacks, retries) as plain lines on stderr."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("rankdistill")
    if not any(getattr(h, "_rankdistill_cli", False) for h in logger.handlers):
        handler = RichHandler(console=err_console, show_time=False, show_path=False, show_level=False,
                              markup=False, rich_tracebacks=False)
        handler._rankdistill_cli = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one red line and exit code 2, never a traceback."""
    _show_library_logs()
    try:
        # without standalone mode typer returns the exit code of typer.Exit, and turns Ctrl-C into Exit(130)
        code = app(args=argv, standalone_mode=False)
        if code == 130:
            err_console.print("[yellow]interrupted[/]: finished work is saved; rerun the same command to continue")
        if isinstance(code, int) and code:
            sys.exit(code)
    except RankdistillError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished work is saved; rerun the same command to continue")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors
        import click

        # typer >= 0.2x vendors click as typer._click, whose exceptions are not click's: match by shape/name
        if isinstance(exc, click.exceptions.ClickException) or (hasattr(exc, "show") and hasattr(exc, "exit_code")):
            # one line like every other user error (click's own shows three), with where to read the usage
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            err_console.print(f"[bold red]error:[/] {exc.format_message()}{hint}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort) or type(exc).__name__ == "Abort":
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
