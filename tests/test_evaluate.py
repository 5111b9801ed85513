"""pigan eval: the whole pipeline with a small injected feature extractor (the real InceptionV3
weights are not available offline), the real-feature cache, rank splitting, and the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torch_fidelity")

from inputs import blocky_images  # noqa: E402
from pigan import evaluate as ev  # noqa: E402
from pigan import metrics  # noqa: E402
from pigan.checkpoints import save_checkpoint  # noqa: E402
from pigan.cli import eval as eval_cli  # noqa: E402
from pigan.curriculums import get_curriculum  # noqa: E402
from pigan.generators import ImplicitGenerator3d  # noqa: E402


class PoolExtractor:
    """Features: 4x4 average-pooled colours [N, 48]; logits: a fixed projection of them [N, 10]."""

    name = "test-pool4x4"

    def __init__(self):
        self.proj = torch.randn(48, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.calls = 0

    def __call__(self, images):
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        self.calls += images.shape[0]
        f = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, 4).flatten(1)
        return f, 4 * f @ self.proj


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()
    cur = get_curriculum("demo")
    cur["h_stddev_eval"] = 0.1
    folder = tmp_path_factory.mktemp("ev")
    path = folder / "tiny.pt"
    save_checkpoint(path, generator=g, ema=g.state_dict(),
                    config={str(k) if isinstance(k, int) else k: v for k, v in cur.items()})
    real = blocky_images(folder / "real", 12, 20)
    return g, cur, path, real


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _settings(cur):
    return ev.eval_options(cur).replace(num_steps=4)


def test_eval_settings_use_the_evaluation_spread(tiny):
    _, cur, _, _ = tiny
    o = ev.eval_options(cur)
    assert o.h_stddev == 0.1 and o.v_stddev == cur["v_stddev"] and o.nerf_noise == 0
    assert ev.eval_options(get_curriculum("demo")).h_stddev == cur["h_stddev"]


def test_pipeline_numbers_and_cache(tiny, cache):
    g, cur, _, real = tiny
    ex = PoolExtractor()
    kw = dict(real_count=10, fake_count=6, size=8, batch_size=4, kid_subset_size=5, kid_subsets=4,
              is_splits=2)
    r1 = ev.evaluate(g, str(real), ex, _settings(cur), **kw)
    assert r1["real"]["count"] == 10 and r1["fake_count"] == 6 and not r1["real"]["cached"]
    assert ex.calls == 16
    for key in ("fid", "kid", "kid_x100", "is"):
        assert np.isfinite(r1[key])
    assert r1["fid"] > 0 and r1["kid_x100"] == pytest.approx(100 * r1["kid"])
    assert r1["kid_subset_size"] == 5 and r1["extractor"] == "test-pool4x4" and r1["is_splits"] == 2
    # Second run: real features come from the cache, identical numbers (same seed).
    r2 = ev.evaluate(g, str(real), ex, _settings(cur), **kw)
    assert r2["real"]["cached"] and ex.calls == 22
    assert r2["fid"] == r1["fid"] and r2["kid"] == r1["kid"] and r2["is"] == r1["is"]
    # Another count, size or extractor is another cache entry.
    r3 = ev.evaluate(g, str(real), ex, _settings(cur), **{**kw, "real_count": 9})
    assert not r3["real"]["cached"] and r3["real"]["cache"] != r1["real"]["cache"]
    other = PoolExtractor()
    other.name = "another"
    assert not ev.evaluate(g, str(real), other, _settings(cur), **kw)["real"]["cached"]
    # A new image in the folder changes the dataset key.
    Image.new("RGB", (20, 20), (9, 9, 9)).save(real / "zz.png")
    try:
        assert not ev.evaluate(g, str(real), ex, _settings(cur), **kw)["real"]["cached"]
    finally:
        (real / "zz.png").unlink()


def test_generated_set_against_itself_is_zero(tiny, cache):
    g, cur, _, _ = tiny
    ex = PoolExtractor()
    feats, logits, images = ev.generated_features(g, ex, _settings(cur), count=7, size=8, batch_size=3,
                                                  seed=4, keep_images=5)
    assert feats.shape == (7, 48) and logits.shape == (7, 10) and images.shape == (5, 3, 8, 8)
    r = ev.evaluate(g, feats, ex, _settings(cur), fake_count=7, size=8, batch_size=3, seed=4,
                    kid_subset_size=7, kid_subsets=3, is_splits=1)
    assert r["fid"] == pytest.approx(0, abs=1e-6)
    # The unbiased MMD^2 of a set against itself is not 0 but 2 (S - tr K) / (m (m - 1)) - 2 S / m^2.
    f = feats.numpy()
    k = (f @ f.T / f.shape[1] + 1) ** 3
    m = f.shape[0]
    assert r["kid"] == pytest.approx(2 * (k.sum() - np.trace(k)) / (m * (m - 1)) - 2 * k.sum() / m ** 2, rel=1e-9)
    # Another seed draws other images.
    other, _, _ = ev.generated_features(g, ex, _settings(cur), count=7, size=8, batch_size=3, seed=5)
    assert not torch.allclose(other, feats)


def test_generated_features_do_not_depend_on_the_rank_split(tiny, monkeypatch):
    g, cur, _, _ = tiny
    ex, s = PoolExtractor(), _settings(cur)
    single, single_logits, _ = ev.generated_features(g, ex, s, count=7, size=8, batch_size=2, seed=1)
    import torch.distributed as dist

    payloads = {}

    def fake_gather(out, obj):
        payloads[len(payloads)] = obj
        out[0], out[1] = obj, payloads.get(0, obj)

    monkeypatch.setattr(dist, "all_gather_object", fake_gather)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    ev.generated_features(g, ex, s, count=7, size=8, batch_size=2, seed=1, rank=1, world_size=2)
    assert sorted(payloads[0][0]) == [1, 3]                                 # rank 1: batches 1 and 3
    both, both_logits, _ = ev.generated_features(g, ex, s, count=7, size=8, batch_size=2, seed=1,
                                                 rank=0, world_size=2)
    torch.testing.assert_close(both, single)
    torch.testing.assert_close(both_logits, single_logits)


def test_uint8_conversion_rounds_and_clamps():
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0, -1 + 1 / 127.5])
    assert ev.to_uint8(x).tolist() == [0, 0, 128, 255, 255, 1]


def test_cli_offline_error(tiny, tmp_path, monkeypatch, capsys):
    _, _, path, real = tiny
    monkeypatch.delenv(metrics.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(metrics, "fid_helper_weights", lambda: None)
    rc = eval_cli.main([str(path), "--real", str(real), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and metrics.INCEPTION_FILE in err and "--inception" in err


def test_cli_bad_input(tiny, tmp_path, capsys):
    _, _, path, real = tiny
    assert eval_cli.main([str(tmp_path / "missing.pt"), "--real", str(real)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert eval_cli.main([str(path), "--real", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    for bad in (["--psi", "2"], ["--fake-count", "1"], ["--size", "0"]):
        assert eval_cli.main([str(path), "--real", str(real), *bad]) == 2
        assert bad[0] in capsys.readouterr().err


def test_cli_end_to_end_with_injected_extractor(tiny, tmp_path, cache, monkeypatch, capsys):
    _, _, path, real = tiny
    monkeypatch.setattr(metrics, "InceptionExtractor", lambda weights, device: PoolExtractor())
    out = tmp_path / "eval.json"
    rc = eval_cli.main([str(path), "--real", str(real), "--real-count", "8", "--fake-count", "4", "--size", "8",
                        "--batch-size", "2", "--kid-subset-size", "4", "--kid-subsets", "2", "--json", str(out),
                        "--no-progress", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["extractor"] == "test-pool4x4" and result["real"]["count"] == 8
    assert "KID x100" in printed and "pi-GAN" in printed and "test-pool4x4" in printed
    assert f"{result['fid']:.3f}" in printed
