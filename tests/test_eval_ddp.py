"""Evaluation in real DDP: two CPU processes on gloo share the generated images of
``pigan.evaluate.generated_features`` and ``pigan train --eval-every``'s TrainingEvaluator. Each rank
renders a disjoint share, every rank ends with all features, and features and metrics equal those of
one process with the same seed."""
import argparse
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("torch_fidelity")

from inputs import blocky_images  # noqa: E402

COUNT, BATCH, SEED = 7, 2, 3            # 4 batches: rank 0 renders 0 and 2, rank 1 renders 1 and 3


class RecordingExtractor:
    """Features: 4x4 average-pooled colours [N, 48]; logits: their first 10 [N, 10]. Keeps every
    batch it is given."""

    name = "test-pool4x4"

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images.clone())
        f = torch.nn.functional.adaptive_avg_pool2d(images.double() / 255, 4).flatten(1)
        return f, 4 * f[:, :10]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_generator():
    from pigan.generators import ImplicitGenerator3d
    torch.manual_seed(0)                 # the same weights in every process
    return ImplicitGenerator3d("TALLSIREN", 8, hidden_dim=8, map_hidden_dim=8).eval()


def _count_renders(generator):
    calls = []
    render = generator.render

    def counted(*a, **kw):
        out = render(*a, **kw)
        calls.append(out["pixels"].shape[0])
        return out

    generator.render = counted
    return calls


def _worker(rank, world, port, out, real):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PIGAN_CACHE=str(Path(out) / "cache"))
    torch.set_num_threads(1)
    from pigan import evaluate as ev
    from pigan.curriculums import get_curriculum
    from pigan.training.evaluation import TrainingEvaluator

    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        g = _tiny_generator()
        cur = get_curriculum("demo")
        cur["num_steps"] = 4
        options = ev.eval_options(cur)
        result = {}
        for psi in (1.0, 0.7):
            # one process alone, all images kept to check the shares against
            alone, alone_logits, images = ev.generated_features(g, RecordingExtractor(), options, COUNT, 8,
                                                                BATCH, psi, SEED, keep_images=COUNT)
            ex = RecordingExtractor()
            calls = _count_renders(g)
            feats, logits, kept = ev.generated_features(g, ex, options, COUNT, 8, BATCH, psi, SEED, rank=rank,
                                                        world_size=world, keep_images=3)
            del g.render
            result[psi] = {"alone": alone, "alone_logits": alone_logits, "images": images, "feats": feats,
                           "logits": logits, "kept": kept, "seen": ex.seen, "calls": calls}
        args = argparse.Namespace(eval_real=real, data=None, eval_size=8, eval_real_count=6,
                                  eval_fake_count=COUNT, inception=None)
        solo = TrainingEvaluator(args, cur, "cpu", 0, 1, extractor=RecordingExtractor())(g, 1, seed=SEED)
        shared = TrainingEvaluator(args, cur, "cpu", rank, world, extractor=RecordingExtractor())(g, 1, seed=SEED)
        result["metrics"] = {"solo": solo, "shared": shared}
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_ddp")
    real = blocky_images(tmp / "real", 6, 16)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp), str(real)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_each_rank_renders_a_disjoint_share(ranks, psi):
    from pigan.evaluate import to_uint8

    images = to_uint8(ranks[0][psi]["images"])                          # [7, 3, 8, 8], one process
    assert images.shape[0] == COUNT
    for rank, mine in ((0, [0, 2]), (1, [1, 3])):
        r = ranks[rank][psi]
        assert r["calls"] == [min(BATCH, COUNT - k * BATCH) for k in mine]
        assert len(r["seen"]) == len(mine)
        for k, seen in zip(mine, r["seen"]):
            assert torch.equal(seen, images[k * BATCH:(k + 1) * BATCH]), (rank, k)


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_every_rank_gets_all_features_equal_to_one_process(ranks, psi):
    r0, r1 = ranks[0][psi], ranks[1][psi]
    # the single-process set is the same in both processes, and the shared set equals it exactly
    assert torch.equal(r0["alone"], r1["alone"]) and torch.equal(r0["images"], r1["images"])
    for r in (r0, r1):
        assert r["feats"].shape == (COUNT, 48) and r["logits"].shape == (COUNT, 10)
        assert torch.equal(r["feats"], r0["alone"]) and torch.equal(r["logits"], r0["alone_logits"])
        # kept images are the first ones of the whole set on every rank, not of the rank's share
        assert torch.equal(r["kept"], r0["images"][:3])
    assert not torch.equal(ranks[0][1.0]["feats"], ranks[0][0.7]["feats"])


def test_training_metrics_equal_one_process(ranks):
    m0, m1 = ranks[0]["metrics"], ranks[1]["metrics"]
    assert m1["shared"] is None                                         # rank 0 alone reports
    solo, shared = m0["solo"], m0["shared"]
    assert shared["fake_count"] == COUNT
    for key in ("fid", "kid_x100", "is"):
        assert np.isfinite(solo[key]) and shared[key] == solo[key], key
    assert m1["solo"]["fid"] == solo["fid"]


def test_generated_features_leave_the_training_rng_alone(device):
    from pigan import evaluate as ev
    from pigan.curriculums import get_curriculum

    g = _tiny_generator().to(device)
    options = ev.eval_options(get_curriculum("demo")).replace(num_steps=4)
    torch.manual_seed(12345)
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state() if device == "cuda" else None
    ev.generated_features(g, RecordingExtractor(), options, 3, 8, 2, 0.7, SEED)
    assert torch.equal(torch.get_rng_state(), cpu)
    if cuda is not None:
        assert torch.equal(torch.cuda.get_rng_state(), cuda)


def test_bad_rank_split_is_refused():
    from pigan import evaluate as ev
    from pigan.curriculums import get_curriculum

    g, options = _tiny_generator(), ev.eval_options(get_curriculum("demo"))
    with pytest.raises(ValueError, match="world_size=2 needs an initialised torch.distributed group"):
        ev.generated_features(g, RecordingExtractor(), options, 3, 8, 2, rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=1\), got 1"):
        ev.generated_features(g, RecordingExtractor(), options, 3, 8, 2, rank=1, world_size=1)
