"""The command line: a thin Typer layer that parses, calls the library and prints.

`main` (the `aetool` script) first offers the command to a running `aetool serve` (stdlib only:
typer, numpy and torch are not imported on that path) and runs it in process when none takes it.
`app` (the Typer app) is imported on first use."""
import sys
import types

__all__ = ["app", "main"]


def main() -> None:
    from ..serve import run_via_server

    code = run_via_server(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from .app import main as run_app

    run_app()


class _Package(types.ModuleType):
    @property
    def app(self):
        from .app import app

        return app

    @app.setter
    def app(self, value):
        """Importing the submodule aetool.cli.app binds it here: `aetool.cli.app` stays the Typer app."""


sys.modules[__name__].__class__ = _Package
