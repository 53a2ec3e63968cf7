"""`aetool serve`."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from typing_extensions import Annotated

from .common import handle_errors

EPILOG = """Examples:

\b
  # in one terminal (or in the background with &): the server
  aetool serve
\b
  # elsewhere, as usual: each call runs in the server, without the start-up
  for f in *.png; do aetool denoise "$f" -o "clean/$f"; done
\b
  # a server that stops after 10 idle minutes, and a call that skips it
  aetool serve --idle-minutes 10 &
  AETOOL_NO_SERVE=1 aetool denoise a.png -o b.png

Every `aetool` command looks for the server's socket first and, if a server answers, runs
there: the same code, in the caller's folder, environment and umask, output and exit code
passed back. In process as before: with AETOOL_NO_SERVE=1, no server, `serve` and `train`,
standard input ('-'), --ray, or a server of another installation or started with other
thread or CUDA variables (OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES...). One command at a time;
Ctrl-C on a caller stops its command, not the server. Only your user can reach the socket.
"""


def serve_command(
    socket_path: Annotated[Optional[str], typer.Option(
        "--socket", metavar="PATH", show_default=False,
        help="The Unix socket to listen on; default: $AETOOL_SOCKET, else $XDG_RUNTIME_DIR/aetool.sock, else "
             "/tmp/aetool-UID/serve.sock. Callers find it through the same rule, so with another path set "
             "AETOOL_SOCKET for them.")] = None,
    idle_minutes: Annotated[float, typer.Option(min=0, metavar="N",
                                                help="Stop after N minutes without a command; 0: never.")] = 0.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="A line on stderr per command: exit code, "
                                          "seconds, arguments.")] = False,
):
    """Keep aetool started (torch imported, models loaded) and run other `aetool` calls' commands,
    so that each call starts in a fraction of a second. Runs until Ctrl-C or SIGTERM."""
    from ..serve import serve

    stderr = sys.stderr

    def log(line: str) -> None:
        print(line, file=stderr, flush=True)

    def ready(server) -> None:
        log(f"aetool serve: listening on {server.path} (pid {os.getpid()}); Ctrl-C stops")

    serve(socket_path, idle_minutes, log if verbose else None, ready)


def register(app: typer.Typer) -> None:
    app.command("serve", short_help="Keep aetool started, so that later calls skip the start-up.",
                epilog=EPILOG)(handle_errors(serve_command))
