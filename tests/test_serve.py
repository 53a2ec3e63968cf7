"""`aetool serve`: a command run through the server gives what it gives in process (output bytes,
stdout, stderr, exit code); no server, a stale socket or a bad request never breaks a call; a
client's Ctrl-C or death stops its command, not the server."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from aetool.serve import wants_server
from conftest import structured_image

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix domain sockets")


@pytest.fixture(scope="module")
def server():
    """One server for the module, on a short socket path (Unix sockets take ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="aes-"))
    path = folder / "s.sock"
    log = folder / "serve.log"
    env = {**os.environ, "AETOOL_SOCKET": str(path)}
    env.pop("AETOOL_NO_SERVE", None)
    with open(log, "wb") as log_file:
        # Started outside the source tree, so that it imports the aetool the callers import (in CI the
        # installed one, not ./aetool): a server of another installation declines every call.
        proc = subprocess.Popen([sys.executable, "-m", "aetool", "serve", "-v"], env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, cwd=folder)
    deadline = time.monotonic() + 300  # torch's import on a loaded machine
    while not path.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    yield {"path": path, "log": log, "env": env, "proc": proc}
    proc.terminate()
    assert proc.wait(60) == 0, log.read_text()
    assert not path.exists()  # the server removes its socket
    shutil.rmtree(folder, ignore_errors=True)


def run(server, *args, served=True, cwd=None, **env):
    full = {**server["env"], **env}
    if not served:
        full["AETOOL_NO_SERVE"] = "1"
    # Never from the source tree (see the fixture): the caller must import the server's aetool.
    return subprocess.run([sys.executable, "-m", "aetool", *map(str, args)], env=full,
                          cwd=cwd or server["path"].parent, capture_output=True, timeout=300)


def log_lines(server) -> list[str]:
    return server["log"].read_text().splitlines()


def records(stdout: bytes) -> list[dict]:
    """The JSON lines, without the timings (they differ between any two runs)."""
    out = []
    for line in stdout.decode().splitlines():
        rec = json.loads(line)
        for r in (rec, rec.get("summary", {})):
            for k in ("seconds", "megapixels_per_second"):
                r.pop(k, None)
        out.append(rec)
    return out


@pytest.fixture
def small(tmp_path):
    Image.fromarray(structured_image(64, 64, seed=4)).save(tmp_path / "s.png")
    return tmp_path


def test_served_run_is_the_in_process_run(server, small, tiny_model):
    args = ["denoise", "s.png", "--sigma", "15", "--model", tiny_model, "--json"]
    before = len(log_lines(server))
    a = run(server, *args, "-o", "served.png", cwd=small)
    assert any("exit 0" in line and "served.png" in line for line in log_lines(server)[before:])  # it went there
    b = run(server, *args, "-o", "local.png", served=False, cwd=small)
    assert len(log_lines(server)) == before + 1  # and this one did not
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert (small / "served.png").read_bytes() == (small / "local.png").read_bytes()
    ra, rb = records(a.stdout), records(b.stdout)
    assert [r.pop("output", None) for r in ra] == ["served.png", None]
    assert [r.pop("output", None) for r in rb] == ["local.png", None]
    assert ra == rb and ra[0]["status"] == "ok"
    # binary standard output, blind (no --sigma), and the default model's name as the caller sees it
    c = run(server, "denoise", "s.png", "-o", "-", "--model", tiny_model, cwd=small)
    d = run(server, "denoise", "s.png", "-o", "-", "--model", tiny_model, served=False, cwd=small)
    assert c.returncode == d.returncode == 0 and c.stdout == d.stdout and c.stdout[:4] == b"\x89PNG"
    assert c.stderr.decode().split(" in ")[0] == d.stderr.decode().split(" in ")[0]  # summary up to the time


def test_failures_and_usage_errors_match(server, small, tiny_model):
    (small / "bad.png").write_bytes(b"\x89PNG not really")
    out = small / "out"
    cases = [
        (["denoise", "bad.png", "s.png", "-o", out, "--sigma", "15", "--model", tiny_model, "--json"], 1),
        (["denoise", "s.png", "-o", "x.png", "--sigma", "999"], 2),  # click's range check
        (["denoise", "s.png", "-o", "x.png", "--model", small / "none.safetensors"], 2),  # ours
        (["upscale", "nothing-here.png", "-o", out], 1),
    ]
    for args, code in cases:
        before = len(log_lines(server))
        a = run(server, *args, cwd=small)
        shutil.rmtree(out, ignore_errors=True)
        b = run(server, *args, served=False, cwd=small)
        assert len(log_lines(server)) == before + 1, args
        assert a.returncode == b.returncode == code, (args, a.stderr, b.stderr)
        assert records(a.stdout) == records(b.stdout)
        err_a, err_b = a.stderr.decode(), b.stderr.decode()
        if code == 1 and "--json" in args:  # the summary line ends with the time taken
            err_a, err_b = err_a.rsplit(" in ", 1)[0], err_b.rsplit(" in ", 1)[0]
        assert err_a == err_b, args
        shutil.rmtree(out, ignore_errors=True)


