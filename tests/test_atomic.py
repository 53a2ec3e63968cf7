"""aetool.atomic: atomic writes, cleanup of temporaries left by killed runs, claims that let
concurrent runs split one output folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aetool import atomic
from aetool.atomic import Claimed, claim, clean_stale_temps, lock_path_for, node_id, temp_name_for, write_atomic
from aetool.discovery import is_hidden_or_system

HOUR = 3600.0
OTHER_NODE = "other-machine-0badf00d"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def age(path: Path, seconds: float) -> Path:
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def make(path: Path, data: bytes = b"x", older_by: float = 0.0) -> Path:
    path.write_bytes(data)
    return age(path, older_by) if older_by else path


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# --- write_atomic --------------------------------------------------------------------------------

def test_write_atomic_writes_with_umask_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "x.png"
    write_atomic(target, b"abc")
    write_atomic(target, b"defg", fsync=False)  # replaces
    assert target.read_bytes() == b"defg"
    assert names(target.parent) == {"x.png"}
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o644 & ~mask


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_write_atomic_removes_its_temp_on_failure(tmp_path, monkeypatch, exc):
    seen = []

    def broken_replace(src, dst):
        seen.append(Path(src).name)
        raise exc

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(type(exc)):
        write_atomic(tmp_path / "x.png", b"abc")
    assert seen and seen[0].startswith(".x.png.") and seen[0].endswith(".aetool-tmp")
    assert names(tmp_path) == set()


def test_temp_and_lock_names_carry_identity_fit_and_are_hidden(tmp_path):
    t = temp_name_for("a.b.png")
    assert t.startswith(".a.b.png.") and f".{node_id()}.{os.getpid()}." in t and t.endswith(".aetool-tmp")
    assert atomic._NEW_TEMP.fullmatch(t)["pid"] == str(os.getpid())
    long = "é" * 123 + ".png"  # 250 bytes: a legal name whose temp and claim names must be shortened
    assert len(os.fsencode(temp_name_for(long))) <= 255
    write_atomic(tmp_path / long, b"ok")
    assert names(tmp_path) == {long}
    a, b = lock_path_for(tmp_path / (long + "1")), lock_path_for(tmp_path / (long + "2"))
    assert a != b and len(os.fsencode(a.name)) <= 255 and len(os.fsencode(atomic._break_path(a).name)) <= 255
    assert lock_path_for(tmp_path / "x.png") == tmp_path / ".x.png.aetool-lock"
    for name in (t, lock_path_for(tmp_path / "x.png").name, atomic._break_path(a).name):
        assert is_hidden_or_system(name)


# --- clean_stale_temps ---------------------------------------------------------------------------

def test_clean_removes_only_stale_aetool_temps(tmp_path, dead_pid):
    me, node = os.getpid(), node_id()
    dead = make(tmp_path / f".a.png.{node}.{dead_pid}.0123abcd.aetool-tmp")
    live_old = make(tmp_path / f".b.png.{node}.{me}.0123abcd.aetool-tmp", older_by=2 * HOUR)
    other_young = make(tmp_path / f".c.png.{OTHER_NODE}.{dead_pid}.0123abcd.aetool-tmp", older_by=HOUR - 60)
    other_old = make(tmp_path / f".d.png.{OTHER_NODE}.{me}.0123abcd.aetool-tmp", older_by=HOUR + 60)
    legacy_young = make(tmp_path / ".e.png.k3_9zq1x.aetool-tmp")
    legacy_old = make(tmp_path / ".f.png.k3_9zq1x.aetool-tmp", older_by=2 * HOUR)
    untouchable = [
        make(tmp_path / ".foo.tmp", older_by=2 * HOUR),
        make(tmp_path / "photo.png", older_by=2 * HOUR),
        make(tmp_path / "g.aetool-tmp", older_by=2 * HOUR),  # not hidden: not ours
        make(tmp_path / ".h.png.aetool-tmpx", older_by=2 * HOUR),
        make(tmp_path / ".i.png.aetool-tmp", older_by=2 * HOUR),  # no random part: not our pattern
        make(tmp_path / ".notes", older_by=2 * HOUR),
    ]
    (tmp_path / f".j.png.{node}.{dead_pid}.0123abcd.aetool-tmp").symlink_to(tmp_path / "photo.png")
    sub = tmp_path / "sub"
    sub.mkdir()
    nested = make(sub / f".k.png.{node}.{dead_pid}.0123abcd.aetool-tmp")

    removed = clean_stale_temps(tmp_path)
    assert set(removed) == {dead, other_old, legacy_old}
    for p in [live_old, other_young, legacy_young, nested, *untouchable]:
        assert p.exists(), p
    assert os.path.islink(tmp_path / f".j.png.{node}.{dead_pid}.0123abcd.aetool-tmp")
    assert clean_stale_temps(tmp_path) == []
    assert clean_stale_temps(tmp_path / "missing") == []


def test_clean_safe_age_from_environment(tmp_path, monkeypatch):
    other = make(tmp_path / f".c.png.{OTHER_NODE}.1.0123abcd.aetool-tmp", older_by=120)
    assert clean_stale_temps(tmp_path) == []
    monkeypatch.setenv("AETOOL_STALE_SECONDS", "60")
    assert clean_stale_temps(tmp_path) == [other]


def lock_file(target: Path, pid: int, node: str = "", older_by: float = 0.0) -> Path:
    lock = lock_path_for(target)
    record = {"host": "somewhere", "node": node or node_id(), "pid": pid, "started": time.time() - older_by,
              "token": "0" * 16}
    return make(lock, json.dumps(record).encode(), older_by)


def test_clean_removes_stale_claims_only(tmp_path, dead_pid):
    dead = lock_file(tmp_path / "a.png", dead_pid)
    other_old = lock_file(tmp_path / "b.png", os.getpid(), OTHER_NODE, older_by=2 * HOUR)
    other_young = lock_file(tmp_path / "c.png", dead_pid, OTHER_NODE, older_by=60)
    broken_break = make(tmp_path / ".d.png.aetool-break", older_by=120)
    with claim(tmp_path / "mine.png") as mine:
        assert set(clean_stale_temps(tmp_path)) == {dead, other_old, broken_break}
        assert mine.lock.exists() and other_young.exists()


# --- claims --------------------------------------------------------------------------------------

def test_claim_is_exclusive_and_release_frees_it(tmp_path):
    target = tmp_path / "out" / "x.png"
    c = claim(target)
    assert c.lock == target.parent / ".x.png.aetool-lock" and c.lock.exists()
    with pytest.raises(Claimed) as info:
        claim(target)
    assert info.value.holder.pid == os.getpid() and info.value.target == target
    assert f"process {os.getpid()}" in str(info.value)
    c.release()
    c.release()  # idempotent
    assert not c.lock.exists()
    with claim(target) as again:
        assert again.lock.exists()
    assert not again.lock.exists()
    again.release()  # after the context: still fine


def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path, dead_pid):
    lock_file(tmp_path / "dead.png", dead_pid)
    lock_file(tmp_path / "old.png", 1, OTHER_NODE, older_by=2 * HOUR)
    lock_file(tmp_path / "busy.png", dead_pid, OTHER_NODE, older_by=60)
    make(lock_path_for(tmp_path / "empty-young.png"), b"")
    make(lock_path_for(tmp_path / "empty-old.png"), b"", older_by=120)
    for name in ("dead.png", "old.png", "empty-old.png"):
        with claim(tmp_path / name) as c:
            assert json.loads(c.lock.read_bytes())["pid"] == os.getpid()
    with pytest.raises(Claimed) as info:
        claim(tmp_path / "busy.png")
    assert info.value.holder.pid == dead_pid and info.value.holder.host == "somewhere"
    with pytest.raises(Claimed):
        claim(tmp_path / "empty-young.png")
    assert not list(tmp_path.glob("*.aetool-break"))


def test_release_leaves_a_claim_taken_over_by_another_run(tmp_path):
    c = claim(tmp_path / "x.png")
    lock_file(tmp_path / "x.png", 12345, OTHER_NODE)  # ours was judged stale and replaced
    c.release()
    assert json.loads(c.lock.read_bytes())["pid"] == 12345


def test_claim_heartbeat_touches_live_claims(tmp_path):
    with claim(tmp_path / "x.png") as c:
        age(c.lock, 2 * HOUR)
        c.touch()
        assert time.time() - c.lock.stat().st_mtime < 60


RACE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from aetool.atomic import Claimed, claim, write_atomic
    folder, go = Path(sys.argv[1]), float(sys.argv[2])
    while time.time() < go:
        time.sleep(0.001)
    for i in range(20):
        target = folder / f"img{i:02d}.png"
        try:
            c = claim(target)
        except Claimed:
            continue
        with c:
            if target.exists():  # finished by the other run before we claimed it
                continue
            time.sleep(0.002)  # "work"
            write_atomic(target, str(os.getpid()).encode(), fsync=False)
            print(target.name, flush=True)
""")


@pytest.mark.parametrize("left_by_a_killed_run", [False, True])
def test_two_processes_split_the_targets(tmp_path, dead_pid, left_by_a_killed_run):
    if left_by_a_killed_run:  # both runs find every target's claim stale and race to take it over
        for i in range(20):
            lock_file(tmp_path / f"img{i:02d}.png", dead_pid)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    go = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    done = [set(out.split()) for out, _ in outs]
    assert not done[0] & done[1]
    assert done[0] | done[1] == {f"img{i:02d}.png" for i in range(20)}
    for proc, files in zip(procs, done):
        assert all((tmp_path / f).read_text() == str(proc.pid) for f in files)
    assert names(tmp_path) == done[0] | done[1]  # no claim or temp left behind


def test_write_atomic_streams_from_a_writer_and_cleans_up_when_it_fails(tmp_path):
    target = tmp_path / "out.png"
    write_atomic(target, lambda f: (f.write(b"ab"), f.write(b"cd")))
    assert target.read_bytes() == b"abcd"

    def broken(f):
        f.write(b"half")
        raise ValueError("encoder failed")

    with pytest.raises(ValueError):
        write_atomic(target, broken)
    assert target.read_bytes() == b"abcd"  # the old file stands, and no temporary is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
