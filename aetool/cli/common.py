"""What every command shares: error handling (the one place that maps exceptions to exit codes)
and console output."""
from __future__ import annotations

import functools
import os
import sys

import typer

from ..errors import EXIT_INTERRUPTED, AetoolError, exit_code_for


def err(msg: str) -> None:
    print(f"aetool: error: {msg}", file=sys.stderr)


def handle_errors(fn):
    """User errors become a one-line message and their exit code; AETOOL_DEBUG=1 shows tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            print("aetool: interrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED)
        except AetoolError as exc:
            if os.environ.get("AETOOL_DEBUG"):
                raise
            err(str(exc))
            raise typer.Exit(exit_code_for(exc))
        except MemoryError:
            err("out of memory; try a smaller --tile or --batch-size")
            raise typer.Exit(exit_code_for(MemoryError()))

    return wrapper
