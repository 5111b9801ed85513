"""pigan train --eval-every: metrics computed during training, logged to log.csv and plotted, with an
injected feature extractor (the InceptionV3 weights are not available offline); the missing-weights
error before any work; and the log's header widening when new columns appear."""
import pytest
import torch

pytest.importorskip("torch_fidelity")

from pigan import metrics  # noqa: E402
from pigan import training as train  # noqa: E402
from pigan.cli import train as train_cli  # noqa: E402
from pigan.common import UsageError  # noqa: E402
from pigan.logging_utils import ScalarLogger, read_csv  # noqa: E402
from pigan.training import evaluation  # noqa: E402

TINY = ["--set", "hidden_dim=16", "--set", "map_hidden_dim=16", "--set", "latent_dim=8",
        "--set", "disc_max_channels=16", "--img-size", "8", "--batch-size", "4", "--num-steps", "6",
        "--num-images", "32", "--no-progress", "--num-samples", "4", "--no-tensorboard"]


class PoolExtractor:
    name = "test-pool4x4"

    def __call__(self, images):
        f = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, 4).flatten(1)
        return f, 4 * f[:, :10]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))


def test_eval_every_logs_and_plots_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(metrics, "find_inception_weights", lambda path=None: tmp_path)
    monkeypatch.setattr(metrics, "InceptionExtractor", lambda weights, device: PoolExtractor())
    out = tmp_path / "run"
    code = train_cli.main(["--out", str(out), "--max-steps", "4", "--log-every", "1", "--eval-every", "2",
                       "--eval-real-count", "12", "--eval-fake-count", "6", "--eval-size", "8", *TINY])
    assert code == 0
    rows = read_csv(out / "log.csv")
    evals = [r for r in rows if r.get("fid")]
    assert [int(float(r["step"])) for r in evals] == [2, 4]
    for r in evals:
        assert float(r["fid"]) > 0 and r["kid_x100"] != "" and r["is"] != ""
    assert all(r["d_loss"] for r in rows if not r.get("fid"))       # loss rows keep their columns
    assert (out / "metrics.png").stat().st_size > 0
    assert "test-pool4x4" in capsys.readouterr().err


def test_eval_every_without_weights_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(metrics.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(metrics, "fid_helper_weights", lambda: None)
    code = train_cli.main(["--out", str(tmp_path / "run"), "--max-steps", "2", "--eval-every", "1", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "--eval-every" in err and metrics.INCEPTION_FILE in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_eval_settings_come_from_the_curriculum():
    config = train.TrainConfig()
    evaluation.resolve(config, {"eval_fake_count": 64, "eval_img_size": 32})
    assert (config.eval_every, config.eval_real_count, config.eval_fake_count, config.eval_size) == (0, 8000, 64, 32)


@pytest.mark.parametrize("field, value, message", [
    ("eval_every", -1, "--eval-every must be a non-negative integer, got -1"),
    ("eval_real_count", 1, "--eval-real-count must be a number >= 2, got 1"),
    ("eval_fake_count", 0, "--eval-fake-count must be a positive integer, got 0"),
    ("eval_size", 0, "--eval-size must be a positive integer, got 0"),
])
def test_bad_eval_settings(field, value, message):
    with pytest.raises(UsageError, match=message):
        evaluation.resolve(train.TrainConfig(**{field: value}), {})


def test_scalar_logger_widens_its_header(tmp_path):
    log = ScalarLogger(tmp_path, tensorboard=False)
    log.log(1, d_loss=1.0)
    log.log(2, fid=5.0)
    log.log(3, d_loss=0.5)
    log.close()
    rows = read_csv(tmp_path / "log.csv")
    assert [(r["step"], r["d_loss"], r["fid"]) for r in rows] == [("1", "1.0", ""), ("2", "", "5.0"),
                                                                  ("3", "0.5", "")]
    again = ScalarLogger(tmp_path, tensorboard=False)           # a resumed run reads the wide header
    assert again.fields == ["step", "d_loss", "fid"]
