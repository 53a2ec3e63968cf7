"""Autoencoder benchmark (issue #12): embeddings, reconstruction and generation of the dense,
convolutional and variational autoencoders of `aetool train autoencoder`, against PCA at the same
dimension (and raw pixels, a PCA-GMM generator, the training images), and near-duplicate search on
photos against PCA of downscaled pixels and a perceptual hash. Protocol: docs/protocol.md,
"Autoencoders: embeddings, reconstruction, generation, near-duplicates".

Stages (each reads what the one before wrote under benchmarks/.cache/autoencoders/):
    python benchmarks/autoencoders.py train        # every model, by `aetool train autoencoder`
    python benchmarks/autoencoders.py evaluate     # the figures: results/autoencoders.json, docs/benchmarks.md
    python benchmarks/autoencoders.py              # both

Data: Fashion-MNIST (`apt-get install dataset-fashion-mnist`, MIT licence) exported to PNG by
benchmarks/fashion_mnist.py; the models train on the 60,000 training images (1,000 of them, chosen
by seed 0, held out for validation) and are measured on the 10,000 test images only.
scikit-learn's digits (1,797 8x8 images; the first 1,200 train, the rest test) as a second set.
The photo embedder trains on ../shared/data/train/{bsd200,t91} and is measured on other photos.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache" / "autoencoders"
SHARED = ROOT.parent / "shared" / "data"
ARCHS = ("dense", "conv", "vae")
LATENTS = (2, 16, 64)
# Training budget per model (minutes, one thread each, two at a time): chosen for a 2-core CPU.
MINUTES = {"dense": 3.0, "conv": 6.0, "vae": 6.0}
# Per-architecture options, chosen on the development split (--dev), never on the test images: masking
# noise (a denoising autoencoder) raised the dense model's logistic probe and kept its reconstruction;
# it lowered the conv model's reconstruction and the VAE's probes, so they train on clean inputs.
ARCH_OPTIONS = {"dense": ["--input-dropout", "0.25"], "conv": [], "vae": []}
PHOTO_MINUTES = 12.0
# The photo embedder sees the whole photo (--fit stretch): on the development photos (--dev --sets photos,
# training photos held out from its training) it found more near-duplicates than with the centre crop.


def fashion_jobs(minutes_scale: float = 1.0) -> list[tuple[str, list[str]]]:
    from fashion_mnist import export

    train = export() / "train"
    jobs = []
    for latent in LATENTS:
        for arch in ARCHS:
            out = CACHE / f"fashion-{arch}-{latent}.safetensors"
            jobs.append((out.stem, ["train", "autoencoder", "--arch", arch, *ARCH_OPTIONS[arch], "--data", str(train),
                                    "--size", "28", "--channels", "1", "--latent", str(latent), "--minutes",
                                    f"{MINUTES[arch] * minutes_scale:g}", "--threads", "1", "--out", str(out),
                                    "--name", out.stem]))
    return jobs


def digits_jobs() -> list[tuple[str, list[str]]]:
    folder = export_digits()
    jobs = []
    for arch in ARCHS:
        out = CACHE / f"digits-{arch}-2.safetensors"
        jobs.append((out.stem, ["train", "autoencoder", "--arch", arch, *ARCH_OPTIONS[arch], "--data",
                                str(folder / "train"), "--size", "8",
                                "--channels", "1", "--latent", "2", "--width", "32", "--minutes", "1", "--threads",
                                "1", "--val-count", "100", "--out", str(out), "--name", out.stem]))
    return jobs


def photo_jobs() -> list[tuple[str, list[str]]]:
    out = CACHE / "photo-embed.safetensors"
    return [(out.stem, ["train", "autoencoder", "--arch", "conv", "--data", str(SHARED / "train" / "bsd200"),
                        "--data", str(SHARED / "train" / "t91"), "--size", "64", "--fit", "stretch", "--augment", "crop",
                        "--channels", "3", "--latent", "64", "--width", "32,64,128", "--batch-size", "64",
                        "--val-count", "30", "--val-every", "500", "--minutes", f"{PHOTO_MINUTES:g}", "--threads", "1",
                        "--out", str(out), "--name", "photo-embed"])]


def export_digits() -> Path:
    """scikit-learn's digits (0-16 levels, 8x8) as 8-bit PNG: value * 255 / 16; first 1,200 train."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = CACHE / "digits"
    d = load_digits()
    for split, rows in (("train", range(0, 1200)), ("test", range(1200, len(d.images)))):
        folder = root / split
        if (folder / "labels.csv").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["file,label"]
        for i in rows:
            name = f"{i:04d}.png"
            Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8)).save(folder / name)
            lines.append(f"{name},{d.target[i]}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def train_all(args) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    jobs = []
    if "fashion" in args.sets:
        jobs += fashion_jobs(args.minutes_scale)
    if "digits" in args.sets:
        jobs += digits_jobs()
    if "photos" in args.sets:
        jobs = photo_jobs() + jobs  # the longest first

    def run(job):
        name, argv = job
        out = CACHE / f"{name}.safetensors"
        if out.is_file() and out.with_suffix(".json").is_file() and not args.retrain:
            return f"{name}: kept (--retrain to train again)"
        t0 = time.time()
        log = CACHE / f"{name}.log"
        with open(log, "w") as f:
            proc = subprocess.run([sys.executable, "-m", "aetool", *argv], stdout=f, stderr=subprocess.STDOUT)
        return f"{name}: exit {proc.returncode} in {time.time() - t0:.0f} s (log {log})"

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for line in pool.map(run, jobs):
            print(line, flush=True)


# ---------------------------------------------------------------- evaluation
def load_fashion():
    from fashion_mnist import load

    (xtr, ytr), (xte, yte) = load("train"), load("test")
    return xtr, ytr, xte, yte


def load_digits_split():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)
    return x[:1200], d.target[:1200], x[1200:], d.target[1200:]


