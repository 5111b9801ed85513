"""`pigan.encoder` and `pigan train-encoder`: the network's shapes for the generators it serves, the
camera range, a short training run, resuming, the generator check, and `pigan invert --encoder`.

The training tests use test_invert's posable generator (smooth fields, pose visible in the renders):
on a freshly initialised siren the renders hardly depend on the pose or the latent (a ridge
regression from pixels predicts neither), so there would be nothing to learn in a few steps.
"""
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from pigan.checkpoints import save_checkpoint
from pigan.cli.invert import main as invert_main
from pigan.cli.train_encoder import main as train_main
from pigan.encoder import (EncoderConfig, EncoderTrainOptions, LatentEncoder, encoder_config_for, film_layer_count,
                           generator_hash, level_of_layer, load_encoder, predict_start, train_encoder)
from pigan.generators import ImplicitGenerator3d
from pigan.model.render_options import RenderOptions

OPTS = {"fov": 12, "ray_start": 0.88, "ray_end": 1.12, "hierarchical_sample": False, "white_back": True,
        "clamp_mode": "softplus", "h_stddev": 0.3, "v_stddev": 0.155, "sample_dist": "gaussian"}
CUR = {"0": {"batch_size": 2, "num_steps": 4, "img_size": 8}, "h_mean": math.pi / 2, "v_mean": math.pi / 2, **OPTS}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _posable_generator(seed=0, hidden_dim=32):
    """test_invert's posable generator: damped first layer, calm mapping network, strong colours."""
    torch.manual_seed(seed)
    g = ImplicitGenerator3d("SPATIALSIRENBASELINE", 16, hidden_dim=hidden_dim, map_hidden_dim=32)
    with torch.no_grad():
        g.siren.network[0].layer.weight *= 0.1
        g.siren.mapping_network.network[-1].weight *= 0.1
        g.siren.color_layer_linear[0].weight *= 8
    return g


def _render():
    return RenderOptions.from_metadata(OPTS, img_size=8, num_steps=4)


def _train_options(**kw):
    values = dict(max_steps=30, batch_size=16, img_size=8, lr=3e-3, log_every=1, ckpt_every=0, num_avg=500,
                  channels=8)
    values.update(kw)
    return EncoderTrainOptions(**values)


@pytest.mark.parametrize("siren,hidden,grid", [("SPATIALSIRENBASELINE", 32, 0), ("TALLSIREN", 64, 0),
                                               ("SPATIALSIRENBASELINE", 32, 4)])
def test_pyramid_and_heads_follow_the_generator(siren, hidden, grid):
    g = ImplicitGenerator3d(siren, 8, hidden_dim=hidden, map_hidden_dim=16, feature_grid_channels=grid,
                            feature_grid_size=4)
    L = film_layer_count(g)
    assert L == len(g.siren.network) + 1 == 9
    config = encoder_config_for(g, _render(), img_size=16)
    assert (config.hidden_dim, config.num_film_layers) == (hidden, L)
    enc = LatentEncoder(config)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    feats = enc.backbone(x)
    assert [f.shape[-1] for f in feats] == [8, 4, 2, 1]                      # finest first
    pyramid = enc.fpn(feats)
    assert [tuple(p.shape[1:]) for p in pyramid] == [(config.fpn_dim, s, s) for s in (1, 2, 4, 8)]
    out = enc(x)
    assert out["offsets"].shape == (3, 2, L, hidden) and out["pitch"].shape == out["yaw"].shape == (3,)
    # untrained, the prediction is the mean latent at the mean pose: today's inversion start
    assert torch.all(out["offsets"] == 0) and torch.allclose(out["yaw"], torch.full((3,), math.pi / 2))
    f, p = enc.latent(out["offsets"])
    assert f.shape == p.shape == (3, L * hidden)
    # coarse levels serve the early layers, the finest the late ones and the colour layer
    levels = [level_of_layer(i, L, 4) for i in range(L)]
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] == 3
    # any input size is resized to the encoder's; one image needs eval mode (batch norm)
    assert enc.eval()(torch.zeros(1, 3, 40, 40))["offsets"].shape == (1, 2, L, hidden)


