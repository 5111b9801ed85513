"""The `pigan` command: routing to the subcommands, `info`, help, errors."""
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from pigan import cli


def test_info_lists_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "pigan-kernels" in out and "torch" in out and "backends:" in out
    for name in ("reference", "native", "triton"):
        assert f"  {name}" in out


def test_info_prints_each_backends_notes(capsys, monkeypatch):
    from pigan.ops import _backend
    from pigan.ops.film import AUTO_NOTE

    monkeypatch.setitem(_backend._notes, "native", ["a note for the test"])
    assert cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    native = next(i for i, line in enumerate(lines) if line.startswith("  native "))
    assert lines[native + 1] == "            note: a note for the test"
    assert f"            note: {AUTO_NOTE}" in lines                  # film_siren's, under triton


@pytest.mark.parametrize("argv, prog, message", [
    (["render"], "pigan render", "the following arguments are required: checkpoint, --out"),
    (["train", "--bogus"], "pigan train", "unrecognized arguments: --bogus"),
    (["eval", "ck.pt"], "pigan eval", "the following arguments are required: --real"),
    (["shapes", "ck.pt", "--out", "o", "--resolution", "abc"], "pigan shapes", "invalid int value: 'abc'"),
    (["invert"], "pigan invert", "required: checkpoint, images"),
    (["convert"], "pigan convert", "required: src, dst"),
    (["--bogus"], "pigan", "unrecognized arguments: --bogus"),
])
def test_usage_errors_are_one_usage_line_and_one_error_line(argv, prog, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    usage, error = captured.err.splitlines()
    assert usage.startswith(f"usage: {prog} ") and usage.endswith(f"(all options: {prog} --help)")
    assert error.startswith(f"{prog}: error: ") and message in error
    assert captured.out == ""


@pytest.mark.parametrize("argv, prog, message", [
    (["render", "ck.pt", "--out", "o", "--resolution", "0"], "pigan render", "--resolution must be a positive integer, got 0"),
    (["shapes", "ck.pt", "--out", "o", "--resolution", "1"], "pigan shapes", "--resolution"),
    (["invert", "ck.pt", "x.png", "--iterations", "0"], "pigan invert", "--iterations must be a positive integer, got 0"),
    (["eval", "ck.pt", "--real", "r", "--real-count", "0"], "pigan eval", "--real-count must be a positive integer"),
])
def test_value_errors_are_one_usage_line_and_one_error_line(argv, prog, message, capsys):
    assert cli.main(argv) == 2                      # found before any work: no file is read
    captured = capsys.readouterr()
    usage, error = captured.err.splitlines()
    assert usage.startswith(f"usage: {prog} ") and usage.endswith(f"(all options: {prog} --help)")
    assert error.startswith(f"{prog}: error: ") and message in error
    assert captured.out == ""


def test_short_usage_names_required_options_and_positionals():
    ap = cli.ArgumentParser(prog="pigan x")
    ap.add_argument("src")
    ap.add_argument("dst", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--flag", action="store_true", required=True)
    assert ap.short_usage() == "usage: pigan x --out OUT --flag [options] src dst [dst ...]  (all options: pigan x --help)"


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    for name in ("train", "invert", "render", "convert", "info"):
        assert name in out


def test_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["trian"])
    assert exc.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command, prog", [("train", "pigan train"), ("invert", "pigan invert"),
                                           ("render", "pigan render"), ("convert", "pigan convert")])
def test_subcommand_help_comes_from_its_module(command, prog, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: {prog}" in capsys.readouterr().out


def test_train_errors_are_routed(tmp_path, capsys):
    assert cli.main(["train", "--curriculum", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown curriculum 'nope'" in capsys.readouterr().err


def test_python_dash_m(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-m", "pigan", "info"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0 and "backends:" in res.stdout
    res = subprocess.run([sys.executable, "-m", "pigan", "train", "--batch-size", "-1", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "batch_size (stage 0) must be a positive integer" in res.stderr


def test_console_script_declared():
    try:
        eps = metadata.entry_points(group="console_scripts")
    except Exception:  # pragma: no cover
        pytest.skip("no package metadata")
    scripts = {ep.name: ep.value for ep in eps}
    if "pigan" not in scripts:
        pytest.skip("pigan-kernels is not installed (running from a source tree)")
    assert scripts["pigan"] == "pigan.cli:main"


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "--debug" in out
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_OUTPUT, cli.EXIT_DIVERGED):
        assert f"\n  {code}  " in out


def test_run_command_turns_command_errors_into_one_line(capsys):
    def body(argv):
        raise cli.OutputError("cannot write x.png: no space left on device")

    assert cli.run_command("pigan demo", body, []) == cli.EXIT_OUTPUT
    assert capsys.readouterr().err == "pigan demo: error: cannot write x.png: no space left on device\n"
    assert cli.run_command("pigan demo", body, ["--debug"]) == cli.EXIT_OUTPUT
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("pigan demo: error: cannot write x.png: no space left on device\n")

    def bug(argv):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        cli.run_command("pigan demo", bug, [])
