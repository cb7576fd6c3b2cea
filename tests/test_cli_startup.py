"""The command line starts at once: building the parser (``pitbox --help``, ``pitbox CMD
--help``) imports none of the heavy libraries. Checked on ``sys.modules`` of a fresh
interpreter, never on time (``bench/cli_bench.py`` times it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pitbox import cli

#: Top-level modules that no module in ``pitbox.cli.COMMAND_MODULES`` (nor its package's
#: ``__init__``) may import when the parser is built: each costs 10 ms to 1 s of start-up.
HEAVY = {
    "numpy", "pandas", "pyarrow", "scipy", "sklearn", "plotly", "websockets", "jwt", "yaml", "irsdk", "duckdb",
    "dask", "distributed", "PIL", "imageio", "imageio_ffmpeg", "elevenlabs", "pocketsphinx", "playwright", "tqdm",
    "ipywidgets", "anywidget", "IPython", "jupyterlab", "pyttsx3", "sounddevice", "libibt", "matplotlib", "narwhals",
    "requests", "httpx", "asyncio",
}


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_building_the_parser_imports_no_heavy_module() -> None:
    out = _run("""
        import contextlib, io, json, sys
        from pitbox import cli
        per_module = {}
        for name in cli.COMMAND_MODULES:  # one at a time, to name the culprit
            before = set(sys.modules)
            try:
                __import__(name)
            except ModuleNotFoundError:
                continue
            per_module[name] = sorted(set(sys.modules) - before)
        parser = cli.build_parser()
        helps = 0
        for action in parser._subparsers._group_actions:  # every command's and sub-command's help
            todo = list(action.choices.values())
            while todo:
                p = todo.pop()
                p.format_help()
                helps += 1
                if p._subparsers is not None:
                    for a in p._subparsers._group_actions:
                        todo.extend(a.choices.values())
        print(json.dumps({"per_module": per_module, "all": sorted(sys.modules), "helps": helps}))
    """)
    offenders = {name: _heavy(mods) for name, mods in out["per_module"].items() if _heavy(mods)}
    assert not offenders, f"modules in COMMAND_MODULES import heavy libraries at their top: {offenders}"
    assert _heavy(out["all"]) == []
    assert out["helps"] >= 15  # import, sessions, ..., record, relay, token create ...
    assert set(out["per_module"]) >= {"pitbox.commands", "pitbox.recorder.cli", "pitbox.live.cli"}


@pytest.mark.parametrize("argv", [["--help"], ["import", "--help"], ["record", "--help"], ["token", "create", "--help"],
                                  ["coach", "--help"], ["emulate", "--help"], ["simulate", "--help"]])
def test_help_as_a_whole_process_imports_no_heavy_module(argv: list[str]) -> None:
    out = _run(f"""
        import contextlib, io, json, sys
        from pitbox.cli import main
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                main({argv!r})
            except SystemExit as exc:
                code = exc.code
        print(json.dumps({{"code": code, "help": buf.getvalue(), "modules": sorted(sys.modules)}}))
    """)
    assert out["code"] == 0
    assert "usage: pitbox" in out["help"]
    assert _heavy(out["modules"]) == []


def _commands(parser):
    for action in parser._subparsers._group_actions:
        for name, p in action.choices.items():
            yield name, p
            if p._subparsers is not None:
                for sub, q in _commands(p):
                    yield f"{name} {sub}", q


def test_every_command_function_resolves() -> None:
    """A lazy ``func="module:function"`` names a function that exists (checked in this
    process, where importing everything is fine)."""
    funcs = {name: p.get_default("func") for name, p in _commands(cli.build_parser())}
    assert "import" in funcs and "record" in funcs
    for name, func in funcs.items():
        assert func is not None, f"pitbox {name} sets no func"
        assert callable(cli.command_function(func)), name


def test_a_lazy_command_runs_through_main(tmp_path, monkeypatch, capsys) -> None:
    """``func`` given as ``"module:function"`` is imported when the command runs (not when
    the parser is built), and its expected errors keep the CLI's one-line story."""
    (tmp_path / "lazy_cmds.py").write_text(textwrap.dedent("""
        def register(sub):
            p = sub.add_parser("hello")
            p.add_argument("--fail", action="store_true")
            p.set_defaults(func="lazy_cmds_impl:run")
    """))
    (tmp_path / "lazy_cmds_impl.py").write_text(textwrap.dedent("""
        from pitbox.errors import PitboxError

        def run(args):
            if args.fail:
                raise PitboxError("hello: failed on purpose")
            print("hello from the implementation")
            return 0
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["lazy_cmds"])
    cli.build_parser()
    assert "lazy_cmds_impl" not in sys.modules
    assert cli.main(["hello"]) == 0
    assert "lazy_cmds_impl" in sys.modules
    assert capsys.readouterr().out == "hello from the implementation\n"
    assert cli.main(["hello", "--fail"]) == cli.EXIT_ERROR
    assert capsys.readouterr().err == "pitbox hello: error: hello: failed on purpose\n"
    with pytest.raises(ModuleNotFoundError):
        cli.command_function("pitbox.no_such_module:run")


@pytest.mark.parametrize("package", ["pitbox.analysis", "pitbox.live", "pitbox.recorder", "pitbox.emulator",
                                     "pitbox.sim", "pitbox.voice"])
def test_every_lazily_exported_name_resolves(package: str) -> None:
    """A package ``__init__`` that loads its names on first use (``lazy_loader``) names only
    what its modules define: a name moved to another module breaks here, not in a user's
    notebook."""
    import importlib

    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{package}.__all__ names what no module defines: {missing}"


def test_import_as_a_whole_process_writes_everything_and_loads_no_pandas(tmp_path) -> None:
    """``pitbox import`` run as a user runs it (``pitbox.cli.run``: only the import command's
    parser, the team index loaded only when a session was written, the interpreter's teardown
    skipped after success): its output arrives whole, the session file is complete (rows as
    pyirsdk counts them) and nothing loads pandas or the team index when there is nothing to
    index (``--no-index``, or a file already present)."""
    import irsdk
    import pyarrow.parquet as pq

    from tests.conftest import REAL, need

    src = need(REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt")
    data = tmp_path / "data"
    ibt = irsdk.IBT()
    ibt.open(str(src))
    try:
        rows = len(ibt.get_all("SessionTime"))
    finally:
        ibt.close()

    def pitbox(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-X", "importtime", "-m", "pitbox.cli", "import", str(src), "--data",
                               str(data), *args], capture_output=True, text=True, timeout=300)

    first = pitbox("--no-index")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1].startswith("1 imported, 0 already present, 0 failed")
    loaded = {line.split("|")[-1].strip() for line in first.stderr.splitlines() if line.startswith("import time:")}
    assert "pitbox.store" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "pandas" or m.startswith("pitbox.team")}
    files = list(data.rglob("*.parquet"))
    assert len(files) == 1 and pq.ParquetFile(files[0]).metadata.num_rows == rows
    again = pitbox()  # indexing on, but nothing new to index
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("0 imported, 1 already present")
    loaded = {line.split("|")[-1].strip() for line in again.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in loaded if m.split(".")[0] == "pandas" or m.startswith("pitbox.team")}


@pytest.mark.parametrize(("argv", "modules"), [
    (["import", "f.ibt"], ["pitbox.commands"]), (["-v", "import", "f.ibt", "--no-index"], ["pitbox.commands"]),
    (["import", "--help"], None), (["coach", "x"], None), ([], None), (["imprt", "x"], None)])
def test_only_the_import_command_builds_a_partial_parser(argv: list[str], modules: list[str] | None) -> None:
    assert cli._command_modules(argv) == modules
