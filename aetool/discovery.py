"""Finding input images and naming their outputs."""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import UsageError

# What a folder scan or a glob pattern takes. GIF gives its first frame; HEIC/HEIF needs the
# optional pillow-heif (a clear per-file error without it).
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".avif", ".gif", ".heic", ".heif"}
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


def _walk(root: Path, recursive: bool, skip_folder: Path | None = None, max_depth: int | None = None,
          extensions: set[str] = IMAGE_EXTENSIONS) -> list[Path]:
    found = []
    skip = skip_folder.resolve() if skip_folder is not None else None
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            depth = len(Path(dirpath).relative_to(root).parts)
            # Never descend into the output folder: a re-run must not take outputs as inputs.
            dirnames[:] = [] if max_depth is not None and depth >= max_depth else sorted(
                d for d in dirnames if not is_hidden_or_system(d)
                and (skip is None or (Path(dirpath) / d).resolve() != skip))
            found.extend(Path(dirpath) / f for f in sorted(filenames))
    else:
        found = sorted(p for p in root.iterdir() if p.is_file())
    return [p for p in found if not is_hidden_or_system(p.name) and p.suffix.lower() in extensions]


def _glob_regex(pattern: str) -> re.Pattern:
    """A --include/--exclude pattern as a regular expression: `*` and `?` stay within one name,
    `**` crosses folders (`**/` also matches no folder), `[abc]`/`[!abc]` are sets; any case."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end].replace("\\", "\\\\")
            # [!abc] is glob's negation; a leading ^ is a plain character there, as in fnmatch.
            body = "^" + body[1:] if body.startswith("!") else ("\\" + body if body.startswith("^") else body)
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


class PathFilter:
    """--include/--exclude. A pattern with a `/` is matched against the path relative to the folder
    given (or to the fixed part of a glob input), one without against the file name alone."""

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = ()):
        self.include = [self._compile(p) for p in include]
        self.exclude = [self._compile(p) for p in exclude]

    @staticmethod
    def _compile(pattern: str) -> tuple[bool, re.Pattern]:
        pattern = pattern.replace(os.sep, "/").removeprefix("./")
        if not pattern:
            raise UsageError("--include/--exclude need a pattern such as '*.jpg' or 'raw/**'")
        return "/" in pattern, _glob_regex(pattern)

    def takes(self, rel: Path) -> bool:
        def hit(rules):
            return any(rx.fullmatch(rel.as_posix() if whole_path else rel.name) for whole_path, rx in rules)

        return (not self.include or hit(self.include)) and not hit(self.exclude)


def collect_inputs(inputs: list[str], recursive: bool = False, *, output: str | Path | None = None,
                   suffix: str = "", fmt: str = "same", include: Iterable[str] = (), exclude: Iterable[str] = (),
                   max_depth: int | None = None, extensions: set[str] = IMAGE_EXTENSIONS,
                   output_extensions: set[str] = IMAGE_EXTENSIONS) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns. Returns the items and (input, reason) for those
    that do not exist (failures to report, not a reason to stop the batch).

    output, suffix, fmt: the run's -o, --suffix and --format, to tell outputs of an earlier run
    (in an output folder that is, or is inside, an input folder) from inputs. include, exclude:
    --include/--exclude patterns for files found in folders and by glob patterns (a file named
    on the command line is always taken). max_depth: folder levels to go down (implies recursive;
    0 = the folder itself). extensions: what folder scans and glob patterns take (images, or .aei
    files for decompress); output_extensions: what an output file name may end with."""
    if max_depth is not None:
        if max_depth < 0:
            raise UsageError("--max-depth must be 0 (the folder itself) or more")
        recursive = True
    selected = PathFilter(include, exclude)
    out_folder = _output_folder(output, output_extensions)
    items: list[InputItem] = []
    missing: list[tuple[str, str]] = []
    for raw in inputs:
        if raw == STDIO:
            items.append(InputItem(None, Path("stdin"), explicit=True))
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            found = [InputItem(p, p.relative_to(path))
                     for p in _walk(path, recursive, out_folder, max_depth, extensions)]
            items.extend(it for it in found if selected.takes(it.rel))
        elif path.is_file():
            items.append(InputItem(path, Path(path.name), explicit=True))
        elif glob.has_magic(raw):
            base = Path(raw.split("*")[0].split("?")[0].split("[")[0]).expanduser()
            base = base if str(base).endswith(os.sep) or base.is_dir() else base.parent
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True))
            matches = [m for m in matches if m.is_file() and not is_hidden_or_system(m.name)
                       and m.suffix.lower() in extensions]
            found = []
            for m in matches:
                try:
                    rel = m.relative_to(base)
                except ValueError:
                    rel = Path(m.name)
                found.append(InputItem(m, rel, explicit=True))
            found = [it for it in found if selected.takes(it.rel)]
            if not found:
                missing.append((raw, "the pattern matches no file" + (" that --include/--exclude take"
                                                                          if matches else "")))
            items.extend(found)
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
    if out_folder is not None:
        unique = _without_earlier_outputs(unique, out_folder, suffix, fmt)
    return unique, missing