def test_camera_stays_inside_the_curriculum_range_for_extreme_inputs():
    c = EncoderConfig(hidden_dim=8, num_film_layers=3, img_size=8, channels=4, fpn_dim=8, head_dim=8,
                      h_stddev=0.3, v_stddev=0.155, pose_range=2.0)
    enc = LatentEncoder(c)
    with torch.no_grad():
        enc.pose_head[-1].weight.normal_(0, 100.0)
        enc.pose_head[-1].bias.fill_(1e4)
    for scale in (1e6, -1e6, 0.0):
        out = enc(torch.full((2, 3, 8, 8), scale))
        assert torch.all((out["yaw"] - c.h_mean).abs() <= 2.0 * 0.3 + 1e-6)
        assert torch.all((out["pitch"] - c.v_mean).abs() <= 2.0 * 0.155 + 1e-6)
        assert torch.isfinite(out["yaw"]).all()
    with pytest.raises(ValueError, match="pose_range"):
        EncoderConfig(hidden_dim=8, num_film_layers=3, pose_range=0)


def test_training_lowers_the_loss_and_writes_its_files(tmp_path):
    g = _posable_generator()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    res = train_encoder(g, _render(), _train_options(max_steps=30), tmp_path)
    losses = res["losses"]
    assert res["step"] == 30 and res["reason"] == "max_steps" and len(losses) == 30
    # measured on seeds 0, 1, 2: the last five steps' mean is 0.60-0.65 x the first five's
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    for name in ("encoder.pt", "log.csv", "loss.png"):
        assert (tmp_path / name).is_file()
    state = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert state["generator_sha256"] == generator_hash(g) and state["generator_weights"] == "ema"
    assert state["step"] == 30 and "optimizer" in state and state["train_options"]["recon_weight"] == 0.0
    # the generator is left as it was
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())
    assert all(p.requires_grad for p in g.parameters())
    with pytest.raises(ValueError, match="exists"):
        train_encoder(g, _render(), _train_options(), tmp_path)


def test_resume_continues_at_the_saved_step(tmp_path):
    g = _posable_generator()
    o = _train_options(max_steps=4, recon_weight=0.5, recon_size=4, batch_size=4)
    render = _render().replace(hierarchical_sample=True)           # importance sampling draws too
    whole = train_encoder(g, render, o.replace(max_steps=8), tmp_path / "whole")
    train_encoder(g, render, o, tmp_path / "split")
    again = train_encoder(g, render, o.replace(max_steps=8), tmp_path / "split", resume=True)
    assert again["step"] == 8 and len(again["losses"]) == 4
    # same batches, same optimiser state: the resumed run repeats the uninterrupted one
    assert again["losses"] == pytest.approx(whole["losses"][4:], rel=1e-4, abs=1e-6)
    rows = (tmp_path / "split" / "log.csv").read_text().strip().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 9))
    with pytest.raises(ValueError, match="already at step 8"):
        train_encoder(g, render, o.replace(max_steps=8), tmp_path / "split", resume=True)
    with pytest.raises(ValueError, match="nothing to resume"):
        train_encoder(g, _render(), o, tmp_path / "none", resume=True)
    with pytest.raises(ValueError, match="was trained at"):                 # never a silent new size
        train_encoder(g, render, o.replace(max_steps=12, img_size=2 * o.img_size), tmp_path / "split", resume=True)


def test_a_stop_signal_saves_after_the_current_step(tmp_path):
    stop = SimpleNamespace(raised=True)                   # what SIGINT / SIGTERM set in the command
    res = train_encoder(_posable_generator(), _render(), _train_options(max_steps=10, batch_size=2), tmp_path,
                        stop=stop)
    assert res["reason"] == "signal" and res["step"] == 1
    assert torch.load(tmp_path / "encoder.pt", weights_only=True)["step"] == 1


def test_an_encoder_is_refused_for_another_generator(tmp_path):
    g = _posable_generator(0)
    train_encoder(g, _render(), _train_options(max_steps=1, batch_size=2), tmp_path)
    assert isinstance(load_encoder(tmp_path / "encoder.pt", g), LatentEncoder)
    other = _posable_generator(1)
    with pytest.raises(ValueError, match="trained for another generator"):
        load_encoder(tmp_path / "encoder.pt", other)
    with torch.no_grad():
        g.siren.final_layer.bias += 1e-6                  # one weight changed is another generator
    with pytest.raises(ValueError, match="trained for another generator"):
        load_encoder(tmp_path / "encoder.pt", g)
    (tmp_path / "junk.pt").write_bytes(b"no")
    with pytest.raises(ValueError, match="not a readable encoder file"):
        load_encoder(tmp_path / "junk.pt")


def _checkpoint(tmp_path, g):
    return save_checkpoint(tmp_path / "g.pt", generator=g, config=CUR)


