"""`pigan train`: losses and updates, exact resume after SIGTERM, progressive growing, argument checks."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pigan import curriculums as C
from pigan import training as train
from pigan.checkpoints import load_checkpoint
from pigan.cli import train as train_cli
from pigan.common import UsageError

TINY = ["--set", "hidden_dim=16", "--set", "map_hidden_dim=16", "--set", "latent_dim=8",
        "--set", "disc_max_channels=16", "--img-size", "8", "--batch-size", "4", "--num-steps", "6",
        "--num-images", "32", "--no-progress", "--num-samples", "4"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))


def _env(tmp_path):
    env = dict(os.environ, PIGAN_CACHE=str(tmp_path / "cache"))
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _tiny(**kw) -> train.TrainConfig:
    """TINY as a TrainConfig."""
    return train.TrainConfig(sets=["hidden_dim=16", "map_hidden_dim=16", "latent_dim=8", "disc_max_channels=16"],
                             img_size=8, batch_size=4, num_steps=6, num_images=32, no_progress=True,
                             num_samples=4, **kw)


def _flat(state):
    return {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}


def test_few_steps_finite_losses_and_parameters_move(tmp_path):
    config, cur, _ = train.resolve_config(_tiny(out=str(tmp_path / "run"), max_steps=2))
    trainer = train.Trainer(config, cur)
    g0, d0 = _flat(trainer.generator.state_dict()), _flat(trainer.discriminator.state_dict())
    meta = C.extract_metadata(cur, 0)
    trainer.ensure_data(meta)
    for _ in range(2):
        real, trainer.epoch, trainer.position = trainer.stream.next(trainer.epoch, trainer.position, trainer.step)
        out = trainer.train_step(real, meta)
        for key in ("d_loss", "g_loss", "r1", "d_grad_norm", "g_grad_norm"):
            assert math.isfinite(out[key]), (key, out)
        assert out["r1"] > 0 and out["g_identity"] > 0     # R1 and the position loss are on in the demo
    assert trainer.step == 2
    moved_g = [k for k, v in trainer.generator.state_dict().items() if k in g0 and not torch.equal(v, g0[k])]
    moved_d = [k for k, v in trainer.discriminator.state_dict().items() if k in d0 and not torch.equal(v, d0[k])]
    assert "siren.network.0.layer.weight" in moved_g and "siren.mapping_network.network.0.weight" in moved_g
    assert any(k.startswith("final_layer") for k in moved_d)
    assert int(trainer.ema.n_averaged) == 2 and int(trainer.ema2.n_averaged) == 2
    # the EMA lies between the initial and the current weights (warm-up decay, not a copy)
    k = "siren.network.0.layer.weight"
    e, g, i = trainer.ema.module.state_dict()[k], trainer.generator.state_dict()[k], g0[k]
    assert not torch.equal(e, g) and not torch.equal(e, i)


def test_ema_warmup_is_torch_emas_on_real_modules():
    """torch_ema: update k (1-based) makes s <- d s + (1 - d) p with d = min(decay, (1 + k) / (10 + k)),
    the first update included; checked in float64 over several updates of a real generator."""
    from pigan.generators import ImplicitGenerator3d
    torch.manual_seed(0)
    g = ImplicitGenerator3d("TALLSIREN", 4, hidden_dim=8, map_hidden_dim=8).double()
    for decay in (0.999, 0.5):
        ema = train.EMA(g, decay)
        want = {k: v.detach().clone() for k, v in g.named_parameters()}
        for k in range(1, 8):
            with torch.no_grad():
                for p in g.parameters():
                    p.add_(torch.randn_like(p))
            ema.update_parameters(g)
            d = min(decay, (1 + k) / (10 + k))
            for name, p in g.named_parameters():
                want[name] = d * want[name] + (1 - d) * p.detach()
            got = dict(ema.module.named_parameters())
            for name in want:
                torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12)
            assert int(ema.n_averaged) == k
    assert train.ema_decay(0.999, 1) == 2 / 11 and train.ema_decay(0.9, 1000) == 0.9


def test_ema_state_round_trips_as_an_averaged_model():
    from torch.optim.swa_utils import AveragedModel

    from pigan.generators import ImplicitGenerator3d
    g = ImplicitGenerator3d("TALLSIREN", 4, hidden_dim=8, map_hidden_dim=8)
    ema = train.EMA(g, 0.999)
    ema.update_parameters(g)
    plain = AveragedModel(g)
    plain.load_state_dict(ema.state_dict())              # the checkpoint format is unchanged
    assert int(plain.n_averaged) == 1


def test_batch_stream_shards_and_order(tmp_path):
    from pigan.data import ProceduralShapes
    ds = ProceduralShapes(img_size=8, num_images=16, render_size=8, cache=False)
    s0 = train.BatchStream(ds, 4, seed=0, rank=0, world=2, num_workers=0, device=torch.device("cpu"))
    s1 = train.BatchStream(ds, 4, seed=0, rank=1, world=2, num_workers=0, device=torch.device("cpu"))
    b0, b1 = s0._epoch_batches(0, 0), s1._epoch_batches(0, 0)
    flat0, flat1 = sum(b0, []), sum(b1, [])
    assert len(b0) == 2 and not set(flat0) & set(flat1) and len(set(flat0 + flat1)) == 16
    assert s0._epoch_batches(1, 0) != b0          # a new epoch reshuffles
    assert s0._epoch_batches(0, 1) == b0[1:]      # resuming mid-epoch continues the same order
    with pytest.raises(UsageError, match="too few"):
        train.BatchStream(ds, 16, seed=0, rank=0, world=2, num_workers=0, device=torch.device("cpu"))


def test_progressive_growing_from_a_curriculum_file(tmp_path):
    cur = train.load_curriculum("demo")
    cur = {k: v for k, v in cur.items() if not isinstance(k, int)}
    cur.update({"0": {"batch_size": 4, "num_steps": 6, "img_size": 8, "batch_split": 2, "gen_lr": 1e-4, "disc_lr": 1e-4},
                "3": {"batch_size": 2, "num_steps": 6, "img_size": 16, "batch_split": 1, "gen_lr": 1e-4, "disc_lr": 1e-4},
                "5": {}, "fade_steps": 4, "hidden_dim": 16, "map_hidden_dim": 16, "latent_dim": 8,
                "disc_max_channels": 16})
    path = tmp_path / "cur.json"
    path.write_text(json.dumps(cur))
    out = tmp_path / "grow"
    code = train_cli.main(["--curriculum", str(path), "--out", str(out), "--log-every", "1", "--no-progress",
                       "--num-images", "16", "--sample-every", "0", "--num-samples", "2"])
    assert code == 0
    from pigan.logging_utils import read_csv
    rows = read_csv(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]      # the empty stage at 5 ends training
    assert [int(float(r["img_size"])) for r in rows] == [8, 8, 8, 16, 16]
    assert [float(r["alpha"]) for r in rows] == [0.0, 0.25, 0.5, 0.0, 0.25]   # fade restarts at the upsample
    for name in ("samples.png", "multiview.png", "loss.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 5 and ckpt["training"]["data_key"] == [16, 2]


def _run(args, tmp_path, **kw):
    return subprocess.run([sys.executable, "-m", "pigan", "train", *args], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120, **kw)


def test_sigterm_then_resume_continues_exactly(tmp_path):
    common = TINY + ["--log-every", "1", "--sample-every", "2", "--ckpt-every", "3", "--no-final"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pigan", "train", *common, "--out", str(out),
                             "--max-steps", "100000"], env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = out / "log.csv"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 5:     # header + 4 steps
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by signal" in stdout
    ckpt = load_checkpoint(out / "checkpoint.pt")
    k = ckpt["step"]
    assert k >= 4 and ckpt["ema"]["n_averaged"].item() == k
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    total = k + 2
    res = _run(common + ["--out", str(out), "--resume", "--max-steps", str(total)], tmp_path)
    assert res.returncode == 0, res.stderr
    resumed = load_checkpoint(out / "checkpoint.pt")
    assert resumed["step"] == total
    assert resumed["ema"]["n_averaged"].item() == total
    assert resumed["training"]["ema2"]["n_averaged"].item() == total
    from pigan.logging_utils import read_csv
    assert [int(r["step"]) for r in read_csv(log)] == list(range(1, total + 1))

    # an uninterrupted run of the same length ends with bit-identical weights, EMA and optimizer state
    ref = tmp_path / "straight"
    res = _run(common + ["--out", str(ref), "--max-steps", str(total)], tmp_path)
    assert res.returncode == 0, res.stderr
    straight = load_checkpoint(ref / "checkpoint.pt")
    for part in ("generator", "discriminator", "ema"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)
    sa, sb = straight["training"]["opt_g"]["state"], resumed["training"]["opt_g"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


@pytest.mark.parametrize("extra, message", [
    (["--curriculum", "nonexistent"], "unknown curriculum 'nonexistent'"),
    (["--batch-size", "-4"], "batch_size (stage 0) must be a positive integer, got -4"),
    (["--img-size", "0"], "img_size (stage 0) must be a positive integer"),
    (["--num-steps", "-1"], "num_steps (stage 0) must be a positive integer"),
    (["--num-steps", "1"], "num_steps (stage 0) must be at least 2"),
    (["--set", "fov=0"], "fov (degrees) must be a number > 0 and < 180, got 0"),
    (["--set", "ray_end=0.5"], "ray_end must be a number > 0.88"),
    (["--set", "topk_v=1.5"], "topk_v must be a number > 0 and <= 1"),
    (["--set", "clamp_mode=tanh"], "clamp_mode must be one of relu, softplus"),
    (["--set", "r1_lambda=-1"], "r1_lambda must be a number >= 0"),
    (["--set", "betas=0.5"], "betas must be two numbers in [0, 1)"),
    (["--set", "*.gen_lr=nan"], "gen_lr must be a positive number"),
    (["--max-steps", "-10"], "--max-steps must be a positive integer"),
    (["--img-size", "12"], "img_size must be a power of two"),
    (["--batch-size", "6", "--batch-split", "4"], "not divisible by batch_split 4"),
    (["--data", "/definitely/not/here"], "data folder '/definitely/not/here' does not exist"),
    (["--set", "gen_lr"], "--set expects key=value"),
    (["--resume"], "--resume: no checkpoint at"),
])
def test_bad_arguments_fail_before_training(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = train_cli.main(["--out", str(out), "--max-steps", "1", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("pigan train: error:")
    assert not (out / "checkpoint.pt").exists() and not (out / "log.csv").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = train_cli.main(TINY + ["--out", str(blocker / "run"), "--max-steps", "1"])
    assert code == 3
    err = capsys.readouterr().err
    assert "is not writable" in err and err.count("\n") == 1


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = train_cli.main(TINY + ["--out", str(tmp_path / "o"), "--data", str(tmp_path / "empty"),
                                  "--max-steps", "1"])
    assert code == 2
    assert "contains no images" in capsys.readouterr().err


def test_overrides_and_curriculum_files(tmp_path):
    cur = train.apply_overrides(train.load_curriculum("demo"),
                                ["fov=15", "0.batch_size=2", "*.num_steps=5", "white_back=false", "model=TALLSIREN"])
    assert cur["fov"] == 15 and cur[0]["batch_size"] == 2 and cur["white_back"] is False
    assert all(cur[s]["num_steps"] == 5 for s in C.training_stages(cur)) and cur["model"] == "TALLSIREN"
    py = tmp_path / "c.py"
    py.write_text("import math\ncurriculum = {0: {'batch_size': 2, 'num_steps': 4, 'img_size': 8}, 'fov': math.pi}\n")
    assert train.load_curriculum(str(py))["fov"] == math.pi
    with pytest.raises(UsageError, match="does not exist"):
        train.load_curriculum(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="could not read curriculum file"):
        train.load_curriculum(str(bad))


def test_the_curriculums_embedded_dataset_is_the_default_data(tmp_path):
    out = str(tmp_path / "run")
    assert train.resolve_config(train.TrainConfig(curriculum="faces", out=out))[0].data == "faces"
    assert train.resolve_config(train.TrainConfig(curriculum="demo", out=out))[0].data == "procedural"
    assert train.resolve_config(train.TrainConfig(curriculum="faces", data="procedural", out=out))[0].data \
        == "procedural"
    folder = tmp_path / "imgs"
    folder.mkdir()
    sets = ["dataset=folder", f"dataset_path={folder}"]
    config = train.resolve_config(train.TrainConfig(curriculum="demo", sets=sets, out=out))[0]
    assert config.data == str(folder)


def test_the_flags_are_the_configs_fields(tmp_path):
    """pigan train's flags map one to one onto TrainConfig, with the same defaults."""
    import dataclasses
    dests = {a.dest for a in train_cli.build_parser()._actions if a.dest != "help"}
    assert dests == {f.name for f in dataclasses.fields(train.TrainConfig)}
    assert train_cli.parse_config([]) == train.TrainConfig()
    assert train_cli.parse_config(TINY + ["--out", "o", "--no-tensorboard", "--resume"]) == \
        _tiny(out="o", tensorboard=False, resume="auto")


