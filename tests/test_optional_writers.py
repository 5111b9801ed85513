"""The optional writers, when their packages are installed (they are not in requirements.txt; each test
skips without its package, and tests elsewhere cover the fallbacks): TensorBoard scalars, the
matplotlib loss plot, and the MP4 orbit video through imageio + ffmpeg."""
import pytest
import torch

from pigan.cli import render as render_cli
from pigan.cli import train as train_cli
from pigan.checkpoints import save_checkpoint
from pigan.curriculums import get_curriculum
from pigan.generators import ImplicitGenerator3d
from pigan.logging_utils import ScalarLogger, plot_loss_csv


def _write_log(folder, steps, tensorboard):
    log = ScalarLogger(folder, tensorboard=tensorboard)
    for step in range(1, steps + 1):
        log.log(step, d_loss=1.0 / step, g_loss=float(step))
    log.close()


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    _write_log(tmp_path, 4, tensorboard=True)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"d_loss", "g_loss"} <= set(acc.Tags()["scalars"])
    assert [(e.step, e.value) for e in acc.Scalars("g_loss")] == [(s, float(s)) for s in range(1, 5)]


def test_matplotlib_loss_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    _write_log(tmp_path, 5, tensorboard=False)
    png = plot_loss_csv(tmp_path / "log.csv", tmp_path / "loss.png")
    im = Image.open(png)
    assert im.format == "PNG" and min(im.size) >= 200
    assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50   # a drawn figure, not blank


def test_render_writes_an_mp4(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    torch.manual_seed(0)
    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8)
    cur = {str(k) if isinstance(k, int) else k: v for k, v in get_curriculum("demo").items()}
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, generator=g, ema=g.state_dict(), config=cur, extra={"step": 1})
    out = tmp_path / "out"
    assert render_cli.main([str(path), "--out", str(out), "--num", "1", "--identities", "1", "--views", "2",
                            "--pitches", "1", "--resolution", "16", "--steps", "4", "--frames", "5",
                            "--no-progress", "--device", "cpu"]) == 0
    frames = iio.imread(out / "video.mp4")
    assert frames.shape[0] == 5 and frames.shape[-1] == 3 and frames.shape[1] >= 16


def test_train_with_tensorboard_flag(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))
    tiny = ["--set", "hidden_dim=8", "--set", "map_hidden_dim=8", "--set", "latent_dim=8",
            "--set", "disc_max_channels=8", "--img-size", "8", "--batch-size", "2", "--num-steps", "4",
            "--num-images", "8", "--no-progress", "--num-samples", "2", "--sample-every", "0", "--no-final"]
    assert train_cli.main(tiny + ["--out", str(tmp_path / "run"), "--max-steps", "2", "--log-every", "1",
                              "--tensorboard"]) == 0
    assert any((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
