"""Exceptions and the one place that maps them to exit codes."""
from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1  # the batch finished but some inputs failed
EXIT_USAGE = 2  # bad arguments, missing model, nothing to do
EXIT_ANOMALY = 3  # `aetool anomaly --fail-on-anomaly`: every file scored and at least one flagged
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (128 + 2)
EXIT_TERMINATED = 143  # SIGTERM (timeout, docker stop, systemd, Kubernetes), as shells report it (128 + 15)


class AetoolError(Exception):
    """Base class for errors that are the user's to fix; printed without a traceback."""

    exit_code = EXIT_USAGE


class UsageError(AetoolError):
    """Bad arguments or options."""


class ModelError(AetoolError):
    """A model name, weights file or card that cannot be used."""


class NonFiniteOutputError(ModelError):
    """The model produced NaN or infinity: damaged weights or a diverged training, never an image."""


class FatalError(AetoolError):
    """A condition that every remaining file would hit too (disk full, read-only file system, a
    broken model): the batch stops early instead of failing each file in turn."""

    exit_code = EXIT_SOME_FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (finish or drop the file in flight, print the summary)."""


class ImageError(AetoolError):
    """One input image that cannot be read, decoded or written; fails that file only."""

    exit_code = EXIT_SOME_FAILED


class ImageTooLargeError(ImageError):
    """An image above the pixel limit (decompression-bomb guard)."""


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, Terminated):
        return EXIT_TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, AetoolError):
        return exc.exit_code
    return EXIT_SOME_FAILED