def test_resolve_config_fills_a_copy(tmp_path):
    given = _tiny(out=str(tmp_path / "run"))
    config, cur, resume_state = train.resolve_config(given)
    assert given == _tiny(out=str(tmp_path / "run"))              # the caller's config is left as given
    assert resume_state is None and C.final_step(cur) == config.max_steps
    assert (config.log_every, config.sample_every, config.eval_every, config.data) == (
        cur.get("log_every", 10), cur.get("sample_every", 500), 0, "procedural")
    with pytest.raises(UsageError, match="--max-time must be a number > 0, got -1"):
        train.resolve_config(_tiny(out=str(tmp_path / "run"), max_time=-1))


def test_curriculum_name_wins_over_a_directory_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()                  # e.g. a previous run's --out demo
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    assert train.load_curriculum("demo")["hidden_dim"] == train.load_curriculum("DEMO")["hidden_dim"]
    with pytest.raises(UsageError, match="curriculum file 'other' does not exist"):
        train.load_curriculum("other")


def test_scalar_log_and_loss_plot_always_png(tmp_path, monkeypatch):
    from PIL import Image

    from pigan import logging_utils as lu
    log = lu.ScalarLogger(tmp_path, tensorboard=False)
    for s in range(1, 6):
        log.log(s, d_loss=1.0 / s, g_loss=float(s))
    log.truncate_after(3)                      # a resumed run drops the steps it will replay
    log.log(4, d_loss=0.5, g_loss=2.0)
    log.close()
    rows = lu.read_csv(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and float(rows[-1]["g_loss"]) == 2.0
    log = lu.ScalarLogger(tmp_path, tensorboard=False)
    log.log(5, d_loss=0.4, g_loss=2.5, fid=30.0)             # a new column widens the header
    log.close()
    rows = lu.read_csv(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5] and rows[0]["fid"] == "" and rows[4]["fid"] == "30.0"
    assert not (tmp_path / "log.csv.tmp").exists()
    # without matplotlib the plot is drawn with Pillow
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    png = lu.plot_loss_csv(tmp_path / "log.csv", tmp_path / "loss.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (800, 450)
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 3     # axes, two coloured curves
    assert lu.plot_loss_csv(tmp_path / "missing.csv", tmp_path / "empty.png").is_file()
