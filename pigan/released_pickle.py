"""Reading pi-GAN's released checkpoints (whole pickled modules) without running code from them.

pi-GAN saves ``torch.save(module)`` pickles: ``generator.pth`` and ``discriminator.pth`` name the
classes of pi-GAN's own modules (``siren.siren``, ``generators.generators``,
``discriminators.discriminators`` / ``discriminators.sgdiscriminators``), ``ema.pth`` a
``torch_ema.ema.ExponentialMovingAverage``. A pickle can name any importable callable and call it,
so the unpickler here admits an exact list of ``(module, name)`` globals and nothing by prefix:

- pi-GAN's module classes, each mapped to an inert stand-in (an ``nn.Module`` that only holds the
  pickled attributes, parameters and submodules), and torch_ema's class mapped to ``EMAStandIn``;
- the torch layers those modules contain (Linear, Conv2d, Sequential, ModuleList, LeakyReLU,
  Sigmoid), the tensor and parameter rebuild functions, ``torch.device``, ``torch.Size``;
- the containers ``collections.OrderedDict`` and ``builtins.set`` (protocol 2 pickles sets by
  calling ``set``). Storage types never reach it: ``torch.load`` resolves them itself.

Every other global is refused with an ``UnpicklingError`` naming it, before anything is called.
The opcodes that call or mutate (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD) are also checked on
the object they act on, so a stack built from admitted globals still cannot call an instance, set
attributes on a class, or instantiate anything outside the list.
"""
from __future__ import annotations

import collections
import pickle
import types
import warnings

import torch
import torch.nn as nn

__all__ = ["PiganStandIn", "EMAStandIn", "ALLOWED_TORCH_GLOBALS", "PIGAN_CLASSES", "load"]


class PiganStandIn(nn.Module):
    """Inert holder for an unpickled pi-GAN module: its attributes, parameters and submodules, no
    behaviour. ``pigan_class`` is the original ``module.Class`` path."""

    pigan_class = "?"