def test_train_encoder_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(["--help"])
    assert exc.value.code == 0 and "--recon-weight" in capsys.readouterr().out
    ckpt = _checkpoint(tmp_path, _posable_generator())
    assert train_main([str(ckpt), "--out", str(tmp_path / "e"), "--max-steps", "0"]) == 2
    assert "--max-steps must be a positive integer, got 0" in capsys.readouterr().err
    assert train_main([str(ckpt), "--out", str(tmp_path / "e"), "--psi", "2"]) == 2
    assert "--psi must be a number" in capsys.readouterr().err
    args = [str(ckpt), "--out", str(tmp_path / "e"), "--max-steps", "2", "--batch-size", "2", "--num-avg", "64",
            "--no-progress", "--device", "cpu", "--log-every", "1"]
    assert train_main(args) == 0
    assert "done: step 2" in capsys.readouterr().out
    assert train_main(args) == 2 and "--resume" in capsys.readouterr().err
    assert train_main(args[:4] + ["3"] + args[5:] + ["--resume"]) == 0
    assert "done: step 3" in capsys.readouterr().out
    assert (tmp_path / "e" / "loss.png").is_file()
    state = torch.load(tmp_path / "e" / "encoder.pt", weights_only=True)
    assert state["step"] == 3 and state["generator_weights"] == "raw"      # the checkpoint has no EMA


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint, an encoder trained for it and an image rendered by it."""
    tmp = tmp_path_factory.mktemp("enc")
    g = _posable_generator()
    ckpt = _checkpoint(tmp, g)
    n = torch.get_num_threads()
    torch.set_num_threads(1)             # module scope: the per-test fixture is not in force yet
    try:
        train_encoder(g, _render(), _train_options(max_steps=20), tmp / "e", weights="raw")
    finally:
        torch.set_num_threads(n)
    torch.manual_seed(5)
    with torch.no_grad():
        f, p = g.siren.mapping_network(torch.randn(1, 16))
        img = g.render(frequencies=f, phase_shifts=p, pitch=math.pi / 2 + 0.05, yaw=math.pi / 2 + 0.2,
                       options=_render(), jitter=False)["pixels"][0]
    path = tmp / "x.png"
    Image.fromarray(((img.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()).save(path)
    return tmp, ckpt, tmp / "e" / "encoder.pt", path, g


def test_invert_with_the_encoder_alone_writes_every_output(trained, capsys):
    tmp, ckpt, enc, image, g = trained
    out = tmp / "inv0"
    args = [str(ckpt), str(image), "--out", str(out), "--num-avg", "64", "--views", "2", "--frames", "2",
            "--no-progress", "--no-ema", "--encoder", str(enc)]
    assert invert_main(args + ["--iterations", "0"]) == 0
    assert "best mse" in capsys.readouterr().out
    for suffix in ("_fit.png", "_loss.png", "_views.png", "_orbit.gif", "_latent.pt"):
        assert (out / f"x{suffix}").is_file(), suffix
    latent = torch.load(out / "x_latent.pt", weights_only=True)
    (f, p), (pitch, yaw) = predict_start(load_encoder(enc, g), torch.zeros(3, 8, 8))
    assert latent["frequencies"].shape == f.shape and len(latent["losses"]) == 0
    # without an encoder, zero iterations are still refused
    assert invert_main(args[:-2] + ["--iterations", "0"]) == 2
    assert "--iterations must be a positive integer" in capsys.readouterr().err
    assert invert_main(args + ["--z-iterations", "3"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_invert_from_the_encoder_never_ends_worse_than_its_start(trained, capsys, monkeypatch):
    from pigan.cli import invert as inv
    tmp, ckpt, enc, image, _ = trained
    results = []
    real_invert = inv.invert
    monkeypatch.setattr(inv, "invert", lambda *a, **k: results.append(real_invert(*a, **k)) or results[-1])
    args = [str(ckpt), str(image), "--out", str(tmp / "inv"), "--num-avg", "64", "--views", "2", "--frames", "2",
            "--no-progress", "--no-ema", "--encoder", str(enc), "--iterations", "15", "--fit-pose"]
    assert invert_main(args) == 0
    res = results[-1]
    start_mse = res["checks"][0][1]
    assert res["checks"][0][0] == 0 and res["mse"] <= start_mse and res["z_stage"] is None
    assert res["start_pose"] != (math.pi / 2, math.pi / 2)            # the encoder's pose, not the mean
    assert len(res["losses"]) == 15


def test_invert_refuses_an_encoder_of_another_generator(trained, tmp_path, capsys):
    _, _, enc, image, _ = trained
    other = _checkpoint(tmp_path, _posable_generator(3))
    assert invert_main([str(other), str(image), "--encoder", str(enc), "--no-ema", "--no-progress",
                        "--out", str(tmp_path / "o")]) == 2
    assert "trained for another generator" in capsys.readouterr().err
