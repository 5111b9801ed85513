"""A stack of FiLM-SIREN layers, x_{i+1} = film_siren(x_i, W_i, b_i, freq_i, phase_i): the SIREN trunk.

``film_siren_stack`` equals the loop of ``film_siren`` over the layers; ``_film_siren_stack`` is its
reference twin (the loop of ``_film_siren``). What the stack adds is a cheaper backward on the native
CPU path. A single layer that keeps only its input for backward (the memory target) must recompute
its pre-activation z_i = x_i W_i^T + b_i with a GEMM. In a stack, layer i's input is an elementwise
function of layer i-1's pre-activation, x_i = sin(freq_{i-1} * z_{i-1} + phase_{i-1}), so the stack
saves z_0 .. z_{L-2} instead of x_1 .. x_{L-1} (the same bytes) and rebuilds each x_i with one sine
pass: one GEMM recomputed per stack (the top layer's) instead of one per layer.

Native CPU backward, layer by layer from the top, in two [M, H] work buffers that trade roles:
dz_i = dy_i * cos(freq_i * z_i + phase_i) * freq_i over dy_i in place, x_i rebuilt into the other
buffer, dW_i = dz_i^T x_i, then dy_{i-1} = dz_i W_i written over x_i.

Other devices, dtypes, autocast and backends run the loop of ``film_siren`` (per-layer kernels): the
"triton" stack is that loop, as Triton has no stack kernel, and each layer then picks its own backend
through film_siren's table (so "auto" keeps film_siren's per-precision choice). Under create_graph=True
the native stack's backward returns the reference loop's gradients (_autograd.twin_grads).
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import _autograd, _backend
from ._checks import check_same_device, check_same_dtype, check_tensor
from .film import _autocast_dtype, _cpu_ops_available, _film_siren_impl, film_siren


def _check_stack_args(x, weights, biases, freqs, phases):
    n = len(weights)
    if n == 0:
        raise ValueError("weights must hold at least one layer's weight")
    for name, seq in (("biases", biases), ("freqs", freqs), ("phases", phases)):
        if len(seq) != n:
            raise ValueError(f"{name} must have one entry per layer ({n}), got {len(seq)}")
    check_tensor("x", x, ndim=3)
    B, N, K = x.shape
    for i in range(n):
        check_tensor(f"weights[{i}]", weights[i], ndim=2)
        H, Ki = weights[i].shape
        if Ki != K:
            what = "the last dim of x" if i == 0 else f"the output width of layer {i - 1}"
            raise ValueError(f"weights[{i}] must have shape [H, {K}] ({what}), got {tuple(weights[i].shape)}")
        if biases[i] is not None:
            check_tensor(f"biases[{i}]", biases[i], ndim=1)
            if biases[i].shape[0] != H:
                raise ValueError(f"biases[{i}] must have shape [{H}], got {tuple(biases[i].shape)}")
        for name, t in ((f"freqs[{i}]", freqs[i]), (f"phases[{i}]", phases[i])):
            check_tensor(name, t, ndim=2)
            if tuple(t.shape) != (B, H):
                raise ValueError(f"{name} must have shape [B, H] = [{B}, {H}], got {tuple(t.shape)}")
        K = H
    tensors = {"x": x}
    for i in range(n):
        tensors.update({f"weights[{i}]": weights[i], f"biases[{i}]": biases[i], f"freqs[{i}]": freqs[i],
                        f"phases[{i}]": phases[i]})
    check_same_device(**tensors)
    return tensors


def _loop(layer, x, weights, biases, freqs, phases):
    for w, b, f, p in zip(weights, biases, freqs, phases):
        x = layer(x, w, b, f, p)
    return x


def _film_siren_stack(x, weights: Sequence, biases: Sequence, freqs: Sequence, phases: Sequence):
    """Reference twin: pi-GAN's loop of FiLM layers in eager PyTorch."""
    _check_stack_args(x, weights, biases, freqs, phases)
    return _film_siren_stack_impl(x, weights, biases, freqs, phases)


def _film_siren_stack_impl(x, weights, biases, freqs, phases):
    return _loop(_film_siren_impl, x, weights, biases, freqs, phases)


def film_siren_stack(x, weights: Sequence, biases: Sequence, freqs: Sequence, phases: Sequence):
    """Layers y = sin(freq_i * (x W_i^T + b_i) + phase_i) applied in turn. x [B, N, K];
    weights[i] [H_i, K_i] with K_0 = K and K_i = H_{i-1}; biases[i] [H_i] or None; freqs[i] and
    phases[i] [B, H_i]. Returns the last layer's output [B, N, H_{L-1}]."""
    tensors = _check_stack_args(x, weights, biases, freqs, phases)
    if _autocast_dtype(x.device.type) is None:
        check_same_dtype(**tensors)
    return STACK.run(x.device, x, weights, biases, freqs, phases)


def _film_stack_layers(x, weights, biases, freqs, phases):
    """The layers one by one on the backend film_siren picks (each call checks its layer again: the
    per-layer path serves autocast and CUDA, where that cost is small against the GEMM)."""
    return _loop(film_siren, x, weights, biases, freqs, phases)


