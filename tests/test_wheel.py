"""A wheel of the project works when installed for real, not editable.

The editable install that the rest of the suite runs on imports straight from the checkout, so a
package that setup.py forgets, a data file left out of the wheel or a top-level ``kernels`` module
would pass every other test. Here the checkout's source files are copied to a temporary folder (so
no build output of the checkout leaks in), a wheel is built from them against this interpreter's
torch, installed into a fresh virtual environment, and run from a folder outside the checkout.

The fresh environment borrows this one's site-packages (torch alone is gigabytes) through a ``.pth``
file: its lines are appended to ``sys.path`` after the environment's own site-packages, and the
``.pth`` files inside the borrowed folder, among them the editable install's import hook, are not
processed, so ``pigan`` can only come from the wheel. Every check asserts that it did.

Only the C++ CPU sources are compiled (``PIGAN_NO_CUDA=1``), without debug information, which
halves the compile time of the torch headers; that is most of this test's couple of minutes.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> where its files land in the wheel (setup.py's package_dir).
PACKAGE_FOLDERS = {"pigan": "pigan", "kernels": "pigan/kernels"}
BUILD_FILES = ("csrc", "setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in")
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 300


def _tail(text, lines=40):
    text = (text or "").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _run(cmd, what, timeout=RUN_TIMEOUT_S, **kwargs):
    """Run ``cmd``; on failure, fail the test with the command and the tails of its output."""
    shown = " ".join(str(c) for c in cmd)
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              **kwargs)
    except subprocess.TimeoutExpired as exc:
        out = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"{what}: no result after {timeout} s\n$ {shown}\n--- stderr (tail) ---\n{_tail(out)}",
                    pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed with exit {proc.returncode}\n$ {shown}\n"
                    f"--- stderr (tail) ---\n{_tail(proc.stderr)}\n--- stdout (tail) ---\n{_tail(proc.stdout)}",
                    pytrace=False)
    return proc


def _source_files():
    """The checkout's files as a commit of it would hold them: the tracked ones still on disk, plus
    files not yet added among the sources and build files, so that a subpackage being created is
    tested before ``git add``. Other untracked files are left out: they may be virtual environments
    or run outputs that .gitignore does not name."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the wheel is built from the files git tracks")
    listings = (["ls-files", "-z", "--cached"],
                ["ls-files", "-z", "--others", "--exclude-standard", "--", *PACKAGE_FOLDERS, *BUILD_FILES])
    files = set()
    for args in listings:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"{ROOT} is not a git checkout (git {' '.join(args[:2])}: "
                        f"{proc.stderr.decode(errors='replace').strip()})")
        files.update(p for p in proc.stdout.decode().split("\0") if p)
    return sorted(p for p in files if (ROOT / p).is_file())


def _installed_name(source_path):
    """Where a file of the package folders lands in the wheel, or None for files outside them."""
    parts = PurePosixPath(source_path).parts
    if parts[0] in PACKAGE_FOLDERS:
        return str(PurePosixPath(PACKAGE_FOLDERS[parts[0]], *parts[1:]))
    return None


def _subpackages(files):
    """Every folder of the package folders that holds Python code, as a dotted module name."""
    names = set()
    for f in files:
        installed = _installed_name(f)
        if installed and installed.endswith(".py"):
            names.add(".".join(PurePosixPath(installed).parent.parts))
    return sorted(names)


