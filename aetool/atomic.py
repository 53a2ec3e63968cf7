"""Atomic output writes, cleanup of temporaries left by killed runs, and per-output claims so
that concurrent runs on one output folder (on one machine or several sharing it) split the work.

Standard library only; nothing here knows about images.

Files this module creates next to an output NAME (all hidden, so discovery never takes them as
inputs):

    .NAME.<node>.<pid>.<rand>.aetool-tmp   a write in progress (write_atomic), renamed onto NAME
    .NAME.aetool-lock                      a claim (claim): JSON {host, node, pid, started, token}
    .NAME.aetool-break                     held for milliseconds while a stale claim is taken over

<node> is the host name reduced to [A-Za-z0-9-] plus, on Linux, a hash of the process's PID
namespace (two containers that share a host name have different PID spaces; without this a
process in one could take a live writer in the other for dead). Only files whose <node> is ours
are judged by process liveness; any other is judged by age alone.

Staleness (clean_stale_temps, claim):
  * a temporary of ours (same node): stale when its process is gone, whatever its age; a
    temporary of another node, or of the old naming `.NAME.XXXXXXXX.aetool-tmp`: when older than
    stale_seconds();
  * a claim: stale when its process is gone (same node) or when its file has not been touched
    for stale_seconds() (any node; a live holder touches its claims every few minutes, see
    Claim.touch), or when it holds no readable JSON and is older than a short grace (its writer
    died between creating and filling it).

Shared folders: claims rely on O_CREAT|O_EXCL being atomic, which it is on local file systems
and on NFSv3 and later (not on NFSv2). Ages compare file times (set by the file server) with
this machine's clock, so machines sharing a folder should have clocks within a few minutes of
each other (the safe age is an hour), and the same AETOOL_STALE_SECONDS if it is set.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = [
    "TEMP_SUFFIX", "LOCK_SUFFIX", "BREAK_SUFFIX", "DEFAULT_STALE_SECONDS",
    "write_atomic", "clean_stale_temps", "claim", "Claim", "Claimed", "Holder",
    "lock_path_for", "temp_name_for", "stale_seconds", "node_id",
]

TEMP_SUFFIX = ".aetool-tmp"
LOCK_SUFFIX = ".aetool-lock"
BREAK_SUFFIX = ".aetool-break"

# A temporary lives for one encode-and-write (seconds, a minute on a slow share), and a live
# claim is touched every few minutes (heartbeat below). An hour is far beyond both, so a file
# that old is left by a killed run even when we cannot ask its machine whether the writer lives;
# and it is short enough that a folder is clean again soon after a crash. AETOOL_STALE_SECONDS
# overrides it (e.g. shorter for tests or a cluster with quick restarts).
DEFAULT_STALE_SECONDS = 3600.0
# A claim file is created empty and filled at once; one still empty or unparsable after this is
# left by a writer killed in between (an empty file says nothing about who holds it).
_EMPTY_LOCK_GRACE = 30.0
# A break file is held for one read and one unlink; older than this, its holder died.
_BREAK_STALE = 30.0
_HEARTBEAT_MAX = 300.0
_MAX_NAME_BYTES = 255  # file name limit of ext4, XFS, btrfs, APFS, NTFS (in UTF-16 units there)

_NEW_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<node>[A-Za-z0-9-]+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}"
                       + re.escape(TEMP_SUFFIX), re.DOTALL)
# tempfile.mkstemp names written by aetool before this module: `.NAME.` + 8 of [a-z0-9_]
_OLD_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX), re.DOTALL)
_LOCK = re.compile(r"\..+" + re.escape(LOCK_SUFFIX), re.DOTALL)
_BREAK = re.compile(r"\..+" + re.escape(BREAK_SUFFIX), re.DOTALL)


# ---------------------------------------------------------------------------------------------
# identity and staleness

def stale_seconds() -> float:
    """The safe age: DEFAULT_STALE_SECONDS, or AETOOL_STALE_SECONDS when set to a positive number."""
    raw = os.environ.get("AETOOL_STALE_SECONDS", "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_STALE_SECONDS
    return value if value > 0 else DEFAULT_STALE_SECONDS


@lru_cache(maxsize=1)
def _host() -> str:
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


@lru_cache(maxsize=1)
def node_id() -> str:
    """This machine (and PID namespace) as written into temporary names: [A-Za-z0-9-]+."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", _host())[:40].strip("-") or "host"
    try:
        ns = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except (OSError, AttributeError):
        return host
    return f"{host}-{zlib.crc32(ns.encode()):08x}"


