"""Sample-quality metrics: FID, KID and Inception Score, on torch-fidelity's InceptionV3.

Why torch-fidelity: pi-GAN's own evaluation script computes its FID, KID and IS with it, so numbers
from here are comparable with the paper's; one InceptionV3 pass gives both the 2048-d pool features
(FID, KID) and the logits (IS); its network is a port of the TensorFlow graph behind published FIDs
(torchmetrics builds its FID on the same class; pytorch-fid has neither KID nor IS); and it accepts
a local weights file, which offline machines need. The metric maths (Frechet distance, the unbiased
polynomial-kernel MMD, the IS split mean) are torch-fidelity's functions too; this module only
validates inputs, converts arrays and fixes the conventions below.

Conventions: ``kid_from_features`` returns MMD^2 itself (not x100; ``pigan eval`` reports KID x100
as the pi-GAN paper does and says so). A feature extractor is any object with a ``name`` (recorded
with every number) that maps uint8 images [N, 3, H, W] to ``(features [N, D], logits [N, C] or
None)``; ``InceptionExtractor`` is the real one, tests inject small ones.

Weights are never downloaded silently from here: ``find_inception_weights`` takes an explicit path,
then ``$PIGAN_INCEPTION``, then torch-fidelity's own download cache (torch hub's checkpoints
folder), and otherwise raises ``InceptionWeightsNotFound`` naming the file and where it comes from.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["frechet_distance", "fid_from_features", "kid_from_features", "inception_score",
           "find_inception_weights", "InceptionWeightsNotFound", "InceptionExtractor",
           "INCEPTION_ENV", "INCEPTION_FILE"]

INCEPTION_ENV = "PIGAN_INCEPTION"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _fidelity(module: str):
    """A torch_fidelity submodule, or an ImportError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(f"torch_fidelity.{module}")
    except ImportError as exc:
        raise ImportError("pigan.metrics needs torch-fidelity (pip install torch-fidelity, or "
                          "pip install 'pigan-kernels[research]')") from exc


def _as_2d(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {tuple(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


# ------------------------------------------------------------------------------------ FID
def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)). mu [D], sigma [D, D]."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of one length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape [{d}, {d}] to match the means, got {s.shape}")
    fid = _fidelity("metric_fid").fid_statistics_to_metric(
        {"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
    return float(fid["frechet_inception_distance"])


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D] with N-1 normalisation) of features [N, D], N >= 2."""
    f = _as_2d("features", features)
    if f.shape[0] < 2:
        raise ValueError(f"features need at least 2 rows for a covariance, got {f.shape[0]}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def fid_from_features(real, fake) -> float:
    """FID between two sets of features, real [N, D] and fake [M, D] (N, M >= 2)."""
    r, f = _as_2d("real", real), _as_2d("fake", fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real and fake features differ in width: {r.shape[1]} vs {f.shape[1]}")
    return frechet_distance(*feature_statistics(r), *feature_statistics(f))


# ------------------------------------------------------------------------------------ KID
def kid_from_features(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 0):
    """Kernel Inception Distance: (mean, std) over ``subsets`` of the unbiased MMD^2 with the cubic
    kernel (x.y / D + 1)^3. Each subset draws ``min(subset_size, N, M)`` rows of each set without
    replacement (numpy RandomState(seed)). Not scaled (the pi-GAN paper reports x100)."""
    r, f = _as_2d("real", real), _as_2d("fake", fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real and fake features differ in width: {r.shape[1]} vs {f.shape[1]}")
    if int(subsets) < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(int(subset_size), r.shape[0], f.shape[0])
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 rows; got subset_size={subset_size} with "
                         f"{r.shape[0]} real and {f.shape[0]} fake rows")
    out = _fidelity("metric_kid").kid_features_to_metric(
        torch.from_numpy(r), torch.from_numpy(f), kid_subsets=int(subsets), kid_subset_size=m,
        rng_seed=int(seed), verbose=False, kid_kernel="poly", kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    return float(out["kernel_inception_distance_mean"]), float(out["kernel_inception_distance_std"])


# ------------------------------------------------------------------------------------ IS
def inception_score(logits, splits: int = 10, seed: int = 2020):
    """Inception Score (mean, std over ``splits``) from classifier logits [N, C]: exp of the mean
    KL(p(y|x) || p(y)) per split, rows shuffled with RandomState(seed) first (torch-fidelity's)."""
    lg = _as_2d("logits", logits)
    if not 1 <= int(splits) <= lg.shape[0]:
        raise ValueError(f"splits must be in [1, N={lg.shape[0]}], got {splits}")
    out = _fidelity("metric_isc").isc_features_to_metric(
        torch.from_numpy(lg), splits=int(splits), shuffle=True, rng_seed=int(seed))
    return float(out["inception_score_mean"]), float(out["inception_score_std"])


# ------------------------------------------------------------------------------------ InceptionV3
class InceptionWeightsNotFound(FileNotFoundError):
    """No local InceptionV3 weights; the message names the file and where it normally comes from."""


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _weights_url() -> str:
    try:
        return _fidelity("feature_extractor_inceptionv3").URL_INCEPTION_V3
    except (ImportError, AttributeError):
        return f"torch-fidelity's GitHub release v0.2.0 ({INCEPTION_FILE})"


def find_inception_weights(path=None) -> Path:
    """The InceptionV3 weights file to use: ``path``, else ``$PIGAN_INCEPTION``, else torch-fidelity's
    download cache. Never downloads; raises ``InceptionWeightsNotFound`` when none exists."""
    looked = []
    for source, candidate in (("--inception", path), (f"${INCEPTION_ENV}", os.environ.get(INCEPTION_ENV))):
        if candidate:
            p = Path(candidate).expanduser()
            if not p.is_file():
                raise InceptionWeightsNotFound(f"{source} names {str(p)!r}, which is not a file")
            return p
        looked.append(f"{source} (not given)")
    cached = _hub_checkpoint_dir() / INCEPTION_FILE
    if cached.is_file():
        return cached
    looked.append(str(cached))
    raise InceptionWeightsNotFound(
        f"InceptionV3 weights {INCEPTION_FILE} not found (looked at: {'; '.join(looked)}). It is "
        f"torch-fidelity's FID Inception, normally downloaded on first use from {_weights_url()}; "
        f"on a machine without network access copy that file to this machine and pass --inception PATH or set "
        f"{INCEPTION_ENV}=PATH.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InceptionExtractor:
    """torch-fidelity's InceptionV3 ('inception-v3-compat'): pool features [N, 2048] and unbiased
    logits [N, 1008] of uint8 images [N, 3, H, W] (resized to 299 inside, as TensorFlow did).

    ``name`` records the library version and the weights' SHA-256 prefix, so cached statistics and
    reported numbers always say which network produced them.
    """

    def __init__(self, weights=None, device="cpu"):
        path = find_inception_weights(weights)
        fe = _fidelity("feature_extractor_inceptionv3")
        import torch_fidelity

        # Checked as plain tensors first: the library itself unpickles the file without restriction.
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{str(path)!r} is not a loadable InceptionV3 state dict: {exc}") from exc
        self.weights = path
        self.device = torch.device(device)
        self.net = fe.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(path)).to(self.device)
        self.name = (f"torch-fidelity {torch_fidelity.__version__} inception-v3-compat "
                     f"pool3/2048 sha256:{_sha256(path)[:12]}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        feats, logits = self.net(images.to(self.device))
        return feats.double().cpu(), logits.double().cpu()
