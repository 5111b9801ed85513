"""Hostile conditions for the commands: full disks, read-only or wrong output paths, a resume with
another architecture, losses that go NaN, and what --no-final claims. Each failure is one line
``pigan CMD: error: ...`` with a documented exit code and no traceback."""
import errno
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from pigan import checkpoints, render
from pigan.checkpoints import load_checkpoint, save_checkpoint
from pigan.cli import EXIT_DIVERGED, EXIT_OUTPUT, EXIT_USAGE
from pigan.cli import convert as convert_cli
from pigan.cli import render as render_cli
from pigan.cli import train as train_cli
from pigan.generators import ImplicitGenerator3d

TINY = ["--set", "hidden_dim=16", "--set", "map_hidden_dim=16", "--set", "latent_dim=8",
        "--set", "disc_max_channels=16", "--img-size", "8", "--batch-size", "4", "--num-steps", "6",
        "--num-images", "32", "--no-progress", "--num-samples", "4", "--no-tensorboard"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIGAN_CACHE", str(tmp_path / "cache"))


def _one_error_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@contextmanager
def _tmpfs(path: Path, size: str, readonly: bool = False):
    """A small tmpfs at ``path`` (root only); skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'mount failed'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ---------------------------------------------------------------------------- disk full
def test_checkpoint_write_failure_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    """ENOSPC in the middle of a checkpoint write (simulated: torch.save writes a little, then fails)."""
    out = tmp_path / "run"
    assert train_cli.main(TINY + ["--out", str(out), "--max-steps", "2", "--ckpt-every", "1", "--no-final"]) == 0
    good = load_checkpoint(out / "checkpoint.pt")
    capsys.readouterr()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if "format" not in obj:                      # a dataset cache, not a checkpoint
            return real_save(obj, f, *a, **k)
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full_disk)
    code = train_cli.main(TINY + ["--out", str(out), "--resume", "--max-steps", "4", "--ckpt-every", "1",
                                  "--no-final"])
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    assert code == EXIT_OUTPUT
    line = _one_error_line(capsys.readouterr().err, "pigan train")
    assert f"cannot write {out / 'checkpoint.pt'}: no space left on device (needed about" in line
    assert f"the last good checkpoint is {out / 'checkpoint.pt'} (step 2)" in line
    assert not list(out.glob(".checkpoint.pt.*.tmp"))
    assert load_checkpoint(out / "checkpoint.pt")["step"] == good["step"] == 2      # the old one survives


def test_torch_zip_writer_failure_is_reported_as_a_full_disk(tmp_path, monkeypatch, capsys):
    """torch.save reports a failed write of its zip container as a RuntimeError; it is one line too."""
    real_save = torch.save

    def zip_failure(obj, f, *a, **k):
        if "format" not in obj:                      # a dataset cache, not a checkpoint
            return real_save(obj, f, *a, **k)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 448 vs 342")

    monkeypatch.setattr(checkpoints.torch, "save", zip_failure)
    out = tmp_path / "run"
    assert train_cli.main(TINY + ["--out", str(out), "--max-steps", "1", "--no-final"]) == EXIT_OUTPUT
    line = _one_error_line(capsys.readouterr().err, "pigan train")
    assert f"cannot write {out / 'checkpoint.pt'}" in line and "no checkpoint was written by this run" in line
    assert not list(out.glob(".checkpoint.pt.*.tmp"))


def test_full_tmpfs_during_training(tmp_path):
    """A real full disk: a 256 KiB tmpfs nearly filled before the run."""
    with _tmpfs(tmp_path / "small", "256k") as mnt:
        (mnt / "filler").write_bytes(b"\0" * (200 * 1024))
        out = mnt / "run"
        env = dict(os.environ, PIGAN_CACHE=str(tmp_path / "cache"),
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = subprocess.run([sys.executable, "-m", "pigan", "train", *TINY, "--out", str(out), "--max-steps", "1",
                              "--no-final"], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == EXIT_OUTPUT, res.stderr
        line = _one_error_line(res.stderr, "pigan train")
        assert "cannot write" in line and "no space left on device" in line and "MB free" in line
        assert not list(out.glob(".*.tmp"))


def test_stale_checkpoint_temporaries_are_removed_at_start(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 1000)
    other = out / "notes.tmp"
    other.write_text("kept")
    assert train_cli.main(TINY + ["--out", str(out), "--max-steps", "1", "--no-final"]) == 0
    assert not stale.exists() and other.exists()
    assert "removed 1 temporary file(s)" in capsys.readouterr().err


# ---------------------------------------------------------------------------- output paths
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", generator=g, ema=g.state_dict(),
                           extra={"step": 1})


def test_render_to_a_bad_folder_fails_before_rendering(tiny_ckpt, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rendered = []
    monkeypatch.setattr(render, "write_samples", lambda *a, **k: rendered.append(1) or {})
    for bad in (blocker, blocker / "sub"):
        code = render_cli.main([str(tiny_ckpt), "--out", str(bad), "--no-progress", "--device", "cpu"])
        assert code == EXIT_OUTPUT
        line = _one_error_line(capsys.readouterr().err, "pigan render")
        assert str(bad) in line and ("not a folder" in line or "not writable" in line)
    assert not rendered


def test_render_to_a_read_only_file_system(tiny_ckpt, tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "64k", readonly=True) as mnt:
        code = render_cli.main([str(tiny_ckpt), "--out", str(mnt / "renders"), "--no-progress", "--device", "cpu"])
        assert code == EXIT_OUTPUT
        line = _one_error_line(capsys.readouterr().err, "pigan render")
        assert "read-only file system" in line


def test_render_write_failure_mid_way_names_the_file(tiny_ckpt, tmp_path, monkeypatch, capsys):
    from pigan import imaging

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imaging, "save_png", full)
    out = tmp_path / "r"
    code = render_cli.main([str(tiny_ckpt), "--out", str(out), "--num", "1", "--identities", "0", "--frames", "0",
                            "--resolution", "4", "--steps", "3", "--no-progress", "--device", "cpu"])
    assert code == EXIT_OUTPUT
    line = _one_error_line(capsys.readouterr().err, "pigan render")
    assert f"cannot write {out / 'samples.png'}: no space left on device" in line


def test_convert_to_bad_destinations(tiny_ckpt, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    (tmp_path / "folder").mkdir()
    for dst, words, named in ((tmp_path / "folder", "is a folder", tmp_path / "folder"),
                              (blocker / "x.pt", "exists and is not a folder", blocker),
                              (blocker / "sub" / "x.pt", "not writable", blocker / "sub")):
        code = convert_cli.main([str(tmp_path / "no_such_pigan_dir"), str(dst)])
        assert code == EXIT_OUTPUT
        line = _one_error_line(capsys.readouterr().err, "pigan convert")
        assert words in line and repr(str(named)) in line


def test_convert_on_a_full_disk(tmp_path, monkeypatch, capsys):
    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    g = ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8)
    loaded = {"generator": g, "discriminator": None, "ema": None, "step": 0, "files": {}}
    monkeypatch.setattr(checkpoints, "load_pigan_checkpoint", lambda *a, **k: loaded)
    monkeypatch.setattr(checkpoints.torch, "save", full)
    dst = tmp_path / "out.pt"
    assert convert_cli.main([str(tmp_path), str(dst)]) == EXIT_OUTPUT
    line = _one_error_line(capsys.readouterr().err, "pigan convert")
    assert f"cannot write {dst}: no space left on device" in line
    assert not dst.exists() and not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------------- resume, NaN, --no-final
def test_resume_with_another_architecture_names_the_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(TINY + ["--out", str(out), "--max-steps", "1", "--no-final"]) == 0
    capsys.readouterr()
    code = train_cli.main(TINY + ["--out", str(out), "--resume", "--max-steps", "2", "--set", "hidden_dim=32",
                              "--set", "disc_max_channels=32"])
    assert code == EXIT_USAGE
    line = _one_error_line(capsys.readouterr().err, "pigan train")
    assert "generator hidden_dim: 16 in the checkpoint, 32 now" in line
    assert "discriminator max_channels: 16 in the checkpoint, 32 now" in line
    assert "size mismatch" not in line


def test_nonfinite_losses_stop_the_run_and_keep_the_last_finite_checkpoint(tmp_path, monkeypatch, capsys):
    from pigan.training import loss

    real = loss.discriminator_loss
    calls = []

    def goes_nan(*a):
        calls.append(1)
        d = real(*a)
        return d * float("nan") if len(calls) > 3 else d           # steps 4, 5, ... are NaN

    monkeypatch.setattr(loss, "discriminator_loss", goes_nan)
    out = tmp_path / "run"
    code = train_cli.main(TINY + ["--out", str(out), "--max-steps", "50", "--ckpt-every", "1", "--max-nonfinite", "3",
                              "--log-every", "1"])
    assert code == EXIT_DIVERGED
    err = capsys.readouterr().err
    line = _one_error_line(err, "pigan train")
    assert "NaN/Inf for 3 steps in a row (up to step 6)" in line
    assert f"the last good checkpoint is {out / 'checkpoint.pt'} (step 3)" in line
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 3 and all(torch.isfinite(v).all() for v in ckpt["generator"].values())
    assert not (out / "samples.png").exists()


def test_no_final_does_not_claim_the_final_images(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.main(TINY + ["--out", str(out), "--max-steps", "1", "--no-final"]) == 0
    done = [line for line in capsys.readouterr().out.splitlines() if line.startswith("done:")][0]
    assert "samples.png" not in done and "multiview.png" not in done
    assert "checkpoint.pt" in done and "loss.png" in done
    assert not (out / "samples.png").exists() and not (out / "multiview.png").exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pigan", "train", "--set", "fov=0", "--out", str(tmp_path / "o")]
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == debug.returncode == EXIT_USAGE
    assert plain.stderr.strip() == "pigan train: error: fov (degrees) must be a number > 0 and < 180, got 0"
    assert "Traceback" in debug.stderr and debug.stderr.strip().endswith(plain.stderr.strip())