def test_client_path_imports_no_typer_numpy_or_torch(server, small):
    code = ("import sys; sys.argv = ['aetool', '--version']\nfrom aetool.cli import main\ntry:\n    main()\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "heavy = [m for m in ('typer', 'click', 'numpy', 'torch', 'PIL') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    p = subprocess.run([sys.executable, "-c", code], env=server["env"], capture_output=True, timeout=120,
                       cwd=server["path"].parent)
    assert p.returncode == 0, p.stderr
    from aetool import __version__

    assert p.stdout.decode().strip() == f"aetool {__version__}"
    assert stat.S_IMODE(os.stat(server["path"]).st_mode) == 0o600


def test_stale_socket_and_no_socket_run_in_process(tmp_path):
    from aetool import __version__

    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens: connect() is refused
    os.chmod(stale, 0o600)
    for path in (stale, tmp_path / "missing.sock", tmp_path):  # (a folder: not a socket)
        env = {**os.environ, "AETOOL_SOCKET": str(path)}
        env.pop("AETOOL_NO_SERVE", None)
        p = subprocess.run([sys.executable, "-m", "aetool", "--version"], env=env, capture_output=True, timeout=120)
        assert p.returncode == 0 and p.stdout.decode().strip() == f"aetool {__version__}", p.stderr


def test_bad_requests_and_other_environments_do_not_stop_the_server(server, small, tiny_model):
    for junk in (b"", b"R\x00\x00\x00\x05hello", b"Z\x00\x00\x00\x00", b"R\xff\xff\xff\xff" + b"x" * 100,
                 b"R\x00\x00\x00\x02[]", b'R\x00\x00\x00\x0b{"argv": 1}'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(server["path"]))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                reply = s.recv(100)
            except ConnectionResetError:
                reply = b""
            assert reply in (b"", b"D\x00\x00\x00\x0dnot a request")
    # another value of a variable torch reads at import: declined, run in process, same result
    before = len(log_lines(server))
    p = run(server, "denoise", "s.png", "-o", "t.png", "--sigma", "15", "--model", tiny_model, "-q", cwd=small,
            OMP_NUM_THREADS="1")
    assert p.returncode == 0, p.stderr
    assert any("declined (started with other values of OMP_NUM_THREADS)" in line for line in log_lines(server)[before:])
    p = run(server, "--version")
    assert p.returncode == 0 and server["proc"].poll() is None


def test_ctrl_c_or_death_of_a_client_stops_its_command_not_the_server(server, tmp_path, tiny_model):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(structured_image(96, 128, seed=i)).save(folder / f"{i:02d}.png")
    env = {**server["env"]}
    for how in ("SIGINT", "SIGKILL"):
        out = tmp_path / f"out-{how}"
        # SIGINT as a terminal gives it, even when the suite itself runs as a background job (where
        # the shell ignores SIGINT and children inherit that: the client then keeps ignoring it).
        client = subprocess.Popen([sys.executable, "-m", "aetool", "denoise", str(folder), "-o", str(out), "--sigma",
                                   "15", "--model", str(tiny_model), "--json", "--workers", "1"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=server["path"].parent,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        first = json.loads(client.stdout.readline())  # one file done: the command is in its batch
        assert first["status"] == "ok"
        client.send_signal(getattr(signal, how))
        rest, err = client.communicate(timeout=120)
        if how == "SIGINT":
            assert client.returncode == 130, err
            assert b"interrupted; finished outputs are complete" in err
            assert records(rest)[-1]["summary"]["interrupted"] is True
        else:
            assert client.returncode == -signal.SIGKILL
        deadline = time.monotonic() + 120
        while not any("exit 130" in line and str(out) in line for line in log_lines(server)):
            assert time.monotonic() < deadline, log_lines(server)[-3:]
            time.sleep(0.1)
        assert len(list(out.glob("*.png"))) < 40
        p = run(server, "--version")  # and the server takes the next call
        assert p.returncode == 0 and server["proc"].poll() is None


@pytest.mark.parametrize("argv, served", [
    (["denoise", "a.png", "-o", "b.png"], True),
    (["denoise", "a.png", "-o", "-"], True),
    (["denoise", "a.png", "--output", "-"], True),
    (["--help"], True),
    (["denoise", "-", "-o", "b.png"], False),  # standard input
    (["inpaint", "a.png", "--mask", "-", "-o", "b.png"], False),
    (["serve"], False),
    (["train", "denoise", "--data", "d"], False),
    (["denoise", "a", "-o", "b", "--ray", "auto"], False),
    (["--install-completion"], False),
])
def test_what_runs_in_a_server(argv, served):
    assert wants_server(argv, {}) is served
    assert wants_server(argv, {"AETOOL_NO_SERVE": "1"}) is False
    assert wants_server(argv, {"AETOOL_NO_SERVE": "0"}) is served
    assert wants_server(argv, {"_AETOOL_COMPLETE": "bash_complete"}) is False


def test_a_caller_that_gives_up_while_the_server_is_busy_runs_nothing(server, small, tiny_model):
    """A request whose caller closed before the server took it (Ctrl-C while queued) is dropped."""
    from aetool.serve import REQUEST, _request, send_frame

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as busy, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
        busy.connect(str(server["path"]))  # holds the server: it waits for this request (up to 10 s)
        gone.connect(str(server["path"]))
        old = os.getcwd()
        os.chdir(small)
        try:
            request = _request(["denoise", "s.png", "-o", "gone.png", "--sigma", "15", "--model", str(tiny_model)])
        finally:
            os.chdir(old)
        request["env"] = server["env"]
        send_frame(gone, REQUEST, json.dumps(request).encode())
    p = run(server, "--version")  # served after both
    assert p.returncode == 0
    assert not (small / "gone.png").exists()
    assert "caller gone before its command started" in server["log"].read_text()
