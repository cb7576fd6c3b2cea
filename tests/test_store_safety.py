"""The session store stays correct: idempotent re-import, failed imports leave nothing behind,
other sessions are never touched, the catalogue is a rebuildable cache, and pyarrow reads the
store as the Hive-partitioned dataset it is.

"Unchanged" is checked byte for byte: the sha256 and mtime of every file in the store,
hidden ones included. Failures are injected into third-party calls only (pyarrow's
``ParquetWriter.write_batch``, the operating system's file-size limit).
"""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import irsdk
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pitbox.cli import main
from pitbox.errors import StoreError, TruncatedWarning
from pitbox.ibt import open_telemetry, write_ibt
from pitbox.store import CATALOGUE_NAME, ROW_GROUP_ROWS, Store, import_file, import_paths, read_meta

from conftest import AMG, LANGLEY, REAL, need

pytestmark = [pytest.mark.real, pytest.mark.timeout(300)]  # safety nets only, for a loaded machine

SMALL = REAL / "mercedesw13_spielberg-gp_teamjorge-ibt_valid.ibt"
LANGLEY_2 = REAL / "skmodified_langley_iRacingTelemetry_2015-08-24_practice.ibt"


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below ``root`` (hidden files included)."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def session_files(root: Path) -> list[str]:
    return sorted(k for k in snapshot(root) if k.endswith(".parquet") and "/." not in f"/{k}")


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def dataset_files(root: Path) -> list[str]:
    return sorted(Path(f).relative_to(root).as_posix() for f in ds.dataset(root, partitioning="hive").files)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with two sessions (two cars, two tracks) and its catalogue."""
    root = tmp_path / "data"
    results = import_paths([need(SMALL), need(LANGLEY)], root)
    assert [r.status for r in results] == ["imported", "imported"]
    return root


@pytest.fixture(scope="module")
def long_ibt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real file tiled 4x (SessionTime and SessionTick kept increasing): more rows than one
    row group, so a write can fail after the first batch."""
    path = tmp_path_factory.mktemp("long") / "langley_x4.ibt"
    with open_telemetry(need(LANGLEY)) as tf:
        ch = tf.read()
        variables, buf_len, yaml, rate = tf.variables, tf.header.buf_len, tf.session_info_raw, tf.tick_rate
        start_date = tf.disk.session_start_date
    k = 4
    span = float(ch["SessionTime"][-1] - ch["SessionTime"][0]) + 1.0 / rate
    tiled = {name: np.concatenate([a] * k) for name, a in ch.items()}
    tiled["SessionTime"] = tiled["SessionTime"] + np.repeat(np.arange(k) * span, len(ch["SessionTime"]))
    assert (np.diff(tiled["SessionTime"][tiled["SessionTime"] != 0]) >= 0).all()
    write_ibt(path, tiled, yaml, variables=variables, buf_len=buf_len, tick_rate=rate, start_date=start_date)
    assert len(tiled["SessionTime"]) > ROW_GROUP_ROWS
    return path


# -- re-import -----------------------------------------------------------------------

