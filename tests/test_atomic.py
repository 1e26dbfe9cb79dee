"""Atomic outputs: no-clobber commits, leftovers of killed writes, outputs that alias inputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from geo_ntl._atomic import (
    OWNER_SUFFIX,
    STAGING_OWNER,
    _start_time,
    atomic_output,
    check_distinct,
    committed_outputs,
    remove_stale_partials,
    staging_dir,
)
from geo_ntl.exceptions import InputError, OutputExistsError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftovers(folder, final, *, pid=None, host=None, token="deadbeef"):
    """What a write of ``final`` killed mid-way leaves: owner record, temp and staging files."""
    tmp = folder / f".{final.stem}.{token}.partial{final.suffix}"
    pid = pid or _dead_pid()
    record = {"host": host or socket.gethostname(), "pid": pid, "start": _start_time(pid) or "1",
              "final": os.path.realpath(final)}  # fmt: skip
    (folder / (tmp.name + OWNER_SUFFIX)).write_text(json.dumps(record))
    (folder / (tmp.name + ".staging.tif")).write_bytes(b"half a scene")
    tmp.write_bytes(b"half a cog")
    return tmp


def test_atomic_output__refuses_a_file_that_appeared_while_writing(tmp_path):
    target = tmp_path / "o.txt"
    with pytest.raises(OutputExistsError, match="appeared while"), atomic_output(target) as tmp:
        tmp.write_text("mine")
        target.write_text("theirs")  # a concurrent run finished first
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.txt"]


def test_atomic_output__overwrite_replaces_and_is_counted(tmp_path):
    target = tmp_path / "o.txt"
    target.write_text("old")
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert committed_outputs()[-1] == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.txt"]


def test_atomic_output__owner_record_names_the_output_while_writing(tmp_path):
    target = tmp_path / "o.tif"
    with atomic_output(target) as tmp:
        record = json.loads((tmp.parent / (tmp.name + OWNER_SUFFIX)).read_text())
        tmp.write_text("x")
    assert record["final"] == os.path.realpath(target) and record["pid"] == os.getpid()
    assert record["host"] == socket.gethostname()


def test_remove_stale_partials__removes_only_what_a_dead_writer_of_this_output_left(tmp_path):
    final = tmp_path / "o.tif"
    _leftovers(tmp_path, final, token="00000001")
    alive = _leftovers(tmp_path, final, pid=os.getppid(), token="00000002")
    elsewhere = _leftovers(tmp_path, final, host="another-host", token="00000003")
    other = _leftovers(tmp_path, tmp_path / "other.tif", token="00000004")
    (tmp_path / ".o.00000005.partial.tif").write_bytes(b"no owner record: not provably ours")
    removed = remove_stale_partials(final)
    assert len(removed) == 3  # the temp file, the staging file, the owner record
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any("00000001" in n for n in names)
    for kept in (alive, elsewhere, other):
        assert kept.exists()
    assert ".o.00000005.partial.tif" in names


def test_atomic_output__removes_leftovers_of_a_killed_write_first(tmp_path):
    final = tmp_path / "o.tif"
    _leftovers(tmp_path, final)
    with atomic_output(final) as tmp:
        tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif"]


def test_staging_dir__removes_a_dead_runs_folder_for_the_same_outputs(tmp_path):
    out = tmp_path / "o.tif"
    for name, owners, pid in (
        (".geo_ntl-gan-dead", [out], _dead_pid()),
        (".geo_ntl-gan-other", [tmp_path / "x.tif"], _dead_pid()),
        (".geo_ntl-gan-alive", [out], os.getppid()),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "gan_0.tif").write_bytes(b"staged")
        record = {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid) or "1",
                  "for": [os.path.realpath(p) for p in owners]}  # fmt: skip
        (folder / STAGING_OWNER).write_text(json.dumps(record))
    (tmp_path / ".geo_ntl-gan-unmarked").mkdir()
    with staging_dir(tmp_path, prefix=".geo_ntl-gan-", owners=[out]) as staging:
        assert (staging / STAGING_OWNER).exists()
        names = sorted(p.name for p in tmp_path.iterdir())
    assert ".geo_ntl-gan-dead" not in names
    assert {".geo_ntl-gan-other", ".geo_ntl-gan-alive", ".geo_ntl-gan-unmarked"} <= set(names)
    assert not staging.exists()


def test_check_distinct__dotdot_symlink_and_hard_link_aliases(tmp_path):
    (tmp_path / "w").mkdir()
    scene = tmp_path / "w" / "a.tif"
    scene.write_bytes(b"scene")
    (tmp_path / "link").symlink_to(tmp_path / "w")
    os.link(scene, tmp_path / "hard.tif")
    for alias in (tmp_path / "w" / ".." / "w" / "a.tif", tmp_path / "link" / "a.tif",
                  tmp_path / "hard.tif"):  # fmt: skip
        with pytest.raises(InputError, match="is the input scene"):
            check_distinct([alias], [("input scene", scene)])
    with pytest.raises(InputError, match="same file"):
        check_distinct([tmp_path / "x.tif", tmp_path / "w" / ".." / "x.tif"], [])
    check_distinct([tmp_path / "w" / "b.tif"], [("input scene", scene)])


def test_check_distinct__sees_through_a_vrt_to_its_source(tmp_path):
    import rasterio.shutil

    from geo_ntl.io import write_cog
    from geo_ntl.testing import make_scene

    source = write_cog(make_scene((1, 32, 32)), tmp_path / "scene_source.tif")
    vrt = tmp_path / "scene.vrt"
    rasterio.shutil.copy(source, vrt, driver="VRT")
    with pytest.raises(InputError, match="scene_source.tif"):
        check_distinct([source], [("input scene", vrt)])
    check_distinct([tmp_path / "other.tif"], [("input scene", vrt)])


@pytest.mark.parametrize("command", ["mosaic", "enhance"])
def test_cli__output_onto_the_file_behind_a_vrt_is_refused(runner, tmp_path, command):
    import rasterio.shutil

    from geo_ntl.io import write_cog
    from geo_ntl.testing import make_scene

    source = write_cog(make_scene((3, 32, 32)), tmp_path / "scene_source.tif")
    vrt = tmp_path / "scene.vrt"
    rasterio.shutil.copy(source, vrt, driver="VRT")
    before = source.read_bytes()
    fast = ("--param", "iterations=1", "--tile", "32", "--device", "cpu", "--workers", "0")
    res = runner(
        command, vrt, "--out", source, "--overwrite", *(fast if command == "enhance" else ())
    )
    assert res.exit_code == 2, res.stderr
    assert res.stderr.startswith("error: output") and "scene_source.tif" in res.stderr
    assert source.read_bytes() == before
