"""accumulate_and_step against hand-written pi-GAN steps, for batch_split 1, 2 and 4.

pi-GAN's discriminator step is one full-batch mean loss (only its fakes are generated in
sub-batches), clipped at grad_clip; its generator step sums the sub-batch losses and clips the sum's
gradient at grad_clip. Ours averages the sub-batch losses of both; the clipped gradient, the Adam
step and the logged (pre-clip) norm must still be pi-GAN's. Adam's first step hardly depends on the
gradient's scale, so the clipped gradients are compared as well as the parameters.
"""
import pytest
import torch
import torch.nn.functional as F

from pigan.training.step import accumulate_and_step

N = 8
SPLITS = (1, 2, 4)
R1_LAMBDA = 0.5
# pre-clip norm / grad_clip: below 1 pi-GAN does not clip (and a threshold divided by split would);
# above 1 it clips
RATIOS = (0.75, 1.5)


def _discriminator():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 1)).double()


def _generator():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6)).double()


def _adam(model, eps=1e-8):
    return torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.0, 0.9), eps=eps)


def _d_loss(d, real, fake):
    """pi-GAN's discriminator loss over the images given: softplus GAN losses (means) and R1 (a mean)."""
    real = real.detach().requires_grad_(True)
    r_preds, g_preds = d(real), d(fake)
    grad_real, = torch.autograd.grad(r_preds.sum(), real, create_graph=True)
    r1 = 0.5 * R1_LAMBDA * grad_real.pow(2).flatten(1).sum(1).mean()
    return F.softplus(g_preds).mean() + F.softplus(-r_preds).mean() + r1


def _g_loss(g, d, z):
    return F.softplus(-d(g(z))).mean()


def _grad_norm(model):
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


def _pigan_d_step(real, fake, grad_clip):
    d = _discriminator()
    opt = _adam(d)
    opt.zero_grad()
    _d_loss(d, real, fake).backward()               # one full-batch mean
    norm = float(torch.nn.utils.clip_grad_norm_(d.parameters(), grad_clip))
    opt.step()
    return d, norm


def _pigan_g_step(d, z, split, grad_clip):
    g = _generator()
    opt = _adam(g)
    opt.zero_grad()
    sub = N // split
    for i in range(split):                          # sub-batch losses summed
        _g_loss(g, d, z[i * sub:(i + 1) * sub]).backward()
    norm = float(torch.nn.utils.clip_grad_norm_(g.parameters(), grad_clip))
    opt.step()
    return g, norm


def _assert_same(ours, pigan, rtol=1e-6):
    for (name, p), q in zip(ours.named_parameters(), pigan.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=0, msg=f"clipped gradient of {name}")
        torch.testing.assert_close(p, q, rtol=rtol, atol=0, msg=f"{name} after the step")


def _unclipped_norm(loss_of_model, model):
    model.zero_grad()
    loss_of_model(model).backward()
    norm = _grad_norm(model)
    model.zero_grad()
    return norm


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("split", SPLITS)
def test_discriminator_step_is_pigans_full_batch_step(split, ratio):
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    fake = torch.randn(N, 6, generator=gen, dtype=torch.float64)
    norm = _unclipped_norm(lambda d: _d_loss(d, real, fake), _discriminator())
    grad_clip = norm / ratio
    assert (grad_clip / 2 < norm < grad_clip) if ratio < 1 else norm > grad_clip
    pigan, pigan_norm = _pigan_d_step(real, fake, grad_clip)
    assert pigan_norm == pytest.approx(norm, rel=1e-12)

    d = _discriminator()
    sub = N // split
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    parts, logged = accumulate_and_step(
        lambda i: (_d_loss(d, real[i * sub:(i + 1) * sub], fake[i * sub:(i + 1) * sub]), {}),
        split, _adam(d), d.parameters(), scaler, grad_clip, summed_in_pigan=False)
    assert logged == pytest.approx(pigan_norm, rel=1e-12)
    _assert_same(d, pigan)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("split", SPLITS)
def test_generator_step_is_pigans_summed_step(split, ratio):
    d = _discriminator().requires_grad_(False)
    z = torch.randn(N, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sub = N // split

    def summed(g):
        return sum(_g_loss(g, d, z[i * sub:(i + 1) * sub]) for i in range(split))

    norm = _unclipped_norm(summed, _generator())
    grad_clip = norm / ratio
    assert (grad_clip / 2 < norm < grad_clip) if ratio < 1 else norm > grad_clip
    pigan, pigan_norm = _pigan_g_step(d, z, split, grad_clip)
    assert pigan_norm == pytest.approx(norm, rel=1e-12)

    g = _generator()
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    # Adam's eps is where the scale of the gradient shows: scaled with it, the step is pi-GAN's
    parts, logged = accumulate_and_step(lambda i: (_g_loss(g, d, z[i * sub:(i + 1) * sub]), {"g": 1.0 * i}),
                                        split, _adam(g, eps=1e-8 / split), g.parameters(), scaler, grad_clip,
                                        summed_in_pigan=True)
    assert logged == pytest.approx(pigan_norm, rel=1e-12)            # in pi-GAN's scale
    assert parts == {"g": pytest.approx(sum(range(split)) / split)}  # logged parts are sub-batch means
    for p in g.parameters():
        p.grad.mul_(split)                          # our gradient is 1/split of pi-GAN's
    # clip_grad_norm_ adds 1e-6 to the norm: pi-GAN's and ours (1/split of it) differ by that much
    _assert_same(g, pigan, rtol=1e-6 + 1e-6 * split / norm)