def aetool_model(name: str):
    from aetool import Autoencoder

    return Autoencoder.load(str(CACHE / f"{name}.safetensors"), device="cpu")


def probes(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray) -> dict:
    """k-NN (k = 5, Euclidean, on the features as they are) and a logistic-regression probe
    (features standardised on the training split; lbfgs, C = 1, at most 1,000 iterations)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    t0 = time.time()
    knn = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(ftr, ytr)
    knn_acc = float((knn.predict(fte) == yte).mean())
    scaler = StandardScaler().fit(ftr)
    logistic = LogisticRegression(max_iter=1000).fit(scaler.transform(ftr), ytr)
    log_acc = float((logistic.predict(scaler.transform(fte)) == yte).mean())
    return {"knn": round(knn_acc, 4), "logistic": round(log_acc, 4), "seconds": round(time.time() - t0, 1)}


def psnr_per_image(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(mean squared error on 0-255, mean over images of the PSNR) of 8-bit images."""
    ref = ref.reshape(len(ref), -1).astype(np.float64)
    out = np.clip(np.round(out.reshape(len(out), -1).astype(np.float64)), 0, 255)
    mse = ((ref - out) ** 2).mean(1)
    return float(mse.mean()), float(np.mean(10 * np.log10(255 ** 2 / np.maximum(mse, 1e-10))))


