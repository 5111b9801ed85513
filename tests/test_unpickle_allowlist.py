"""pigan.released_pickle: pickles that would run code are refused before anything runs, through every
entry point that reads pi-GAN's files (load_pigan_checkpoint, `pigan convert`, `pigan render DIR`).

Each gadget writes a marker file when it runs. A positive control unpickles it with the standard,
unrestricted pickle first to show the gadget is live; the allowlisting loader must then refuse it,
name the global (or operation) it refused, and leave no marker behind.
"""
import io
import os
import pickle
import struct
import sys
import time

import pytest
import torch
import torch.nn as nn

from pigan import checkpoints as C
from pigan import released_pickle as RP
from pigan.cli import convert as convert_cli


# ----------------------------------------------------------------------------- raw pickle builders
def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _call(func, *args):
    return func + b"(" + b"".join(args) + b"tR"


def _pickle(body):
    return b"\x80\x02" + body + b"."


def _code(marker):
    return f"open({str(marker)!r}, 'w').write('ran')"


def _shell(marker):
    return f"echo ran > '{marker}'"


def _gadgets(tmp_path, marker):
    """name -> (pickle bytes, whether the positive control can run here)."""
    inner = tmp_path / "inner.pkl"
    inner.write_bytes(_pickle(_call(_global("builtins", "exec"), _str(_code(marker)))))
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(_code(marker) + "\n")
    popen_args = b"(" + _str("sh") + _str("-c") + _str(_shell(marker)) + b"l"   # a list
    return {
        "torch.fx._forward_from_src": (_pickle(_call(
            _global("torch.fx.graph_module", "_forward_from_src"), _str(_code(marker)), b"}")), True),
        "torch.hub._load_local": (_pickle(_call(
            _global("torch.hub", "_load_local"), _str(str(hub)), _str("model"))), True),
        "torch.load(weights_only=False)": (_pickle(_call(
            _global("torch", "load"), _str(str(inner)), b"N", _global("torch.serialization", "pickle"))), True),
        "getattr(__import__('os'), 'system')": (_pickle(_call(
            _call(_global("builtins", "getattr"), _call(_global("builtins", "__import__"), _str("os")),
                  _str("system")), _str(_shell(marker)))), True),
        "os.system": (_pickle(_call(_global("os", "system"), _str(_shell(marker)))), True),
        "posix.system": (_pickle(_call(_global("posix", "system"), _str(_shell(marker)))), os.name == "posix"),
        "nt.system": (_pickle(_call(_global("nt", "system"), _str(_shell(marker)))), False),
        "subprocess.getoutput": (_pickle(_call(
            _global("subprocess", "getoutput"), _str(_shell(marker)))), True),
        "builtins.eval": (_pickle(_call(_global("builtins", "eval"), _str(_code(marker)))), True),
        "builtins.exec": (_pickle(_call(_global("builtins", "exec"), _str(_code(marker)))), True),
        "functools.partial(exec)": (_pickle(
            _call(_global("functools", "partial"), _global("builtins", "exec"), _str(_code(marker)))
            + b")R"), True),
        "copyreg._reconstructor(Popen)": (_pickle(_call(
            _global("copyreg", "_reconstructor"), _global("subprocess", "Popen"),
            _global("subprocess", "Popen"), popen_args)), True),
        # protocol 4 resolves dotted names: an admitted module ("torch") with a path into torch.hub
        "dotted name under torch": (b"\x80\x04" + b"\x8c\x05torch\x94" + b"\x8c\x0fhub._load_local\x94"
                                    + b"\x93" + _str(str(hub)) + _str("model") + b"\x86R.", True),
    }


def _ran(marker, wait=0.0):
    deadline = time.monotonic() + wait
    while True:
        if marker.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


GADGET_NAMES = ["torch.fx._forward_from_src", "torch.hub._load_local", "torch.load(weights_only=False)",
                "getattr(__import__('os'), 'system')", "os.system", "posix.system", "nt.system",
                "subprocess.getoutput", "builtins.eval", "builtins.exec", "functools.partial(exec)",
                "copyreg._reconstructor(Popen)", "dotted name under torch"]
REFUSED_GLOBAL = {"torch.fx._forward_from_src": "torch.fx.graph_module._forward_from_src",
                  "torch.hub._load_local": "torch.hub._load_local", "torch.load(weights_only=False)": "torch.load",
                  "getattr(__import__('os'), 'system')": "builtins.getattr", "os.system": "os.system",
                  "posix.system": "posix.system", "nt.system": "nt.system",
                  "subprocess.getoutput": "subprocess.getoutput", "builtins.eval": "builtins.eval",
                  "builtins.exec": "builtins.exec", "functools.partial(exec)": "functools.partial",
                  "copyreg._reconstructor(Popen)": "copyreg._reconstructor",
                  "dotted name under torch": "torch.hub._load_local"}


