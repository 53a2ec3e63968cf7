"""The files of `aetool embed`: the embedding table (Parquet, NumPy or CSV), each image's nearest
neighbours (CSV) and the 2-D map of the set (PNG). Every file is written atomically."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .errors import UsageError

TABLE_SUFFIXES = (".parquet", ".npy", ".csv")


def companion(path: Path, what: str) -> Path:
    """A file written beside the table: emb.parquet -> emb.paths.csv, emb.neighbours.csv."""
    return path.with_name(f"{path.stem}.{what}.csv")


def check_table_path(path: Path) -> None:
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise UsageError(f"-o {path.name}: the embedding table must end in .parquet, .npy (with a .paths.csv of "
                         "the files beside it) or .csv")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("writing .parquet needs pyarrow: pip install 'aetool[parquet]' (or write .npy or "
                             ".csv)") from None


def _csv_bytes(header: list[str], rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def write_table(path: Path, files: list[str], codes: np.ndarray) -> list[Path]:
    """One row per image, in the given order: (file, vector). Returns the files written."""
    codes = np.asarray(codes, np.float32)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, codes)
        write_atomic(path, buf.getvalue())
        paths = companion(path, "paths")
        write_atomic(paths, _csv_bytes(["row", "file"], enumerate(files)))
        return [path, paths]
    if suffix == ".csv":
        header = ["file"] + [f"z{i}" for i in range(codes.shape[1])]
        write_atomic(path, _csv_bytes(header, ([f] + [f"{v:.7g}" for v in row] for f, row in zip(files, codes))))
        return [path]
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = pa.FixedSizeListArray.from_arrays(pa.array(codes.ravel(), pa.float32()), codes.shape[1])
    table = pa.table({"file": pa.array(files, pa.string()), "embedding": vectors})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_atomic(path, buf.getvalue())
    return [path]


def read_table(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(files, codes (N, latent) float32) from a table that write_table wrote."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with open(companion(path, "paths"), newline="") as f:
            files = [row["file"] for row in csv.DictReader(f)]
        return files, np.load(path)
    if suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        return [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows], np.float32)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    codes = np.array(table.column("embedding").to_pylist(), np.float32)
    return table.column("file").to_pylist(), codes


def write_neighbours(path: Path, files: list[str], idx: np.ndarray, dist: np.ndarray) -> None:
    rows = ((files[i], r + 1, files[j], f"{d:.6g}") for i in range(len(files))
            for r, (j, d) in enumerate(zip(idx[i], dist[i])))
    write_atomic(path, _csv_bytes(["file", "rank", "neighbour", "distance"], rows))


def read_labels(path: Path) -> dict[str, str]:
    """file -> label from a CSV whose first column names the file (as given, or its name alone)
    and whose second holds the label; a header row is optional."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if len(r) >= 2]
    except OSError as exc:
        raise UsageError(f"--labels {path}: {exc.strerror or exc}") from None
    if not rows:
        raise UsageError(f"--labels {path}: no rows of file,label")
    if rows[0][0].strip().lower() in ("file", "path", "filename", "image"):
        rows = rows[1:]
    return {r[0].strip(): r[1].strip() for r in rows}


def label_of(labels: dict[str, str], file: str) -> str | None:
    if file in labels:
        return labels[file]
    return labels.get(Path(file).name)


THUMBNAILS_UP_TO = 150  # images in a set whose map shows each as a thumbnail


def plot_map(path: Path, points: np.ndarray, how: str, labels: list[str | None] | None = None,
             thumbs: np.ndarray | None = None, title: str = "") -> None:
    """A scatter plot of the set in 2-D (coloured by label when given; thumbnails for a small
    set), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    if labels is not None and any(lab is not None for lab in labels):
        names = sorted({lab for lab in labels if lab is not None})
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        for k, name in enumerate(names):
            sel = np.array([lab == name for lab in labels])
            ax.scatter(points[sel, 0], points[sel, 1], s=6, color=cmap(k % cmap.N), label=name, alpha=0.7)
        unlabelled = np.array([lab is None for lab in labels])
        if unlabelled.any():
            ax.scatter(points[unlabelled, 0], points[unlabelled, 1], s=6, color="0.6", label="(no label)")
        ax.legend(markerscale=3, fontsize=8, loc="best")
    else:
        ax.scatter(points[:, 0], points[:, 1], s=6, color="tab:blue", alpha=0.7)
    if thumbs is not None and len(thumbs) <= THUMBNAILS_UP_TO:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        zoom = 32 / max(thumbs.shape[1:3])
        for (x, y), im in zip(points, thumbs):
            img = im[..., 0] if im.shape[-1] == 1 else im
            box = AnnotationBbox(OffsetImage(img, zoom=zoom, cmap="gray" if img.ndim == 2 else None), (x, y),
                                 frameon=False)
            ax.add_artist(box)
        ax.margins(0.08)  # room for the thumbnails at the edges
    ax.set_title(title or "embedding map")
    ax.set_xlabel(how)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())