def test_importing_twice_changes_nothing(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store(store).sessions()
    before = snapshot(store)
    again = import_file(need(SMALL), store)
    assert again.status == "present" and len(again.sessions) == 1
    assert main(["import", str(SMALL), str(LANGLEY), "--data", str(store)]) == 0
    out = capsys.readouterr().out
    assert "0 imported, 2 already present, 0 failed" in out
    Store(store).sessions()
    assert snapshot(store) == before


def test_same_file_under_another_name_is_present(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.ibt"
    copy.write_bytes(need(SMALL).read_bytes())
    before = snapshot(store)
    assert import_file(copy, store).status == "present"
    assert snapshot(store) == before


def test_reimport_after_deleting_a_session_restores_identical_bytes(store: Path) -> None:
    """The import is deterministic, so a deleted session file comes back byte for byte."""
    meta_path = next(p for p in (store / k for k in session_files(store)) if read_meta(p)["source_name"] == SMALL.name)
    digest = hashlib.sha256(meta_path.read_bytes()).hexdigest()
    meta_path.unlink()
    assert import_file(SMALL, store).status == "imported"
    assert hashlib.sha256(meta_path.read_bytes()).hexdigest() == digest


# -- failures half way ------------------------------------------------------------------

class FailingWrite:
    """Wraps ``pyarrow.parquet.ParquetWriter.write_batch``; raises on call number ``fail_on``."""

    def __init__(self, fail_on: int, exc: BaseException):
        self.original, self.fail_on, self.exc, self.calls = pq.ParquetWriter.write_batch, fail_on, exc, 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def write_batch(writer: pq.ParquetWriter, *args: object, **kwargs: object) -> None:
            self.calls += 1
            if self.calls == self.fail_on:
                raise self.exc
            self.original(writer, *args, **kwargs)

        monkeypatch.setattr(pq.ParquetWriter, "write_batch", write_batch)


def assert_store_as_before(root: Path, before: dict[str, tuple[str, int]], ids: list[str]) -> None:
    assert snapshot(root) == before
    assert not leftovers(root)
    assert dataset_files(root) == session_files(root)
    assert sorted(Store(root).sessions().id) == ids


@pytest.mark.parametrize("exc,raised", [
    (OSError(errno.ENOSPC, "No space left on device"), StoreError),
    (RuntimeError("writer crashed"), RuntimeError),
    (KeyboardInterrupt(), KeyboardInterrupt),
], ids=["disk-full", "crash", "ctrl-c"])
def test_failure_on_second_batch_leaves_no_partial_file(exc: BaseException, raised: type, store: Path, long_ibt: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = sorted(Store(store).sessions().id)
    before = snapshot(store)
    fault = FailingWrite(2, exc)
    fault.install(monkeypatch)
    with pytest.raises(raised):
        import_file(long_ibt, store)
    assert fault.calls == 2
    assert_store_as_before(store, before, ids)
    # and the store takes the file once the fault is gone
    monkeypatch.undo()
    result = import_file(long_ibt, store)
    assert result.status == "imported"
    new = sorted(set(session_files(store)) - set(before))
    assert len(new) == 1
    table = pq.read_table(store / new[0], columns=["SessionTime"])
    with open_telemetry(long_ibt) as tf:
        assert table.num_rows == tf.n_rows
        np.testing.assert_array_equal(table["SessionTime"].to_numpy(), tf.read(["SessionTime"])["SessionTime"])
    assert pq.ParquetFile(store / new[0]).metadata.num_row_groups > 1


def test_failed_import_through_the_cli(store: Path, long_ibt: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ids = sorted(Store(store).sessions().id)
    before = snapshot(store)
    FailingWrite(2, OSError(errno.ENOSPC, "No space left on device")).install(monkeypatch)
    code = main(["import", str(long_ibt), "--data", str(store)])
    out, err = capsys.readouterr()
    assert code != 0 and "No space left on device" in out + err and "Traceback" not in out + err
    assert_store_as_before(store, before, ids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE fault injection is Linux only")
def test_file_size_limit_in_a_child_process(store: Path, long_ibt: Path, tmp_path: Path) -> None:
    """The OS refuses to let the session file grow past 256 KiB: the import fails cleanly."""
    ids = sorted(Store(store).sessions().id)
    before = snapshot(store)
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))\n"
        "from pitbox.cli import main\n"
        f"sys.exit(main(['import', {str(long_ibt)!r}, '--data', {str(store)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": ""})
    assert proc.returncode == 1, proc.stderr
    assert "cannot write session file" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert_store_as_before(store, before, ids)


# -- other sessions ---------------------------------------------------------------------

def test_an_import_never_touches_another_session(store: Path, tmp_path: Path) -> None:
    """New sessions in the same track/car folder, and a damaged copy of a stored file, only add files."""
    Store(store).sessions()
    before = {k: v for k, v in snapshot(store).items() if k != CATALOGUE_NAME}
    cut = tmp_path / "small_cut.ibt"
    raw = need(SMALL).read_bytes()
    cut.write_bytes(raw[: len(raw) - 5000])
    with pytest.warns(TruncatedWarning):
        results = import_paths([need(LANGLEY_2), cut, need(AMG)], store)
    assert [r.status for r in results] == ["imported", "imported", "imported"]
    after = snapshot(store)
    assert {k: after[k] for k in before} == before
    assert len(session_files(store)) == 5
    assert len(Store(store).sessions()) == 5


# -- catalogue ---------------------------------------------------------------------------

def footer_rows(root: Path) -> dict[str, dict]:
    """What each session file says about itself, read with pyarrow alone."""
    out = {}
    for rel in session_files(root):
        meta = json.loads(pq.read_schema(root / rel).metadata[b"pitbox"])
        out[meta["id"]] = meta
    return out


def test_catalogue_deleted_is_rebuilt_identically(store: Path) -> None:
    import_file(need(AMG), store)
    first = Store(store).sessions()
    cat = store / CATALOGUE_NAME
    saved = cat.read_bytes()
    cat.unlink()
    rebuilt = Store(store).sessions()
    assert cat.read_bytes() == saved
    assert rebuilt.equals(first)
    truth = footer_rows(store)
    assert sorted(rebuilt.id) == sorted(truth)
    for row in rebuilt.itertuples():
        t = truth[row.id]
        assert (row.track, row.car, row.driver, row.samples, row.truncated) == (
            t["track"], t["car"], t["driver"], t["samples"], t["truncated"])


@pytest.mark.parametrize("damage", [
    "", "{not json", "[1, 2, 3]", '{"gone.parquet": {"stamp": [1, 2], "row": {}}}',
    '{"%(rel)s": 5}', '{"%(rel)s": {"stamp": %(stamp)s}}', '{"%(rel)s": {"stamp": %(stamp)s, "row": []}}',
], ids=["empty", "garbage", "list", "stale-entry", "entry-not-a-map", "entry-without-row", "row-not-a-map"])
def test_damaged_catalogue_is_rebuilt(damage: str, store: Path) -> None:
    first = Store(store).sessions()
    cat = store / CATALOGUE_NAME
    saved = cat.read_bytes()
    rel = session_files(store)[0]
    st = (store / rel).stat()
    cat.write_text(damage % {"rel": rel, "stamp": json.dumps([st.st_size, st.st_mtime_ns])})
    assert Store(store).sessions().equals(first)
    assert cat.read_bytes() == saved


def test_catalogue_drops_a_deleted_session(store: Path) -> None:
    sessions = Store(store).sessions()
    gone = Path(sessions.path.iloc[0])
    gone.unlink()
    left = Store(store).sessions()
    assert list(left.id) == list(sessions.id.iloc[1:])


# -- the store as a dataset ----------------------------------------------------------------

def test_pyarrow_reads_the_store_as_a_hive_dataset(store: Path) -> None:
    import_file(need(AMG), store)
    dataset = ds.dataset(store, partitioning="hive")
    assert dataset_files(store) == session_files(store)  # the catalogue and hidden files are not data
    table = dataset.to_table(columns=["SessionTime", "Speed", "track", "car"])
    cat = Store(store).sessions()
    assert table.num_rows == int(cat.samples.sum())
    counts = {(r["track"], r["car"]): r["SessionTime_count"]
              for r in table.group_by(["track", "car"]).aggregate([("SessionTime", "count")]).to_pylist()}
    for row in cat.itertuples():
        folder = Path(row.path).parent
        key = (folder.parent.name.removeprefix("track="), folder.name.removeprefix("car="))
        assert counts[key] == row.samples
    one = dataset.to_table(filter=(ds.field("car") == "mercedesamggt4"), columns=["SessionTime", "Speed"])
    ibt = irsdk.IBT()
    ibt.open(str(AMG))
    try:
        for name in ("SessionTime", "Speed"):
            ref = np.asarray(ibt.get_all(name), dtype=one[name].type.to_pandas_dtype())
            np.testing.assert_array_equal(one[name].to_numpy(), ref, err_msg=name)
    finally:
        ibt.close()