def _pid_alive(pid: int) -> bool:
    """False only when this machine says so; anything uncertain counts as alive (keep the file)."""
    if pid <= 0 or sys.platform == "win32":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, owned by another user
        return True
    return True


def _fit(prefix: str, tail: str) -> str:
    """prefix + tail, shortening prefix (whole characters) so the name fits in _MAX_NAME_BYTES."""
    budget = _MAX_NAME_BYTES - len(os.fsencode(tail))
    while len(os.fsencode(prefix)) > budget:
        prefix = prefix[:-1]
    return prefix + tail


# ---------------------------------------------------------------------------------------------
# atomic writes

def temp_name_for(name: str) -> str:
    """A fresh temporary name for output `name`: `.NAME.<node>.<pid>.<rand>.aetool-tmp`."""
    tail = f".{node_id()}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    return _fit("." + name, tail)


def write_atomic(path: str | Path, data: bytes | Callable[[BinaryIO], None], *, fsync: bool = True) -> None:
    """Write `data` to `path` through a temporary in the same folder, renamed into place: no
    reader ever sees half a file, and on any error (or interrupt) the temporary is removed.
    `data` may be a function that writes to the (seekable) temporary file: an encoder that
    streams, so that a large output is never held as bytes in memory. The file gets mode 0644
    minus the umask. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(10):
        tmp = path.parent / temp_name_for(path.name)
        try:
            # mode 0o644 here: the kernel applies the umask (no os.umask dance, which would
            # briefly change the umask of the whole process under the other writer threads)
            fd = os.open(tmp, flags, 0o644)
            break
        except FileExistsError:  # a random-name collision: draw again
            continue
    else:
        raise FileExistsError(f"cannot create a temporary file next to {path}")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if fsync:
                # fsync the data before the rename. Without it, a power loss or kernel crash soon
                # after the rename can leave NAME present but empty on ext4/XFS (the rename is
                # journaled before the data is written), and a re-run skips existing outputs, so
                # the damage would go unnoticed. It costs a few ms per file on local disks,
                # hidden behind the model in the writer threads. The folder is not fsynced: if
                # the rename itself is lost, NAME is simply missing and the next run redoes it.
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------
# cleanup

def clean_stale_temps(folder: str | Path, *, stale_after: float | None = None) -> list[Path]:
    """Remove stale aetool temporaries, claims and break files directly in `folder` (not in
    subfolders) and return their paths. Never touches any other file, a symlink, or a temporary
    whose writer is alive on this machine. Errors (missing folder, permissions, a file removed
    by another run meanwhile) are ignored: the file is just not listed."""
    folder = Path(folder)
    limit = stale_seconds() if stale_after is None else stale_after
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith("."):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            path = folder / name
            if name.endswith(LOCK_SUFFIX) and _LOCK.fullmatch(name):
                if _break_if_stale(path, limit):
                    removed.append(path)
                continue
            if name.endswith(BREAK_SUFFIX) and _BREAK.fullmatch(name):
                stale = _age(entry.stat(follow_symlinks=False).st_mtime) > _BREAK_STALE
            elif name.endswith(TEMP_SUFFIX):
                stale = _temp_is_stale(name, entry.stat(follow_symlinks=False).st_mtime, limit)
            else:
                continue
            if stale:
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue
    return removed


def _age(mtime: float) -> float:
    return time.time() - mtime


def _temp_is_stale(name: str, mtime: float, limit: float) -> bool:
    m = _NEW_TEMP.fullmatch(name)
    if m is not None:
        if m["node"] == node_id():
            return not _pid_alive(int(m["pid"]))
        return _age(mtime) > limit
    if _OLD_TEMP.fullmatch(name):
        return _age(mtime) > limit
    return False


# ---------------------------------------------------------------------------------------------
# claims

def lock_path_for(target: str | Path) -> Path:
    """The claim file of `target`: `.NAME.aetool-lock` next to it. A name too long for that is
    shortened and tagged with a hash of the full name, so two long names never share a claim."""
    target = Path(target)
    return target.parent / (_lock_base(target.name) + LOCK_SUFFIX)


def _lock_base(name: str) -> str:
    base = "." + name
    room = _MAX_NAME_BYTES - max(len(LOCK_SUFFIX), len(BREAK_SUFFIX))
    if len(os.fsencode(base)) <= room:
        return base
    tag = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:16]
    return _fit(base, tag + BREAK_SUFFIX)[: -len(BREAK_SUFFIX)]


def _break_path(lock: Path) -> Path:
    return lock.with_name(lock.name[: -len(LOCK_SUFFIX)] + BREAK_SUFFIX)


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, as far as its file says (fields are None when it does not say)."""
    lock: Path
    host: str | None = None
    pid: int | None = None
    started: float | None = None  # time.time() when claimed

    def __str__(self) -> str:
        if self.pid is None:
            return "another aetool run"
        who = f"process {self.pid}" + (f" on {self.host}" if self.host else "")
        if self.started is not None:
            who += time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return who


