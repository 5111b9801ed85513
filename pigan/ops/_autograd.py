"""The one autograd pattern of pigan.ops (see _backend's docstring): each fast path is a ``FastPath``
Function, which a raw torch.ops.pigan op can carry too (``register_autograd``); a backward that is
itself differentiated returns the reference twin's gradients (``twin_grads``) or refuses
(``register_refusal``, ``double_backward_error``)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


_autograd_registered: set[str] = set()


def _register_autograd_once(qualname: str, backward: Callable, setup_context: Callable) -> None:
    if qualname in _autograd_registered:
        return
    torch.library.register_autograd(qualname, backward, setup_context=setup_context)
    _autograd_registered.add(qualname)


class FastPath(torch.autograd.Function):
    """The autograd.Function of one fast path, in torch.library's form so that a torch op can carry
    it too. A subclass defines ``compute(*inputs) -> output`` (the forward, run without autograd),
    ``save(ctx, inputs, output)`` (what backward needs: torch.library's setup_context) and
    ``backward(ctx, *grads)``; ``apply(*inputs)`` runs compute, then save.

    ``save`` is not named setup_context: with that, every apply would bind the forward's signature
    (about ten times the cost of a plain apply).
    """

    @staticmethod
    def compute(*inputs):
        raise NotImplementedError

    @staticmethod
    def save(ctx, inputs, output):
        pass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        compute, save = cls.compute, cls.save

        def forward(ctx, *inputs):
            output = compute(*inputs)
            save(ctx, inputs, output)
            return output

        cls.forward = staticmethod(forward)


def register_autograd(qualname: str, path: type[FastPath]) -> None:
    """Make ``path``'s ``save`` and ``backward`` the autograd of op ``qualname`` (whose forward is
    ``path.compute``), once per op for the life of the process (a reloaded module keeps the first)."""
    _register_autograd_once(qualname, path.backward, path.save)


def register_refusal(qualname: str) -> None:
    """The autograd of a backward op (``pigan::composite_bwd``): differentiating it raises
    ``double_backward_error``."""
    op = qualname.split("::")[-1]

    def backward(ctx, *grads):
        raise double_backward_error(op)

    def setup_context(ctx, inputs, output):
        pass

    _register_autograd_once(qualname, backward, setup_context)


def double_backward_error(op: str) -> RuntimeError:
    """The error of a native backward that cannot itself be differentiated."""
    return RuntimeError(
        f"{op}: the native backend's backward is not differentiable (double backward, e.g. a "
        f"gradient penalty with create_graph=True); run it under pigan.ops.use_backend(\"reference\")")


def twin_grads(twin: Callable, inputs: Sequence, needs: Sequence[bool], grads: Sequence) -> tuple:
    """The gradients of ``twin(*inputs)`` for the output cotangents ``grads``: one entry per input,
    a gradient where ``needs`` asks for one and the input is a tensor the twin uses, else None.

    A fast path's backward returns this, with its op's reference twin and saved inputs, when grad
    mode is on inside it (create_graph=True): the gradients are then a graph of the twin's torch
    ops, so every higher derivative is the twin's. Outside grad mode they carry no graph.
    """
    wrt = [t for t, need in zip(inputs, needs) if need and isinstance(t, torch.Tensor)]
    create_graph = torch.is_grad_enabled()
    got = [None] * len(wrt)
    with torch.enable_grad():
        outs = twin(*inputs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        if wrt and pairs:
            got = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs],
                                      create_graph=create_graph, allow_unused=True)
    got = iter(got)
    return tuple(next(got) if need and isinstance(t, torch.Tensor) else None for t, need in zip(inputs, needs))
