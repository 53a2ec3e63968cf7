"""The command line: a thin Typer layer that parses, calls the library and prints."""
from .app import app, main

__all__ = ["app", "main"]
