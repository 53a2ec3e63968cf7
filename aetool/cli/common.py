"""What every command shares: error handling (the one place that maps exceptions to exit codes),
signal handling and console output."""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading

import typer

from ..errors import AetoolError, Terminated, exit_code_for


def err(msg: str) -> None:
    print(f"aetool: error: {msg}", file=sys.stderr)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (timeout, docker stop, systemd, Kubernetes) raises Terminated in the main thread, so
    that a command stops the way Ctrl-C stops it: the file in flight is finished or dropped, no
    temporary file is left, and the summary is printed (exit 143)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handle_errors(fn):
    """User errors become a one-line message and their exit code; AETOOL_DEBUG=1 shows tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with sigterm_as_interrupt():
                return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt as exc:
            print("aetool: terminated" if isinstance(exc, Terminated) else "aetool: interrupted", file=sys.stderr)
            raise typer.Exit(exit_code_for(exc))
        except AetoolError as exc:
            if os.environ.get("AETOOL_DEBUG"):
                raise
            err(str(exc))
            raise typer.Exit(exit_code_for(exc))
        except MemoryError:
            err("out of memory; try a smaller --tile or --batch-size")
            raise typer.Exit(exit_code_for(MemoryError()))

    return wrapper
