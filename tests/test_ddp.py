"""Multi-process training with DDP on CPU (gloo): replicas stay identical, data is sharded, --eval-every
renders its images on both ranks, and the torchrun entry point works with only rank 0 writing."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TINY = ["--set", "hidden_dim=16", "--set", "map_hidden_dim=16", "--set", "latent_dim=8",
        "--set", "disc_max_channels=16", "--img-size", "8", "--batch-size", "4", "--batch-split", "2", "--num-steps", "6",
        "--num-images", "32", "--no-progress", "--num-samples", "2", "--sample-every", "0", "--no-final",
        "--device", "cpu"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# 20 generated images in batches of 16: rank 0 renders batch 0 (16 images), rank 1 batch 1 (4)
EVAL = ["--eval-every", "2", "--eval-real-count", "6", "--eval-fake-count", "20", "--eval-size", "8",
        "--no-tensorboard"]


def _pooled(images):
    """Stands in for InceptionV3 (its weights are not available offline): 4x4 pooled colours."""
    f = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, 4).flatten(1)
    return f, 4 * f[:, :10]


_pooled.name = "test-pool4x4"


def _worker(rank, world, port, out, cache):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), PIGAN_CACHE=cache)
    torch.set_num_threads(1)
    from pigan import evaluate, metrics
    from pigan import training as train
    from pigan.cli import train as train_cli

    # this process's own modules: the weights check passes, the extractor is the stand-in, and the
    # generated images this rank extracts are counted
    metrics.find_inception_weights = lambda path=None: Path(out)
    metrics.InceptionExtractor = lambda weights, device: _pooled
    generated, generated_features = [], evaluate.generated_features

    def counting(generator, extractor, *a, **kw):
        def extract(images):
            generated.append(images.shape[0])
            return extractor(images)

        extract.name = extractor.name
        return generated_features(generator, extract, *a, **kw)

    evaluate.generated_features = counting
    config, cur, _ = train.resolve_config(train_cli.parse_config(TINY + EVAL + ["--out", out, "--max-steps", "2"]))
    assert train.distributed.init_distributed(config.device)
    trainer, ok = None, False
    try:
        assert dist.get_backend() == "gloo"
        trainer = train.Trainer(config, cur)
        init = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
        train.fit(trainer)
        torch.save({"generator": trainer.generator.state_dict(), "discriminator": trainer.discriminator.state_dict(),
                    "ema": trainer.ema.state_dict(), "init": init, "step": trainer.step,
                    "batches": trainer.stream._epoch_batches(0, 0), "generated": generated},
                   Path(out) / f"rank{rank}.pt")
        ok = True
    finally:
        trainer = None
        train.distributed.shutdown_distributed(ok)


def test_two_process_gloo_replicas_identical(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(out), str(tmp_path / "cache")), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 2
    # each process trains on its own shard
    assert not set(sum(r0["batches"], [])) & set(sum(r1["batches"], []))
    # DDP broadcast rank 0's initial weights, then averaged gradients keep the replicas equal
    for part in ("generator", "discriminator", "ema"):
        for k, v in r0[part].items():
            assert torch.equal(v, r1[part][k]), (part, k)
    moved = [k for k, v in r0["generator"].items() if not torch.equal(v, r0["init"][k])]
    assert "siren.network.0.layer.weight" in moved
    # only rank 0 writes the run's files
    assert (out / "checkpoint.pt").is_file() and (out / "log.csv").is_file()
    # --eval-every: each rank extracted its share of the generated images; rank 0 logged the metrics
    assert r0["generated"] == [16] and r1["generated"] == [4]
    from pigan.logging_utils import read_csv
    evals = [r for r in read_csv(out / "log.csv") if r.get("fid")]
    assert [r["step"] for r in evals] == ["2"] and float(evals[0]["fid"]) > 0
    assert (out / "metrics.png").is_file()


def test_torchrun_entry_point(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PIGAN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "pigan", "train", *TINY, "--out", str(out), "--max-steps", "2", "--log-every", "1"],
                         env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("pigan train: device cpu") == 1          # rank 0 alone reports
    assert "world 2" in res.stdout
    from pigan.checkpoints import load_checkpoint
    from pigan.logging_utils import read_csv
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert [r["step"] for r in read_csv(out / "log.csv")] == ["1", "2"]
    assert sorted(p.name for p in out.iterdir() if p.name[0] != "." and p.name != "tb") == [
        "checkpoint.pt", "log.csv", "loss.png"]
