"""Finding input images and naming their outputs."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".avif"}
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
STDIO = "-"


@dataclass
class InputItem:
    path: Path | None  # None for stdin
    rel: Path  # relative path used to name the output (mirrors folder trees)
    explicit: bool = False  # named on the command line (tried even without an image extension)

    @property
    def is_stdin(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return "-" if self.path is None else str(self.path)


def is_hidden_or_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _walk(root: Path, recursive: bool, exclude: Path | None = None) -> list[Path]:
    found = []
    skip = exclude.resolve() if exclude is not None else None
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            # Never descend into the output folder: a re-run must not take outputs as inputs.
            dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_system(d)
                                 and (skip is None or (Path(dirpath) / d).resolve() != skip))
            found.extend(Path(dirpath) / f for f in sorted(filenames))
    else:
        found = sorted(p for p in root.iterdir() if p.is_file())
    return [p for p in found if not is_hidden_or_system(p.name) and p.suffix.lower() in IMAGE_EXTENSIONS]


def collect_inputs(inputs: list[str], recursive: bool = False, exclude: Path | None = None
                   ) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns. Returns the items and (input, reason) for those
    that do not exist (failures to report, not a reason to stop the batch)."""
    items: list[InputItem] = []
    missing: list[tuple[str, str]] = []
    for raw in inputs:
        if raw == STDIO:
            items.append(InputItem(None, Path("stdin"), explicit=True))
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            for p in _walk(path, recursive, exclude):
                items.append(InputItem(p, p.relative_to(path)))
        elif path.is_file():
            items.append(InputItem(path, Path(path.name), explicit=True))
        elif glob.has_magic(raw):
            base = Path(raw.split("*")[0].split("?")[0].split("[")[0]).expanduser()
            base = base if str(base).endswith(os.sep) or base.is_dir() else base.parent
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True))
            matches = [m for m in matches if m.is_file() and not is_hidden_or_system(m.name)
                       and m.suffix.lower() in IMAGE_EXTENSIONS]
            if not matches:
                missing.append((raw, "the pattern matches no file"))
            for m in matches:
                try:
                    rel = m.relative_to(base)
                except ValueError:
                    rel = Path(m.name)
                items.append(InputItem(m, rel, explicit=True))
        else:
            missing.append((raw, "no such file or folder"))
    # The same file named twice (a folder and a glob, say) is done once.
    seen, unique = set(), []
    for it in items:
        key = None if it.path is None else it.path.resolve()
        if key is not None and key in seen:
            continue
        seen.add(key)
        unique.append(it)
    return unique, missing


def has_image_extension(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def plan_output(item: InputItem, output: str | None, single_file_target: bool, suffix: str, fmt: str) -> Path | None:
    """The output path for one input; None means standard output.

    single_file_target: OUTPUT names a file (one input and OUTPUT with an image extension)."""
    from .imageio import FORMAT_EXTENSIONS

    if output is None or output == STDIO:
        if not item.is_stdin and output is None:
            raise UsageError("give an output with -o/--output (a folder, or a file for one input; '-' for stdout)")
        return None
    out = Path(output).expanduser()
    if single_file_target:
        return out
    rel = item.rel
    ext = rel.suffix if fmt == "same" else FORMAT_EXTENSIONS[fmt]
    if item.is_stdin:
        ext = FORMAT_EXTENSIONS["png"] if fmt == "same" else ext
    if ext.lower() not in IMAGE_EXTENSIONS:
        ext = ".png"
    return out / rel.with_name(rel.stem + suffix + ext)