class Claimed(Exception):
    """The target is claimed by a live run (or one not yet known to be dead): skip it."""

    def __init__(self, target: Path, holder: Holder):
        self.target = target
        self.holder = holder
        super().__init__(f"being written by {holder} (claim {holder.lock.name})")


@dataclass
class _LockInfo:
    holder: Holder
    node: str | None
    token: str | None
    mtime: float
    valid: bool  # the file held our JSON
    readable: bool


def _read_lock(lock: Path) -> _LockInfo | None:
    """What the claim file says, or None when there is no such file (released meanwhile)."""
    try:
        st = os.stat(lock)
    except FileNotFoundError:
        return None
    except OSError:
        return _LockInfo(Holder(lock), None, None, time.time(), valid=False, readable=False)
    try:
        with open(lock, "rb") as f:
            raw = f.read(4096)
    except FileNotFoundError:
        return None
    except OSError:  # e.g. another user's claim with a strict umask: judge by age only
        return _LockInfo(Holder(lock), None, None, st.st_mtime, valid=False, readable=False)
    try:
        d = json.loads(raw.decode())
        pid = int(d["pid"])
        host = str(d.get("host") or "") or None
        node = str(d.get("node") or "") or None
        started = float(d["started"]) if d.get("started") is not None else None
        token = str(d.get("token") or "") or None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return _LockInfo(Holder(lock), None, None, st.st_mtime, valid=False, readable=True)
    return _LockInfo(Holder(lock, host, pid, started), node, token, st.st_mtime, valid=True, readable=True)


def _lock_is_stale(info: _LockInfo, limit: float) -> bool:
    age = _age(info.mtime)
    if age > limit:
        return True  # untouched for the safe age: its holder (any machine) stopped heartbeating
    if not info.valid:
        return info.readable and age > _EMPTY_LOCK_GRACE
    if info.node == node_id() and info.holder.pid is not None:
        return not _pid_alive(info.holder.pid)
    return False