def feature_study(name: str, xtr, ytr, xte, yte, latents, archs, prefix: str, raw: bool = True) -> dict:
    """Probes and reconstruction for PCA, raw pixels and each autoencoder, at each dimension."""
    from sklearn.decomposition import PCA

    out: dict = {}
    if raw:
        out["raw"] = probes(xtr.reshape(len(xtr), -1) / 255, ytr, xte.reshape(len(xte), -1) / 255, yte)
        print(f"{name} raw pixels: {out['raw']}", flush=True)
    for d in latents:
        row: dict = {}
        pca = PCA(n_components=d, svd_solver="full", random_state=0).fit(xtr.reshape(len(xtr), -1) / 255)
        ptr, pte = pca.transform(xtr.reshape(len(xtr), -1) / 255), pca.transform(xte.reshape(len(xte), -1) / 255)
        row["pca"] = probes(ptr, ytr, pte, yte)
        mse, p = psnr_per_image(xte, pca.inverse_transform(pte) * 255)
        row["pca"].update({"mse": round(mse, 2), "psnr": round(p, 2)})
        for arch in archs:
            model_name = f"{prefix}-{arch}-{d}"
            if not (CACHE / f"{model_name}.safetensors").is_file():
                continue
            ae = aetool_model(model_name)
            t0 = time.time()
            etr, ete = ae.embed_inputs(xtr[..., None]), ae.embed_inputs(xte[..., None])
            embed_seconds = time.time() - t0
            row[arch] = probes(etr, ytr, ete, yte)
            mse, p = psnr_per_image(xte, ae.decode(ete)[..., 0] * 255)
            card = json.loads((CACHE / f"{model_name}.json").read_text())
            row[arch].update({"mse": round(mse, 2), "psnr": round(p, 2), "embed_images_per_second":
                              round((len(xtr) + len(xte)) / embed_seconds), "train_steps": card["training"]["steps"],
                              "train_seconds": card["training"]["seconds"]})
        out[str(d)] = row
        print(f"{name} d={d}: " + "; ".join(f"{k} {v['knn']}/{v['logistic']}/{v.get('psnr')}" for k, v in row.items()),
              flush=True)
    return out