def _pip_version():
    from importlib.metadata import version
    return tuple(int(x) for x in version("pip").split(".")[:2] if x.isdigit())


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """Build the wheel, install it into a fresh virtual environment; what the tests need to know."""
    files = _source_files()
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # The build finds ninja (torch falls back to a slow serial build without it) next to this
    # interpreter even when its environment is not activated.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PIGAN_NO_CUDA"] = "1"
    env.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, 4))))
    # Python's own compile flags (setuptools replaces them with $CFLAGS, older releases append it)
    # with their "-g" undone: the same code, without the debug information.
    env["CFLAGS"] = " ".join(filter(None, (sysconfig.get_config_var("CFLAGS"), env.get("CFLAGS"), "-g0")))
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-input",
          "--disable-pip-version-check", "--wheel-dir", dist, src],
         "building the wheel (pip wheel --no-build-isolation --no-deps)", timeout=BUILD_TIMEOUT_S,
         cwd=work, env=env)
    wheels = sorted(dist.glob("pigan_kernels-*.whl"))
    assert len(wheels) == 1, f"expected one pigan_kernels wheel in {dist}, found {os.listdir(dist)}"

    venv = work / "venv"
    # This environment's pip can install into another interpreter's (--python, pip >= 22.3), which
    # spares the new environment a pip of its own: ensurepip takes tens of seconds on a busy
    # 2-core machine.
    own_pip = _pip_version() < (22, 3)
    _run([sys.executable, "-m", "venv", *([] if own_pip else ["--without-pip"]), venv],
         "creating a virtual environment", cwd=work)
    vpython = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    paths = json.loads(_run([vpython, "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
                            "asking the new environment for its paths", cwd=work).stdout)
    # Installed before the outer site-packages become visible, so that pip cannot see (and try to
    # replace) the editable install there.
    pip = [vpython, "-m", "pip"] if own_pip else [sys.executable, "-m", "pip", "--python", vpython]
    _run([*pip, "install", "--no-deps", "--no-index", "--no-input", "--disable-pip-version-check", wheels[0]],
         "installing the wheel into the new environment", cwd=work, env=env)
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(paths["purelib"], "zz_outer_site_packages.pth").write_text("".join(f"{p}\n" for p in outer))

    run_env = {k: v for k, v in env.items() if k not in ("CFLAGS", "MAX_JOBS")}
    run_env["PATH"] = os.pathsep.join([paths["scripts"], run_env["PATH"]])
    outside = work / "elsewhere"
    outside.mkdir()
    return {"files": files, "wheel": wheels[0], "python": vpython, "scripts": Path(paths["scripts"]),
            "site": {Path(paths["purelib"]).resolve(), Path(paths["platlib"]).resolve()},
            "cwd": outside, "env": run_env}


def _site_arg(w):
    return os.pathsep.join(sorted(map(str, w["site"])))


def _in_venv(w, code, *args, what):
    return _run([w["python"], "-c", textwrap.dedent(code), *args], what, cwd=w["cwd"], env=w["env"])


def test_wheel_holds_every_package_file_and_no_top_level_kernels(wheel_env):
    names = set(zipfile.ZipFile(wheel_env["wheel"]).namelist())
    expected = {_installed_name(f) for f in wheel_env["files"]} - {None}
    missing = sorted(expected - names)
    assert not missing, (f"files of the package folders missing from {wheel_env['wheel'].name} (a package "
                         f"setup.py does not find, or data that MANIFEST.in does not include): {missing}")
    top = {n.split("/")[0] for n in names}
    stray = sorted(t for t in top if t != "pigan" and not t.endswith(".dist-info"))
    assert not stray, f"the wheel installs top-level names other than pigan: {stray}"
    assert any(n.startswith("pigan/_C.") for n in names), "the wheel has no pigan._C extension"


def test_console_script_help(wheel_env):
    pigan = wheel_env["scripts"] / "pigan"
    out = _run([pigan, "--help"], "pigan --help", cwd=wheel_env["cwd"], env=wheel_env["env"]).stdout
    assert "train" in out and "eval" in out, out
    out = _run([pigan, "train", "--help"], "pigan train --help", cwd=wheel_env["cwd"], env=wheel_env["env"]).stdout
    assert "--curriculum" in out, out


def test_every_subpackage_imports_from_the_wheel(wheel_env):
    modules = _subpackages(wheel_env["files"])
    assert "pigan.training" in modules and "pigan.kernels" in modules, modules
    # A dependency that this environment lacks (triton for pigan.kernels) is not the wheel's fault:
    # then the package need only be found, in the wheel.
    _in_venv(wheel_env, """
        import importlib, importlib.util, os, pathlib, sys
        site, modules = [pathlib.Path(p) for p in sys.argv[1].split(os.pathsep)], sys.argv[2:]
        bad = []
        for name in modules:
            try:
                origin = importlib.import_module(name).__file__
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] == "pigan":
                    raise
                origin = importlib.util.find_spec(name).origin
                print(f"{name}: found, not imported ({exc})")
            if not any(pathlib.Path(origin).resolve().is_relative_to(s) for s in site):
                bad.append(f"{name} from {origin}")
        assert not bad, f"not imported from the new environment's site-packages {site}: {bad}"
        """, _site_arg(wheel_env), *modules,
             what="importing every subpackage from the installed wheel")


def test_native_op_runs_from_the_wheel(wheel_env):
    _in_venv(wheel_env, """
        import os, pathlib, sys
        import torch
        import pigan, pigan._C, pigan.ops as ops
        site = [pathlib.Path(p) for p in sys.argv[1].split(os.pathsep)]
        for mod in (pigan, pigan._C):
            where = pathlib.Path(mod.__file__).resolve()
            assert any(where.is_relative_to(s) for s in site), f"{mod.__name__} is {where}, not in {site}"
        g = torch.Generator().manual_seed(0)
        rgb_sigma = torch.cat([torch.rand(2, 16, 12, 3, generator=g),
                               3 * torch.randn(2, 16, 12, 1, generator=g)], -1)
        z_vals = torch.linspace(0.88, 1.12, 12).expand(2, 16, 12).unsqueeze(-1).contiguous()
        with ops.use_backend("native"):
            got = ops.composite(rgb_sigma, z_vals)
        for name, a, b in zip(("rgb", "depth", "weights"), got, ops._composite(rgb_sigma, z_vals)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
        print("native composite matches the reference")
        """, _site_arg(wheel_env), what="running composite on the native CPU backend")