class EMAStandIn:
    """Holds an unpickled torch_ema.ExponentialMovingAverage's attributes (decay, num_updates,
    shadow_params, collected_params)."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"torch_ema state must be a dict, got {type(state).__name__}")
        self.__dict__.update(state)


# pi-GAN's module paths and the classes of them that this project can convert (their blocks
# included); names outside this table are refused even under these modules.
_SIREN = ("FiLMLayer", "CustomMappingNetwork", "UniformBoxWarp", "TALLSIREN", "SPATIALSIRENBASELINE")
_DISC = ("AdapterBlock", "AddCoords", "CoordConv", "ResidualCoordConvBlock", "ResidualCCBlock",
         "StridedResidualConvBlock", "ProgressiveDiscriminator", "ProgressiveEncoderDiscriminator",
         "CCSEncoderDiscriminator", "StridedDiscriminator")
PIGAN_CLASSES = {
    "siren.siren": _SIREN,
    "generators.generators": ("ImplicitGenerator3d",),
    "discriminators.discriminators": _DISC,
    "discriminators.sgdiscriminators": _DISC,
}
_EMA_CLASS = ("torch_ema.ema", "ExponentialMovingAverage")

ALLOWED_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "device"): torch.device,
    ("torch", "Size"): torch.Size,
    ("torch.nn.modules.linear", "Linear"): nn.Linear,
    ("torch.nn.modules.conv", "Conv2d"): nn.Conv2d,
    ("torch.nn.modules.container", "Sequential"): nn.Sequential,
    ("torch.nn.modules.container", "ModuleList"): nn.ModuleList,
    ("torch.nn.modules.activation", "LeakyReLU"): nn.LeakyReLU,
    ("torch.nn.modules.activation", "Sigmoid"): nn.Sigmoid,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,                      # protocol 2's name for it
}
# Classes whose instances may be created (NEWOBJ) and filled (BUILD); functions that may be called.
_TORCH_MODULE_CLASSES = frozenset(v for v in ALLOWED_TORCH_GLOBALS.values()
                                  if isinstance(v, type) and issubclass(v, nn.Module))
_CALLABLES = frozenset(ALLOWED_TORCH_GLOBALS.values()) - _TORCH_MODULE_CLASSES

_STANDINS: dict = {}


def _standin(module, name):
    key = f"{module}.{name}"
    if key not in _STANDINS:
        _STANDINS[key] = type(name, (PiganStandIn,), {"pigan_class": key, "__module__": __name__})
    return _STANDINS[key]


def _may_build(obj) -> bool:
    """Instances (never classes) of the admitted module classes, the stand-ins and EMAStandIn."""
    t = type(obj)
    return t in _TORCH_MODULE_CLASSES or t is EMAStandIn or (
        isinstance(t, type) and issubclass(t, PiganStandIn) and _STANDINS.get(t.pigan_class) is t)


def _may_instantiate(cls) -> bool:
    return isinstance(cls, type) and (cls in _TORCH_MODULE_CLASSES or cls is EMAStandIn or (
        issubclass(cls, PiganStandIn) and _STANDINS.get(cls.pigan_class) is cls))


class _Refused(pickle.UnpicklingError):
    pass


class AllowlistUnpickler(pickle._Unpickler):
    """pickle's Python unpickler with ``find_class`` limited to the table above and the calling
    opcodes checked (the C unpickler cannot be hooked per opcode)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        if name in PIGAN_CLASSES.get(module, ()):
            return _standin(module, name)
        if (module, name) == _EMA_CLASS:
            return EMAStandIn
        obj = ALLOWED_TORCH_GLOBALS.get((module, name))
        if obj is not None:
            return obj
        raise _Refused(f"refusing to load global {module}.{name}: not one that pi-GAN's checkpoints "
                       "need (only its module classes, torch_ema's EMA, the torch layers they hold, "
                       "tensor rebuild functions and containers are admitted)")

    def _load_reduce(self):
        func = self.stack[-2]
        try:
            admitted = func in _CALLABLES
        except TypeError:                                 # unhashable: certainly not on the list
            admitted = False
        if not admitted:
            raise _Refused(f"refusing to call {_describe(func)} while unpickling: only tensor rebuild "
                           "functions and containers may be called")
        pickle._Unpickler.load_reduce(self)

    @staticmethod
    def _refuse_unless_instantiable(cls):
        if not _may_instantiate(cls):
            raise _Refused(f"refusing to create an instance of {_describe(cls)} while unpickling")

    def _load_newobj(self):
        self._refuse_unless_instantiable(self.stack[-2])      # stack: ... cls, args
        pickle._Unpickler.load_newobj(self)

    def _load_newobj_ex(self):
        self._refuse_unless_instantiable(self.stack[-3])      # stack: ... cls, args, kwargs
        pickle._Unpickler.load_newobj_ex(self)

    def _load_build(self):
        inst = self.stack[-2]
        if not _may_build(inst):
            raise _Refused(f"refusing to set the state of {_describe(inst)} while unpickling")
        pickle._Unpickler.load_build(self)

    def _refuse_old_instantiation(self):
        raise _Refused("refusing the protocol-0/1 INST/OBJ opcodes: torch.save never writes them")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.INST[0]] = _refuse_old_instantiation
    dispatch[pickle.OBJ[0]] = _refuse_old_instantiation


def _describe(obj) -> str:
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


# torch.load takes a pickle module: this one only hands out the allowlisting unpickler.
pickle_module = types.ModuleType("pigan_allowlist_pickle")
pickle_module.Unpickler = AllowlistUnpickler
pickle_module.load = lambda f, **kw: AllowlistUnpickler(f, **kw).load()
pickle_module.UnpicklingError = pickle.UnpicklingError


def load(path, map_location="cpu"):
    """``torch.load`` of one pi-GAN pickle (zip or legacy format) through the allowlist. Raises
    ``pickle.UnpicklingError`` naming the first refused global or operation."""
    with warnings.catch_warnings():
        # The legacy format stores each module class's source; torch compares it with the class it
        # got back (here a stand-in) and warns for every container. The comparison is meaningless
        # for stand-ins, so those warnings are dropped.
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
        warnings.filterwarnings("ignore", category=torch.serialization.SourceChangeWarning)
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=pickle_module)