# ---- generation: FID and precision/recall in the feature space of a classifier we train here
class SmallClassifier:
    """A small CNN trained on the Fashion-MNIST training split (2 epochs, Adam, seed 0): its
    128-number penultimate layer is the feature space of FID and precision/recall (not Inception:
    no weights can be downloaded here)."""

    def __init__(self, xtr, ytr):
        import torch
        from torch import nn

        torch.manual_seed(0)
        self.torch = torch
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)
        params = list(self.body.parameters()) + list(self.head.parameters())
        opt = torch.optim.Adam(params, 1e-3)
        x = torch.from_numpy(xtr).float().div(255)[:, None]
        y = torch.from_numpy(ytr.astype(np.int64))
        gen = torch.Generator().manual_seed(0)
        for _ in range(2):
            for idx in torch.randperm(len(x), generator=gen).split(128):
                loss = nn.functional.cross_entropy(self.head(self.body(x[idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.body.eval()
        self.head.eval()

    def features(self, images: np.ndarray) -> np.ndarray:
        torch = self.torch
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 1000):
                out.append(self.body(torch.from_numpy(images[i:i + 1000]).float().div(255)[:, None]).numpy())
        return np.concatenate(out).astype(np.float64)

    def accuracy(self, images, labels) -> float:
        torch = self.torch
        with torch.no_grad():
            f = torch.from_numpy(self.features(images)).float()
            return float((self.head(f).argmax(1).numpy() == labels).mean())


def fid(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: precision = share of fakes inside the real manifold (a ball of
    each real point's k-th neighbour distance), recall the other way round."""
    def radii(x):
        d = pairwise(x, x)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    def inside(points, manifold, r):
        hit = np.zeros(len(points), bool)
        for s in range(0, len(points), 1000):
            hit[s:s + 1000] = (pairwise(points[s:s + 1000], manifold) <= r[None, :]).any(1)
        return float(hit.mean())

    rr, rf = radii(real), radii(fake)
    return inside(fake, real, rr), inside(real, fake, rf)


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0))


def generation_study(xtr, ytr, xte, yte, latents) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    import torch

    t0 = time.time()
    clf = SmallClassifier(xtr, ytr)
    out: dict = {"classifier": {"test_accuracy": round(clf.accuracy(xte, yte), 4),
                                "train_seconds": round(time.time() - t0)}}
    print(f"classifier: {out['classifier']}", flush=True)
    n = len(xte)
    real = clf.features(xte)
    rng = np.random.default_rng(0)

    def score(images):
        f = clf.features(images)
        p, r = precision_recall(real, f)
        return {"fid": round(fid(real, f), 3), "precision": round(p, 4), "recall": round(r, 4)}

    out["train_images"] = score(xtr[rng.choice(len(xtr), n, replace=False)])
    flat = xtr.reshape(len(xtr), -1) / 255
    pca = PCA(n_components=16, svd_solver="full", random_state=0).fit(flat)
    gmm = GaussianMixture(n_components=10, covariance_type="full", random_state=0).fit(pca.transform(flat))
    z, _ = gmm.sample(n)
    gmm_images = np.clip(np.round(pca.inverse_transform(z) * 255), 0, 255).astype(np.uint8).reshape(n, 28, 28)
    out["pca16_gmm"] = score(gmm_images)
    print(f"floor {out['train_images']}, PCA-GMM {out['pca16_gmm']}", flush=True)
    for d in latents:
        name = f"fashion-vae-{d}"
        if not (CACHE / f"{name}.safetensors").is_file():
            continue
        ae = aetool_model(name)
        row = {}
        for t in (1.0, 0.8):
            images = np.round(ae.generate(n, seed=0, temperature=t)[..., 0] * 255).astype(np.uint8)
            row[f"t{t:g}"] = score(images)
        # NLL by importance sampling on the first NLL_IMAGES test images
        gen = torch.Generator().manual_seed(0)
        x = torch.from_numpy(xte[:NLL_IMAGES]).float().div(255)[:, None]
        t1 = time.time()
        with torch.no_grad():
            ll = torch.cat([ae.model.log_likelihood(x[i:i + 100], samples=NLL_SAMPLES, generator=gen)
                            for i in range(0, len(x), 100)])
            mu, logvar = ae.model.posterior(x)
            nll_elbo, kl = ae.model.loss_terms(x, torch.randn(mu.shape, generator=gen))
        nll = float(-ll.mean())
        row["nll_nats"] = round(nll, 1)
        row["bits_per_dim"] = round(nll / (784 * np.log(2)), 4)
        row["neg_elbo_nats"] = round(float((nll_elbo + kl).mean()), 1)
        row["nll_seconds"] = round(time.time() - t1)
        out[str(d)] = row
        print(f"vae-{d}: {row}", flush=True)
    return out


NLL_IMAGES = 2000
NLL_SAMPLES = 100


# ---- near-duplicates on photos
def photo_sources() -> list[tuple[str, np.ndarray]]:
    from common import list_images, read_image

    out = []
    for sub in ("kodak24", "mcmaster", "cbsd68"):
        for p in list_images(SHARED / "test" / "denoise" / sub):
            out.append((f"{sub}/{p.name}", read_image(p, "RGB")))
    from skimage import data

    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        out.append((f"skimage/{name}", getattr(data, name)()))
    return out


def variants(img: np.ndarray, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """The original and four altered copies: a crop of 70-85 % of each side at a random place,
    JPEG quality 30-60, a rotation by 3-8 degrees either way (centre crop of 80 % to drop the
    corners), and a half-size copy."""
    import io

    from PIL import Image

    h, w = img.shape[:2]
    out = [("original", img)]
    fy, fx = rng.uniform(0.7, 0.85, 2)
    ch, cw = int(h * fy), int(w * fx)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out.append(("crop", img[y:y + ch, x:x + cw]))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(rng.integers(30, 61)))
    out.append(("jpeg", np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))))
    angle = float(rng.uniform(3, 8) * rng.choice([-1, 1]))
    rot = np.asarray(Image.fromarray(img).rotate(angle, resample=Image.BICUBIC))
    out.append(("rotate", rot[int(h * 0.1):int(h * 0.9), int(w * 0.1):int(w * 0.9)]))
    out.append(("half", np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.BICUBIC))))
    return out