@pytest.mark.parametrize("name", GADGET_NAMES)
def test_gadget_is_live_and_refused(tmp_path, name):
    marker = tmp_path / "ran.txt"
    data, control = _gadgets(tmp_path, marker)[name]
    if control:                                       # the gadget runs under plain pickle ...
        try:
            pickle.loads(data)
        except Exception:
            pass                                      # most fail after their payload ran
        assert _ran(marker, wait=5.0), f"gadget {name} did not run under plain pickle"
        marker.unlink()
        sys.modules.pop("hubconf", None)
    path = tmp_path / "generator.pth"
    path.write_bytes(data)
    with pytest.raises(C.CheckpointError) as err:     # ... and is refused here, naming the global
        C.load_pigan_checkpoint(path, use_ema=False)
    msg = str(err.value)
    assert "generator.pth" in msg and f"refusing to load global {REFUSED_GLOBAL[name]}" in msg, msg
    assert not _ran(marker, wait=0.3 if "Popen" in name else 0.0)


def _torch_saved_gadget(path, marker):
    """A zip-format file as torch.save writes it, whose pickle calls torch.fx's exec helper."""
    class Evil:
        def __reduce__(self):
            from torch.fx.graph_module import _forward_from_src
            return _forward_from_src, (_code(marker), {})
    torch.save(Evil(), path)


def test_entry_points_refuse_and_run_nothing(tmp_path, capsys):
    from pigan.cli import render as render_cli
    marker = tmp_path / "ran.txt"
    folder = tmp_path / "released"
    folder.mkdir()
    _torch_saved_gadget(folder / "generator.pth", marker)
    with pytest.raises(C.CheckpointError, match=r"refusing to load global torch\.fx\.graph_module\._forward_from_src"):
        C.load_pigan_checkpoint(folder)
    assert convert_cli.main([str(folder), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "torch.fx.graph_module._forward_from_src" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
    assert render_cli.main([str(folder), "--out", str(tmp_path / "r"), "--no-progress", "--device", "cpu"]) == 2
    assert "torch.fx.graph_module._forward_from_src" in capsys.readouterr().err
    assert not marker.exists()


def test_gadget_in_ema_file_is_refused(tmp_path, pigan_dir_for_gadgets):
    """A good generator.pth next to a hostile ema.pth: the EMA file goes through the same allowlist."""
    marker = tmp_path / "ran.txt"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "generator.pth").write_bytes((pigan_dir_for_gadgets / "generator.pth").read_bytes())
    _torch_saved_gadget(folder / "ema.pth", marker)
    with pytest.raises(C.CheckpointError, match=r"ema\.pth.*refusing to load global torch\.fx"):
        C.load_pigan_checkpoint(folder)
    assert not marker.exists()


@pytest.fixture(scope="module")
def pigan_dir_for_gadgets(tmp_path_factory):
    from test_checkpoints import _saved_pigan_run
    return _saved_pigan_run(tmp_path_factory.mktemp("good"), hidden=8)


def test_admitted_globals_cannot_be_misused():
    """Globals on the list still cannot set attributes on a class, call an instance, or instantiate
    a class that is not on the list."""
    linear = _global("torch.nn.modules.linear", "Linear")
    od = _global("collections", "OrderedDict")
    forward = nn.Linear.forward
    # BUILD with slot state on the class itself would monkeypatch torch.nn.Linear for the process.
    set_class_attr = _pickle(linear + b"N}" + _str("forward") + od + b"s\x86b")
    with pytest.raises(pickle.UnpicklingError, match="refusing to set the state of class"):
        RP.AllowlistUnpickler(io.BytesIO(set_class_attr)).load()
    assert nn.Linear.forward is forward
    # NEWOBJ an (uninitialised) Linear, then REDUCE on the instance: calling a module runs forward.
    call_instance = _pickle(linear + b")\x81" + b")R")
    with pytest.raises(pickle.UnpicklingError, match="refusing to call a torch.nn.modules.linear.Linear"):
        RP.AllowlistUnpickler(io.BytesIO(call_instance)).load()
    # REDUCE on an admitted class that is not a container: instantiation goes through NEWOBJ only.
    with pytest.raises(pickle.UnpicklingError, match="refusing to call class torch.nn.modules.linear.Linear"):
        RP.AllowlistUnpickler(io.BytesIO(_pickle(_call(linear, b"K\x02K\x02")))).load()
    # NEWOBJ of a container type that is admitted only as a callable.
    with pytest.raises(pickle.UnpicklingError, match="refusing to create an instance of class collections.OrderedDict"):
        RP.AllowlistUnpickler(io.BytesIO(_pickle(od + b")\x81"))).load()
    # Names outside pi-GAN's class table are refused even under pi-GAN's module paths.
    for module, name in (("siren.siren", "Sine"), ("siren.siren", "FiLMLayer.__init__"),
                         ("generators.generators", "torch"), ("torch_ema.ema", "torch"),
                         ("torch", "FloatTensor"), ("torch._utils", "_rebuild_from_type_v2"),
                         ("torch.serialization", "pickle")):
        with pytest.raises(pickle.UnpicklingError, match=rf"refusing to load global {module}\.{name}"):
            RP.AllowlistUnpickler(io.BytesIO(_pickle(_global(module, name)))).load()
    # Protocol 0/1 instantiation opcodes are refused outright.
    with pytest.raises(pickle.UnpicklingError, match="INST/OBJ"):
        RP.AllowlistUnpickler(io.BytesIO(b"(" + od + b"o.")).load()