def _output_folder(output: str | Path | None, output_extensions: set[str] = IMAGE_EXTENSIONS) -> Path | None:
    """-o as a folder; None for standard output or a single output file."""
    if output is None or str(output) == STDIO:
        return None
    out = Path(output).expanduser()
    return None if has_image_extension(out, output_extensions) and not out.is_dir() else out


def _without_earlier_outputs(items: list[InputItem], out_folder: Path, suffix: str, fmt: str) -> list[InputItem]:
    """Drop the files that this run would write for another input: with -o inside (or equal to)
    an input folder they are outputs of an earlier run, and taking them makes a_dn_dn.png."""
    files = [it for it in items if not it.is_stdin]
    source = {id(it): it.path.resolve() for it in files}
    target = {id(it): (out_folder / output_relpath(it, suffix, fmt)).resolve() for it in files}
    written_for_others = {target[id(it)] for it in files if target[id(it)] != source[id(it)]}
    # A file that would be its own output (no suffix, -o = input folder) stays an input, so that
    # the run reports "would overwrite the input" instead of silently doing nothing.
    return [it for it in items if it.is_stdin or source[id(it)] not in written_for_others
            or target[id(it)] == source[id(it)]]


def has_image_extension(path: str | Path, extensions: set[str] = IMAGE_EXTENSIONS) -> bool:
    return Path(path).suffix.lower() in extensions


def output_relpath(item: InputItem, suffix: str, fmt: str) -> Path:
    """The output's path below the output folder: REL with the suffix added to its stem, and the
    extension of --format (for `same`, the input's when aetool can write that format, else .png:
    GIF, HEIC and standard input become PNG). A `fmt` that starts with a dot is the extension
    itself (".aei" for compress)."""
    from .imageio import FORMAT_EXTENSIONS, PIL_FORMATS

    rel = item.rel
    if fmt.startswith("."):
        ext = fmt
    elif fmt != "same":
        ext = FORMAT_EXTENSIONS[fmt.lower()]
    elif not item.is_stdin and rel.suffix.lower() in PIL_FORMATS:
        ext = rel.suffix
    else:
        ext = ".png"
    return rel.with_name(rel.stem + suffix + ext)


def plan_output(item: InputItem, output: str | None, single_file_target: bool, suffix: str, fmt: str) -> Path | None:
    """The output path for one input; None means standard output.

    single_file_target: OUTPUT names a file (one input and OUTPUT with an image extension)."""
    if output is None or output == STDIO:
        if not item.is_stdin and output is None:
            raise UsageError("give an output with -o/--output (a folder, or a file for one input; '-' for stdout)")
        return None
    out = Path(output).expanduser()
    if single_file_target:
        return out
    return out / output_relpath(item, suffix, fmt)