def recall_at_1(codes: np.ndarray, groups: np.ndarray, kinds: list[str], metric: str = "euclidean") -> dict:
    if metric == "hamming":
        d = (codes[:, None, :] != codes[None, :, :]).sum(-1).astype(float)
    else:
        d = pairwise(codes.astype(np.float64), codes.astype(np.float64))
    np.fill_diagonal(d, np.inf)
    # ties broken at random (seeded): a hash with many equal distances gets no free lunch
    jitter = np.random.default_rng(0).random(d.shape) * 1e-9
    hit = groups[np.argmin(d + jitter, axis=1)] == groups
    out = {"all": round(float(hit.mean()), 4)}
    for k in sorted(set(kinds)):
        sel = np.array([kk == k for kk in kinds])
        out[k] = round(float(hit[sel].mean()), 4)
    return out


def held_out_training_photos(count: int = 30) -> list[tuple[str, np.ndarray]]:
    """The training photos that `aetool train autoencoder --val-count 30` (seed 0) holds out: the
    development set for choices about the photo embedder (no test photo is used for them)."""
    from common import read_image

    from aetool.training.autoencoder import seeded_hold_out
    from aetool.training.data import list_images

    files = list_images([SHARED / "train" / "bsd200", SHARED / "train" / "t91"])
    _, held = seeded_hold_out(files, count, 0)
    return [(p.name, read_image(p, "RGB")) for p in held]


def near_duplicate_study(sources=None, models=("photo-embed",)) -> dict:
    import imagehash
    from PIL import Image
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    images, groups, kinds = [], [], []
    for g, (_, img) in enumerate(sources or photo_sources()):
        for kind, im in variants(img, rng):
            images.append(im)
            groups.append(g)
            kinds.append(kind)
    groups = np.array(groups)
    out: dict = {"photos": int(groups.max() + 1), "images": len(images)}

    def small(im, side=16):
        return np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR), np.float64).ravel() / 255

    from common import list_images, read_image

    train = [read_image(p, "RGB") for sub in ("bsd200", "t91") for p in list_images(SHARED / "train" / sub)]
    pca = PCA(n_components=64, svd_solver="full", random_state=0).fit(np.stack([small(t) for t in train]))
    out["pca64_16px"] = recall_at_1(pca.transform(np.stack([small(im) for im in images])), groups, kinds)
    hashes = np.array([imagehash.phash(Image.fromarray(im)).hash.ravel() for im in images])
    out["phash"] = recall_at_1(hashes, groups, kinds, "hamming")
    for name in models:
        if not (CACHE / f"{name}.safetensors").is_file():
            continue
        ae = aetool_model(name)
        t0 = time.time()
        codes = ae.embed(images)
        key = "aetool_" + name.replace("-", "_")
        out[key] = recall_at_1(codes, groups, kinds)
        out[key]["images_per_second"] = round(len(images) / (time.time() - t0), 1)
    print(f"near-duplicates: {out}", flush=True)
    return out


def figures(xte, yte) -> None:
    """README figures: VAE-16 samples, a walk, and the test set's map by the 2-D conv model."""
    from aetool.tasks.autoencoder import grid

    from PIL import Image

    if (CACHE / "fashion-vae-16.safetensors").is_file():
        ae = aetool_model("fashion-vae-16")
        g = grid(ae.generate(64, seed=0, temperature=1.0), 16, 2)
        Image.fromarray(np.round(g[..., 0] * 255).astype(np.uint8)).save(ROOT / "docs" / "autoencoder-samples.png")
    if (CACHE / "fashion-conv-2.safetensors").is_file():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from fashion_mnist import CLASSES

        codes = aetool_model("fashion-conv-2").embed_inputs(xte[..., None])
        fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
        for k, name in enumerate(CLASSES):
            sel = yte == k
            ax.scatter(codes[sel, 0], codes[sel, 1], s=2, label=name, color=plt.get_cmap("tab10")(k))
        ax.legend(markerscale=5, fontsize=8)
        ax.set_title("Fashion-MNIST test set, 2-D code of fashion-conv-2 (no labels in training)")
        fig.tight_layout()
        fig.savefig(ROOT / "docs" / "autoencoder-map.png")
        plt.close(fig)