def _break_if_stale(lock: Path, limit: float) -> bool:
    """Remove `lock` if it is stale; True if this call removed it.

    Race-free between runs: judging "stale" and removing are two steps, so two runs that both
    judged the same stale claim could otherwise remove it twice, the second time removing the
    fresh claim the first had made meanwhile. Breakers therefore first take `.NAME.aetool-break`
    (O_EXCL; the loser backs off) and judge again while holding it; a fresh claim is never
    stale, so it is never removed. A normal claim needs no break file: it only creates the claim
    file when there is none (O_EXCL)."""
    brk = _break_path(lock)
    try:
        os.close(os.open(brk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        try:  # a breaker that died holding it (it holds it for milliseconds)
            if _age(os.stat(brk).st_mtime) > _BREAK_STALE:
                os.unlink(brk)
        except OSError:
            pass
        return False
    except OSError:
        return False
    try:
        info = _read_lock(lock)
        if info is None or not _lock_is_stale(info, limit):
            return False
        try:
            os.unlink(lock)
        except OSError:
            return False
        return True
    finally:
        try:
            os.unlink(brk)
        except OSError:
            pass


class Claim:
    """A held claim on one output. Release it when the output is written or has failed
    (`with claim(target): ...` does). Live claims are touched every few minutes by a daemon
    thread so that other machines never judge them stale by age; released at interpreter exit."""

    def __init__(self, target: Path, lock: Path, token: str):
        self.target = target
        self.lock = lock
        self.token = token
        self.released = False

    def touch(self) -> None:
        """Refresh the claim's age (done by the heartbeat; harmless to call)."""
        try:
            os.utime(self.lock)
        except OSError:
            pass

    def release(self) -> None:
        """Remove the claim file if it is still ours. Idempotent; never raises for a missing file."""
        if self.released:
            return
        self.released = True
        _forget(self)
        info = _read_lock(self.lock)
        # Only our own claim: if ours was taken over (we were stopped past the safe age), the
        # file now belongs to another run and must stay.
        if info is not None and info.valid and info.token == self.token:
            try:
                os.unlink(self.lock)
            except OSError:
                pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim({str(self.target)!r}{', released' if self.released else ''})"


def claim(target: str | Path, *, stale_after: float | None = None) -> Claim:
    """Claim `target` for this process: create `.NAME.aetool-lock` next to it with O_EXCL.
    A stale claim (see the module doc) is taken over. Raises Claimed (with .holder) when a live
    run holds it, OSError when the claim file cannot be created (e.g. read-only folder).

    A claim says "being written", not "done": after claiming, a caller that skips existing
    outputs must check again that the target does not exist (another run may have finished it
    and released its claim between our planning and our claim)."""
    target = Path(target)
    lock = lock_path_for(target)
    limit = stale_seconds() if stale_after is None else stale_after
    target.parent.mkdir(parents=True, exist_ok=True)
    info: _LockInfo | None = None
    for attempt in range(6):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        except FileExistsError:
            info = _read_lock(lock)
            if info is None:
                continue  # released in between: try again
            if not _lock_is_stale(info, limit):
                raise Claimed(target, info.holder) from None
            if not _break_if_stale(lock, limit):
                time.sleep(0.005 * (attempt + 1))  # another run is breaking it: let it finish
            continue
        token = secrets.token_hex(8)
        record = {"host": _host(), "node": node_id(), "pid": os.getpid(), "started": time.time(),
                  "token": token}
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(record).encode())
        except BaseException:
            try:
                os.unlink(lock)
            except OSError:
                pass
            raise
        c = Claim(target, lock, token)
        _remember(c)
        return c
    raise Claimed(target, info.holder if info is not None else Holder(lock))


# ---------------------------------------------------------------------------------------------
# heartbeat: keeps this process's live claims young, so that only dead holders' claims age

_live: set[Claim] = set()
_live_lock = threading.Lock()
_heartbeat: threading.Thread | None = None


def _remember(c: Claim) -> None:
    global _heartbeat
    with _live_lock:
        _live.add(c)
        if _heartbeat is None:
            _heartbeat = threading.Thread(target=_beat, name="aetool-claims", daemon=True)
            _heartbeat.start()


def _forget(c: Claim) -> None:
    with _live_lock:
        _live.discard(c)


def _beat() -> None:
    while True:
        time.sleep(max(1.0, min(_HEARTBEAT_MAX, stale_seconds() / 4)))
        with _live_lock:
            claims = list(_live)
        for c in claims:
            c.touch()


def _release_all() -> None:
    with _live_lock:
        claims = list(_live)
    for c in claims:
        c.release()


def _after_fork_in_child() -> None:
    global _heartbeat, _live_lock
    _live_lock = threading.Lock()  # another thread may have held it at the fork
    _live.clear()  # the parent's claims are the parent's to release
    _heartbeat = None  # threads do not survive fork


atexit.register(_release_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