def _film_stack_native(x, weights, biases, freqs, phases):
    # Without a backward to serve, the per-layer forward keeps nothing; the stack would keep every
    # pre-activation.
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, *weights, *biases, *freqs, *phases))
    if (wants_grad and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and _cpu_ops_available() and _autocast_dtype("cpu") is None):
        return _FiLMStackNative.apply(x, len(weights), *weights, *biases, *freqs, *phases)[0]
    return _film_stack_layers(x, weights, biases, freqs, phases)


def _stack_twin(x, n, *params):
    weights, biases, freqs, phases = (params[k * n:(k + 1) * n] for k in range(4))
    return _film_siren_stack_impl(x, weights, biases, freqs, phases)


class _FiLMStackNative(_autograd.FastPath):
    """The native CPU stack (inputs x, n, *weights, *biases, *freqs, *phases). Returns (y, *pres):
    the pre-activations z_0 .. z_{L-2} are outputs so that ``save`` can keep them (see the module
    docstring); they carry no gradient."""

    @staticmethod
    def compute(x, n, *params):
        weights, biases, freqs, phases = (params[k * n:(k + 1) * n] for k in range(4))
        pres = []
        h = x
        for i in range(n):
            if i < n - 1:
                h, pre = torch.ops.pigan.film_forward_pre(h, weights[i], biases[i], freqs[i], phases[i])
                pres.append(pre)                                        # [B, N, H_i], bias included
            else:
                h = torch.ops.pigan.film_forward(h, weights[i], biases[i], freqs[i], phases[i])
        return (h, *pres)

    @staticmethod
    def save(ctx, inputs, output):
        x, n, *params = inputs
        pres = output[1:]
        ctx.n = n
        ctx.save_for_backward(x, *params, *pres)
        ctx.mark_non_differentiable(*pres)
        ctx.set_materialize_grads(False)                             # no zero tensors for the pres

    @staticmethod
    def backward(ctx, dy, *_):
        if dy is None:                                                  # no gradient reached y
            return (None,) * len(ctx.needs_input_grad)
        n = ctx.n
        x, *rest = ctx.saved_tensors
        weights, biases, freqs, phases = (rest[k * n:(k + 1) * n] for k in range(4))
        pres = rest[4 * n:]
        need = ctx.needs_input_grad                                     # (x, n, W.., b.., f.., p..)
        if torch.is_grad_enabled():
            return _autograd.twin_grads(_stack_twin, (x, n, *rest[:4 * n]), need, (dy,))
        B, N, _ = x.shape
        M = B * N
        dw, db, dfreq, dphase = [None] * n, [None] * n, [None] * n, [None] * n

        def layer_input(i, buf):
            """x_i [B, N, K_i]: x itself, or rebuilt from z_{i-1} into buf (reused when it fits)."""
            if i == 0:
                return x
            z = pres[i - 1]
            if buf is None or buf.shape != z.shape:
                buf = torch.empty_like(z)
            torch.ops.pigan.film_sine_out(buf, z, freqs[i - 1], phases[i - 1])
            return buf

        # Top layer: its pre-activation is the one recomputed with a GEMM (bias added in the epilogue).
        top = n - 1
        xi = layer_input(top, None)
        g = xi.reshape(M, xi.shape[-1]).mm(weights[top].t()).view(B, N, weights[top].shape[0])  # -> dz
        sums = torch.ops.pigan.film_bwd_epilogue_(g, dy, freqs[top], phases[top], biases[top])
        dx = spare = None
        for i in range(top, -1, -1):
            if i < top:
                g = dx                                                  # dy_i, ours: dz_i over it
                sums = torch.ops.pigan.film_bwd_pre_(g, pres[i], freqs[i], phases[i])
                xi = layer_input(i, spare)
            dfreq[i], dphase[i] = sums
            g2, x2 = g.view(M, g.shape[-1]), xi.reshape(M, xi.shape[-1])   # explicit: M may be 0
            if need[2 + i]:
                dw[i] = g2.t().mm(x2)
            if biases[i] is not None and need[2 + n + i]:
                db[i] = (freqs[i].to(dphase[i].dtype) * dphase[i]).sum(0).to(biases[i].dtype)
            if i == 0:
                dx = g2.mm(weights[0]).view(x.shape) if need[0] else None
            else:
                dx = torch.mm(g2, weights[i], out=x2).view(xi.shape)    # over x_i: no longer needed
            spare = g                                                   # dz_i's buffer is free now
        dfreq = [d if need[2 + 2 * n + i] else None for i, d in enumerate(dfreq)]
        dphase = [d if need[2 + 3 * n + i] else None for i, d in enumerate(dphase)]
        return (dx, None, *dw, *db, *dfreq, *dphase)


STACK = _backend.Op("film_siren_stack", reference=_film_siren_stack_impl, native=_film_stack_native,
                    triton=_film_stack_layers)