def markdown(r: dict) -> str:
    from common import machine_line, md_table

    lines = ["## Autoencoders: embeddings, reconstruction, generation, near-duplicates", "",
             f"`python benchmarks/autoencoders.py` on {r['date']}; {machine_line(r['machine'])}. Protocol: "
             "docs/protocol.md, \"Autoencoders\". Every model was trained by `aetool train autoencoder` in the same "
             "script (one CPU thread, a fixed time budget: see its card) and is measured on test images only.", ""]
    names = {"raw": "raw pixels", "pca": "PCA", "dense": "dense AE", "conv": "conv AE", "vae": "VAE"}
    targets = []
    if "fashion_features" in r:
        f = r["fashion_features"]
        lines += ["### Fashion-MNIST features (10,000 test images): k-NN (k = 5) / logistic accuracy, "
                  "reconstruction PSNR (dB)", ""]
        rows = []
        for d in map(str, LATENTS):
            for key, v in f.get(d, {}).items():
                rows.append([d, names[key], f"{v['knn']:.4f}", f"{v['logistic']:.4f}", f"{v['psnr']:.2f}",
                             f"{v.get('train_steps', '-')}", f"{v.get('train_seconds', 0) / 60:.1f}" if key != "pca" else "-"])
        rows.append(["784", "raw pixels", f"{f['raw']['knn']:.4f}", f"{f['raw']['logistic']:.4f}", "-", "-", "-"])
        lines += [md_table(["dim", "method", "k-NN", "logistic", "PSNR", "train steps", "train min"], rows), ""]
        for d, margin in (("16", 0.02), ("2", 0.10)):
            row = f.get(d, {})
            aes = {k: v for k, v in row.items() if k != "pca"}
            if not aes:
                continue
            for probe in ("knn", "logistic"):
                best = max(aes, key=lambda k: aes[k][probe])
                need = row["pca"][probe] + margin
                ok = aes[best][probe] >= need
                targets.append([f"dim {d} {probe}", f"best AE >= PCA-{d} + {margin:.2f} = {need:.4f}",
                                f"{names[best]} {aes[best][probe]:.4f}", "PASS" if ok else "MISS"])
        for d in map(str, LATENTS):
            row = f.get(d, {})
            worse = [names[k] for k in ("dense", "conv", "vae") if k in row and row[k]["psnr"] < row["pca"]["psnr"]]
            if worse:
                lines.append(f"- Reconstruction at dimension {d}: PCA ({row['pca']['psnr']:.2f} dB) beats "
                             f"{', '.join(worse)}.")
        lines.append("")
    if "digits_features" in r:
        f = r["digits_features"]
        lines += ["### scikit-learn digits (597 test images, 8x8), dimension 2: k-NN / logistic, PSNR (dB)", ""]
        rows = [[names[k], f"{v['knn']:.4f}", f"{v['logistic']:.4f}", f"{v['psnr']:.2f}"] for k, v in f["2"].items()]
        rows.append(["raw pixels (64)", f"{f['raw']['knn']:.4f}", f"{f['raw']['logistic']:.4f}", "-"])
        lines += [md_table(["method", "k-NN", "logistic", "PSNR"], rows), ""]
    if "fashion_generation" in r:
        g = r["fashion_generation"]
        lines += ["### Fashion-MNIST generation (10,000 samples against the 10,000 test images)", "",
                  f"FID, precision and recall (k = 3) in the 128-number feature space of a small CNN that the "
                  f"benchmark trains on the training split (test accuracy {g['classifier']['test_accuracy']:.4f}); "
                  "not Inception FID. NLL: importance sampling with "
                  f"{NLL_SAMPLES} samples on the first {NLL_IMAGES:,} test images (discretised-logistic likelihood "
                  "of the 8-bit pixels; uniform over 256 levels would be 4,347 nats).", ""]
        rows = [["training images (floor)", "-", f"{g['train_images']['fid']:.2f}",
                 f"{g['train_images']['precision']:.3f}", f"{g['train_images']['recall']:.3f}", "-", "-"],
                ["PCA-16 + GMM (10 components)", "-", f"{g['pca16_gmm']['fid']:.2f}",
                 f"{g['pca16_gmm']['precision']:.3f}", f"{g['pca16_gmm']['recall']:.3f}", "-", "-"]]
        for d in map(str, LATENTS):
            if d not in g:
                continue
            for t in ("t1", "t0.8"):
                v = g[d][t]
                rows.append([f"aetool VAE-{d}, temperature {t[1:]}", d, f"{v['fid']:.2f}", f"{v['precision']:.3f}",
                             f"{v['recall']:.3f}", f"{g[d]['nll_nats']:.1f}" if t == "t1" else "",
                             f"{g[d]['bits_per_dim']:.3f}" if t == "t1" else ""])
        lines += [md_table(["samples", "latent", "FID", "precision", "recall", "NLL (nats)", "bits/dim"], rows), ""]
        vaes = [d for d in map(str, LATENTS) if d in g]
        if vaes:
            best = min(vaes, key=lambda d: g[d]["t1"]["fid"])
            ok = g[best]["t1"]["fid"] < g["pca16_gmm"]["fid"]
            targets.append(["generation FID", f"below PCA-16 GMM {g['pca16_gmm']['fid']:.2f} (temperature 1)",
                            f"VAE-{best} {g[best]['t1']['fid']:.2f}", "PASS" if ok else "MISS"])
    if "near_duplicates" in r:
        n = r["near_duplicates"]
        lines += [f"### Near-duplicates on photos: recall@1 ({n['photos']} photos, 5 versions each, {n['images']} "
                  "images)", ""]
        kinds = ["all", "original", "crop", "jpeg", "rotate", "half"]
        rows = []
        for key, label in (("aetool_photo_embed", "aetool photo-embed (64 numbers)"),
                           ("pca64_16px", "PCA-64 of 16x16 pixels"), ("phash", "perceptual hash (imagehash.phash)")):
            if key in n:
                rows.append([label] + [f"{n[key][k]:.3f}" for k in kinds])
        lines += [md_table(["method"] + kinds, rows), ""]
    if targets:
        lines += ["### Targets", "", md_table(["target", "needed", "measured", "result"], targets), ""]
    lines.append(f"Run time {r['seconds'] / 60:.0f} min (evaluation only; training is in each card).")
    return "\n".join(lines)


SHIPPED = {"fashion-dense": "fashion-dense-16", "fashion-conv": "fashion-conv-16", "fashion-vae": "fashion-vae-16",
           "photo-embed": "photo-embed"}


def update_cards(results: dict) -> None:
    """Write this run's figures into the shipped cards whose weights are the very files measured
    (same sha256); a shipped file that differs is left alone, with a message."""
    import hashlib

    for shipped, measured in SHIPPED.items():
        card_path = ROOT / "weights" / f"{shipped}.json"
        src = CACHE / f"{measured}.safetensors"
        if not card_path.is_file() or not src.is_file():
            continue
        card = json.loads(card_path.read_text())
        if hashlib.sha256(src.read_bytes()).hexdigest() != card.get("sha256"):
            print(f"{shipped}: not updated: weights/{shipped}.safetensors is not {src.name} of this run", flush=True)
            continue
        metrics = {"benchmark": "benchmarks/autoencoders.py", "date": results["date"]}
        if shipped == "photo-embed":
            nd = results.get("near_duplicates", {})
            metrics["near_duplicate_recall_at_1"] = nd.get("aetool_photo_embed")
            metrics["baselines"] = {k: nd.get(k, {}).get("all") for k in ("pca64_16px", "phash")}
        else:
            arch = measured.split("-")[1]
            row = results.get("fashion_features", {}).get("16", {})
            metrics["fashion_mnist_test"] = {k: row.get(arch, {}).get(k) for k in ("knn", "logistic", "psnr", "mse")}
            metrics["pca16"] = {k: row.get("pca", {}).get(k) for k in ("knn", "logistic", "psnr")}
            if arch == "vae":
                g = results.get("fashion_generation", {})
                metrics["generation"] = {"vae": g.get("16"), "pca16_gmm": g.get("pca16_gmm"),
                                         "train_images": g.get("train_images"), "classifier": g.get("classifier")}
        card["metrics"] = metrics
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"{shipped}: card metrics updated", flush=True)


def evaluate(args) -> dict:
    from common import machine

    started = time.time()
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    xtr, ytr, xte, yte = load_fashion()
    if args.dev:  # choices are made here: probes fitted on 50,000 training images, scored on the other 10,000
        xtr, ytr, xte, yte = xtr[:50000], ytr[:50000], xtr[50000:], ytr[50000:]
        if "fashion" in args.sets:
            results["dev"] = feature_study("fashion-dev", xtr, ytr, xte, yte, args.latents, ARCHS, "fashion",
                                           raw=False)
        if "photos" in args.sets:
            results["dev_near_duplicates"] = near_duplicate_study(held_out_training_photos(), args.photo_models)
        Path(args.out_json).write_text(json.dumps(results, indent=1) + "\n")
        return results
    if "fashion" in args.sets:
        results["fashion_features"] = feature_study("fashion", xtr, ytr, xte, yte, LATENTS, ARCHS, "fashion")
        results["fashion_generation"] = generation_study(xtr, ytr, xte, yte, LATENTS)
        figures(xte, yte)
    if "digits" in args.sets:
        dx = load_digits_split()
        results["digits_features"] = feature_study("digits", *dx, (2,), ARCHS, "digits")
    if "photos" in args.sets:
        results["near_duplicates"] = near_duplicate_study()
    results["seconds"] = round(time.time() - started)
    Path(args.out_json).write_text(json.dumps(results, indent=1) + "\n")
    from common import write_section

    write_section(Path(args.out_md), "autoencoders", markdown(results))
    if args.update_cards:
        update_cards(results)
    print(f"wrote {args.out_json} and the autoencoders section of {args.out_md}", flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", nargs="?", choices=["train", "evaluate", "all"], default="all")
    ap.add_argument("--sets", nargs="+", default=["fashion", "digits", "photos"])
    ap.add_argument("--parallel", type=int, default=2, help="trainings at a time (one thread each)")
    ap.add_argument("--minutes-scale", type=float, default=1.0, help="multiply the Fashion-MNIST budgets")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--out-json", default=str(ROOT / "benchmarks" / "results" / "autoencoders.json"))
    ap.add_argument("--out-md", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--dev", action="store_true", help="feature probes on a development split of the training "
                    "images only (50,000 / 10,000), for choices; writes --out-json only")
    ap.add_argument("--latents", type=int, nargs="+", default=list(LATENTS), help="with --dev: which code sizes")
    ap.add_argument("--photo-models", nargs="+", default=["photo-embed"], help="with --dev: photo embedders "
                    "(files in the cache) to compare on the held-out training photos")
    ap.add_argument("--update-cards", action="store_true", help="write the figures into the shipped cards "
                    "(fashion-dense, fashion-conv, fashion-vae, photo-embed) whose weights this run measured")
    args = ap.parse_args()
    if args.stage in ("train", "all"):
        train_all(args)
    if args.stage in ("evaluate", "all"):
        evaluate(args)


if __name__ == "__main__":
    main()
