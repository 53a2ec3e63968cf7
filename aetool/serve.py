"""`aetool serve`: a warm process that runs aetool commands for other `aetool` invocations, so that
a shell loop over files pays Python's and torch's start-up (seconds) once, not once per file.

The server imports torch and the commands once, keeps loaded models (a small cache keyed by the
weights file), and listens on a Unix domain socket that only its user can reach. Every `aetool`
invocation first looks for that socket (`run_via_server`, stdlib only: no typer, numpy or torch
is imported on that path); if a server answers, the command runs there, in the client's working
directory, environment and umask, with its standard output and error streamed back, and the
client exits with the command's exit code. The server runs the very same Typer app, so results
are those of an in-process run. It runs one command at a time (commands set process-wide state:
sys.stdout, signal handlers), and never stops on a bad request.

Runs in process instead (the server is only ever a shortcut): AETOOL_NO_SERVE=1; no socket, a
stale one, or one owned by another user; `serve` and `train` (long runs with their own signal
handling); commands that read standard input ('-' anywhere but after -o/--output); --ray;
shell completion; a server of another aetool installation or Python environment, or started
with other values of the variables read when torch is imported (OMP_NUM_THREADS, CUDA_*...).

Wire format: frames of a 1-byte kind, a 4-byte big-endian length and the payload. The client sends
one REQUEST (JSON) and then SIGNAL frames (the number, in ASCII) for Ctrl-C or SIGTERM; the server
answers DECLINE (run it yourself; nothing was run) or ACCEPTED, then STDOUT and STDERR bytes as
they are written, then EXIT (the code, in ASCII)."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import struct
import sys

PROTOCOL = 1
REQUEST, SIGNAL = b"R", b"S"
ACCEPTED, DECLINE, STDOUT, STDERR, EXIT = b"A", b"D", b"O", b"E", b"X"
_HEADER = struct.Struct("!cI")
MAX_REQUEST = 16 << 20  # a request is argv and environment: anything larger is not one
# Read when torch (or Python) starts, so a server started with other values would not give the
# client's results: such a client runs in process.
IMPORT_TIME_PREFIXES = ("PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "GOTO_", "DNNL_", "ONEDNN_", "CUDA_",
                        "CUBLAS_", "CUDNN_", "NVIDIA_", "PYTORCH_", "TORCH_", "HIP_", "ROCR_", "LD_", "MALLOC_")
NOT_SERVED = ("serve", "train")  # commands that always run in the invoking process


# ---------------------------------------------------------------------------------------------
# where the socket is, and who may use it

def default_socket_path() -> str:
    """AETOOL_SOCKET, else $XDG_RUNTIME_DIR/aetool.sock (a per-user 0700 directory), else
    /tmp/aetool-UID/serve.sock (a directory the server makes 0700)."""
    path = os.environ.get("AETOOL_SOCKET")
    if path:
        return path
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "aetool.sock")
    return os.path.join("/tmp", f"aetool-{os.getuid()}", "serve.sock")


def _owned_socket(path: str) -> bool:
    """A socket file of this user's that nobody else can open."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end (Linux SO_PEERCRED); None where not available."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _same_user(sock: socket.socket) -> bool:
    uid = _peer_uid(sock)
    return uid is None or uid == os.getuid()


# ---------------------------------------------------------------------------------------------
# frames

def send_frame(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    sock.sendall(_HEADER.pack(kind, len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, limit: int = MAX_REQUEST) -> tuple[bytes, bytes] | None:
    """(kind, payload), or None at the end of the stream (or a frame larger than `limit`)."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    kind, size = _HEADER.unpack(header)
    if size > limit:
        return None
    payload = _recv_exact(sock, size) if size else b""
    return None if payload is None else (kind, payload)


# ---------------------------------------------------------------------------------------------
# the client: every `aetool` invocation

def wants_server(argv: list[str], environ=os.environ) -> bool:
    """Whether this command line may run in a server (see the module's docstring for what may not)."""
    if environ.get("AETOOL_NO_SERVE", "") not in ("", "0") or not hasattr(socket, "AF_UNIX"):
        return False
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in environ):  # shell completion
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in NOT_SERVED:
        return False
    for i, arg in enumerate(argv):
        if arg in ("--install-completion", "--show-completion") or arg.startswith("--ray"):
            return False
        if arg == "-" and (i == 0 or argv[i - 1] not in ("-o", "--output")):  # reads standard input
            return False
    return True


def _program_name() -> str:
    """What click calls the program in usage lines ("aetool", "python -m aetool"): its own rule
    (click.utils._detect_program_name), here so that the client need not import click."""
    path = sys.argv[0]
    package = getattr(sys.modules.get("__main__"), "__package__", None)
    if not package:
        return os.path.basename(path)
    name = os.path.splitext(os.path.basename(path))[0]
    return f"python -m {(package if name == '__main__' else f'{package}.{name}').lstrip('.')}"


def _terminal_sizes() -> list:
    sizes = []
    for fd in (0, 1, 2):
        try:
            sizes.append(list(os.get_terminal_size(fd)))
        except (OSError, ValueError):
            sizes.append(None)
    return sizes


def _request(argv: list[str]) -> dict:
    from . import __file__ as package_file, __version__

    umask = os.umask(0o022)
    os.umask(umask)
    return {"protocol": PROTOCOL, "version": __version__, "package": os.path.dirname(os.path.realpath(package_file)),
            "prefix": sys.prefix, "argv": argv, "prog": _program_name(), "argv0": sys.argv[0], "cwd": os.getcwd(),
            "env": dict(os.environ), "umask": umask, "tty": [os.isatty(fd) for fd in (0, 1, 2)],
            "sizes": _terminal_sizes(),
            "encodings": [[s.encoding, s.errors] for s in (sys.stdout, sys.stderr)]}


def run_via_server(argv: list[str], path: str | None = None) -> int | None:
    """Run `aetool ARGV` in a server if one answers on the socket: its output is written here and
    its exit code returned. None: no server took it (nothing was run); run it in process."""
    if not wants_server(argv) or sys.stdout is None or sys.stderr is None:
        return None
    path = path or default_socket_path()
    if not _owned_socket(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(2.0)
            sock.connect(path)
            if not _same_user(sock):
                return None
            sock.settimeout(None)  # a server busy with another command answers when it is done
            send_frame(sock, REQUEST, json.dumps(_request(argv)).encode())
            frame = recv_frame(sock, limit=1 << 16)
        except (OSError, ValueError):  # no server (a stale socket), or it went away before starting
            return None
        except KeyboardInterrupt:  # while the server was busy with another call: nothing was run
            sys.stderr.write("aetool: interrupted\n")
            return 130
        if frame is None or frame[0] != ACCEPTED:  # declined: nothing was run
            return None
        return _relay(sock)
    finally:
        sock.close()


def _relay(sock: socket.socket) -> int:
    """Write the command's output as it comes and return its exit code. Ctrl-C and SIGTERM are
    passed on to the command (the third one stops waiting for it)."""
    signals_sent = []

    def forward(signum, frame):
        signals_sent.append(signum)
        if len(signals_sent) >= 3:
            raise SystemExit(128 + signum)
        try:
            send_frame(sock, SIGNAL, str(signum).encode())
        except OSError:
            raise SystemExit(128 + signum) from None

    # (a signal this process ignores, as a background job's SIGINT, stays ignored)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        while True:
            try:
                frame = recv_frame(sock, limit=1 << 30)
            except OSError:
                frame = None
            if frame is None:
                sys.stderr.write("aetool: error: the aetool server stopped before the command finished "
                                 "(set AETOOL_NO_SERVE=1 to run without it)\n")
                sys.stderr.flush()
                return 1
            kind, payload = frame
            if kind == EXIT:
                return int(payload)
            if kind in (STDOUT, STDERR):
                _write(sys.stdout if kind == STDOUT else sys.stderr, payload)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _write(stream, payload: bytes) -> None:
    try:
        stream.flush()
        binary = getattr(stream, "buffer", None)
        if binary is None:
            stream.write(payload.decode(stream.encoding or "utf-8", "replace"))
        else:
            binary.write(payload)
            binary.flush()
    except BrokenPipeError:  # `| head`: the reader left; the command still finishes
        pass


# ---------------------------------------------------------------------------------------------
# the server

class ModelCache:
    """registry.load_model with the loaded models kept (at most `size`), keyed by the weights
    file (path, size, modification time) and device. Each call returns its own copy, so that
    what a command does to its model (Runner.prepare, casts) never reaches the next command."""

    def __init__(self, load, size: int = 8):
        self.load, self.size = load, size
        self.models: dict[tuple, object] = {}

    def __call__(self, name_or_path, device: str = "cpu"):
        import copy

        from .registry import Card, find_card

        card = name_or_path if isinstance(name_or_path, Card) else find_card(name_or_path)
        try:
            st = os.stat(card.path)
        except (OSError, TypeError):
            return self.load(card, device)  # missing: load_model says so
        key = (os.path.realpath(card.path), st.st_size, st.st_mtime_ns, card.sha256, str(device))
        model = self.models.pop(key, None)
        if model is None:
            model = self.load(card, device)
            while len(self.models) >= self.size:
                self.models.pop(next(iter(self.models)))
        self.models[key] = model  # most recently used last
        copied = copy.deepcopy(model)
        copied.card, copied.meta = card, model.meta
        return copied


def install_model_cache(size: int = 8) -> ModelCache:
    """Route every `load_model` of aetool (registry's, and the name each task module imported) to
    one ModelCache. Modules imported later import the cached one from the registry."""
    from . import registry

    original = registry.load_model
    if isinstance(original, ModelCache):
        return original
    cache = ModelCache(original, size)
    registry.load_model = cache
    for name, module in list(sys.modules.items()):
        if name.startswith("aetool.") and getattr(module, "load_model", None) is original:
            module.load_model = cache
    return cache


WARM_MODULES = ("torch", "aetool.cli.app", "aetool.engine", "aetool.imageio", "aetool.batch", "aetool.noise",
                "aetool.tasks.denoise", "aetool.tasks.upscale", "aetool.tasks.inpaint", "aetool.tasks.compress",
                "aetool.tasks.anomaly")


class _ClientStream(io.RawIOBase):
    """The bytes of a command's sys.stdout or sys.stderr, sent to the client as frames; isatty()
    is the client's, so that the command decides (progress bar, colours) as it would there."""

    def __init__(self, link, kind: bytes, tty: bool):
        super().__init__()
        self.link, self.kind, self.tty = link, kind, tty

    def writable(self):
        return True

    def isatty(self):
        return self.tty

    def write(self, data):
        self.link.send(self.kind, bytes(data))
        return len(data)


def _client_text_stream(link, kind: bytes, tty: bool, encoding: str, errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(_ClientStream(link, kind, tty), 1 << 16), encoding=encoding,
                            errors=errors, line_buffering=True)


class _Link:
    """The connection to the client during a command. Output frames go out through a queue and a
    sender thread, so that a KeyboardInterrupt raised in the main thread never cuts a frame in two;
    a reader thread takes the client's signals and raises them in the main thread as if they had
    arrived there (the client gone counts as Ctrl-C, so that an abandoned command stops)."""

    def __init__(self, conn: socket.socket, server: "Server"):
        import queue
        import threading

        self.conn, self.server = conn, server
        self.lock = threading.Lock()
        self.active, self.forwarded, self.alive = True, False, True
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.sender = threading.Thread(target=self._send_loop, name="aetool-serve-output", daemon=True)
        self.reader = threading.Thread(target=self._read, name="aetool-serve-signals", daemon=True)
        self.sender.start()
        self.reader.start()

    def send(self, kind: bytes, payload: bytes) -> None:
        self.outbox.put((kind, payload))

    def _send_loop(self) -> None:
        while True:
            item = self.outbox.get()
            if item is None:
                return
            if self.alive:
                try:
                    send_frame(self.conn, *item)
                except OSError:
                    self.alive = False

    def finish(self, code: int) -> None:
        """The exit code after every output frame; returns once they are sent (or the client is gone)."""
        self.outbox.put((EXIT, str(code).encode()))
        self.outbox.put(None)
        self.sender.join()

    def _read(self) -> None:
        while True:
            try:
                frame = recv_frame(self.conn, limit=64)
            except OSError:
                frame = None
            if frame is None:
                self.alive = False
                self._interrupt(signal.SIGINT)
                return
            if frame[0] == SIGNAL and frame[1].strip().isdigit():
                self._interrupt(int(frame[1]))

    def _interrupt(self, signum: int) -> None:
        import _thread

        with self.lock:
            if not self.active:
                return
            if signum != signal.SIGTERM or signal.getsignal(signal.SIGTERM) == self.server.on_sigterm:
                signum = signal.SIGINT  # no command handler for SIGTERM: stop it as Ctrl-C does
            self.forwarded = True
            _thread.interrupt_main(signum)

    def close(self) -> None:
        """No more signals to the main thread; one forwarded but not yet raised is taken here."""
        import time

        with self.lock:
            self.active = False
        if self.forwarded:
            try:
                end = time.monotonic() + 0.05  # the main thread runs a pending handler at the next bytecode
                while time.monotonic() < end:
                    pass
            except KeyboardInterrupt:
                pass


class Server:
    """One socket, one command at a time, in this process's main thread."""

    def __init__(self, path: str, idle_minutes: float = 0.0, log=None):
        self.path, self.idle = path, idle_minutes * 60
        self.log = log or (lambda line: None)
        self.forwarded_pending = False
        self.stopping = False
        self.listener: socket.socket | None = None
        self.frozen_env = {k: v for k, v in os.environ.items() if k.startswith(IMPORT_TIME_PREFIXES)}
        from . import __file__ as package_file, __version__

        self.identity = (PROTOCOL, __version__, os.path.dirname(os.path.realpath(package_file)), sys.prefix)

    # -- lifetime

    def check_free(self) -> None:
        """A UsageError if the socket cannot be made: a live server there already, not a socket,
        a path too long, no Unix sockets (a stale socket file is replaced by bind())."""
        import stat

        from .errors import UsageError

        if not hasattr(socket, "AF_UNIX"):
            raise UsageError("aetool serve needs Unix domain sockets, which this platform lacks")
        if len(os.fsencode(self.path)) > 100:
            raise UsageError(f"socket path too long for a Unix socket (over 100 bytes): {self.path}")
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise UsageError(f"{self.path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(1.0)
                probe.connect(self.path)
            except OSError:
                return  # stale: its server is gone
            finally:
                probe.close()
            raise UsageError(f"an aetool server is already running on {self.path}")

    def bind(self) -> None:
        """Make the socket: 0600, in a 0700 directory for the default under /tmp; a stale socket
        file is replaced."""
        from .errors import UsageError

        self.check_free()
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.stat(folder)
        if folder.startswith("/tmp/aetool-") and (st.st_uid != os.getuid() or st.st_mode & 0o077):
            raise UsageError(f"{folder} must be a directory of yours that only you can open (chmod 700)")
        if os.path.lexists(self.path):
            os.unlink(self.path)  # stale (check_free found no server there)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no moment where another user could connect
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        listener.listen(64)
        self.listener, self.inode = listener, os.stat(self.path).st_ino

    def warm(self) -> None:
        import importlib

        for name in WARM_MODULES:
            importlib.import_module(name)
        install_model_cache()
        import typer.main

        from .cli import app

        self.command = typer.main.get_command(app)
        self.warm_models()

    def warm_models(self) -> None:
        """Load the default colour denoiser and x2 upscaler into the model cache and run each once
        on a small image, so that the first call does not wait for the weights or for the first
        convolutions' set-up either. Nothing is kept from it but the cache (each command gets its
        own copy of a model); a failure here only means a slower first call."""
        try:
            import numpy as np

            from .engine import EngineOptions
            from .tasks.denoise import Denoiser
            from .tasks.upscale import Upscaler

            pixels = np.full((64, 64, 3), 0.5, dtype=np.float32)
            Denoiser(None, EngineOptions())(pixels, sigma=15.0)
            Upscaler(None, EngineOptions()).enlarge(pixels, 2)
        except Exception as exc:  # noqa: BLE001
            self.log(f"aetool serve: warm-up skipped: {type(exc).__name__}: {exc}")

    def on_sigterm(self, signum, frame):
        """The server's SIGTERM stops it as Ctrl-C does; a client's that arrives after its command
        finished (forwarded_pending) is then dropped by serve_forever."""
        raise KeyboardInterrupt

    def serve_forever(self) -> None:
        # Python handlers for both, even where SIGINT was ignored (a background job): a client's
        # Ctrl-C is raised in this process through them (_thread.interrupt_main).
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self.on_sigterm),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
        try:
            self.listener.settimeout(self.idle or None)
            while not self.stopping:
                try:
                    conn, _ = self.listener.accept()
                except socket.timeout:
                    self.log(f"aetool serve: idle for {self.idle / 60:g} min, stopping")
                    return
                try:
                    self.handle(conn)
                except KeyboardInterrupt:
                    if not self.forwarded_pending:
                        raise
                except Exception as exc:  # noqa: BLE001 - a bad request never stops the server
                    self.log(f"aetool serve: bad request: {type(exc).__name__}: {exc}")
                finally:
                    self.forwarded_pending = False
                    conn.close()
        except KeyboardInterrupt:
            self.log("aetool serve: stopped")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.close()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                if os.stat(self.path).st_ino == self.inode:  # still ours, not a newer server's
                    os.unlink(self.path)
            except OSError:
                pass

    # -- one request

    def _decline_reason(self, req: dict) -> str | None:
        if (req["protocol"], req["version"], req["package"], req["prefix"]) != self.identity:
            return "another aetool installation or Python environment"
        frozen = {k: v for k, v in req["env"].items() if k.startswith(IMPORT_TIME_PREFIXES)}
        differ = sorted(k for k in set(frozen) | set(self.frozen_env) if frozen.get(k) != self.frozen_env.get(k))
        if differ:
            return "started with other values of " + ", ".join(differ)
        if not wants_server(req["argv"], req["env"]):
            return "runs in process"
        if not os.path.isdir(req["cwd"]):
            return "working directory not found"
        return None

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10.0)  # a client that connects and says nothing does not hold the server
        if not _same_user(conn):
            return
        frame = recv_frame(conn)
        if frame is None or frame[0] != REQUEST:
            return
        try:
            req = _parse_request(json.loads(frame[1]))
        except (ValueError, TypeError, KeyError, IndexError):
            send_frame(conn, DECLINE, b"not a request")
            raise ValueError("not a request") from None
        reason = self._decline_reason(req)
        if reason:
            self.log(f"aetool serve: declined ({reason})")
            send_frame(conn, DECLINE, reason.encode())
            return
        conn.settimeout(None)  # (blocking mode: _closed's MSG_DONTWAIT peek then returns at once)
        if _closed(conn):  # the caller gave up while the server was busy: run nothing
            self.log("aetool serve: caller gone before its command started")
            return
        send_frame(conn, ACCEPTED)
        self.run_command(conn, req)

    def run_command(self, conn: socket.socket, req: dict) -> int:
        import io
        import time
        import warnings

        tty, sizes = req["tty"], req["sizes"]
        link = _Link(conn, self)
        out = _client_text_stream(link, STDOUT, tty[1], *req["encodings"][0])
        err = _client_text_stream(link, STDERR, tty[2], *req["encodings"][1])
        saved = (os.getcwd(), dict(os.environ), os.umask(req["umask"]), sys.argv, sys.stdin, sys.stdout, sys.stderr,
                 os.get_terminal_size)

        def terminal_size(fd=1):  # the client's terminals (click's and rich's widths), not the server's
            size = sizes[fd] if isinstance(fd, int) and 0 <= fd < 3 else None
            if not size:
                raise OSError("not a terminal")
            return os.terminal_size(size)

        code = 1
        started = time.perf_counter()
        try:
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            os.get_terminal_size = terminal_size
            sys.argv = [req["argv0"]] + req["argv"]
            sys.stdin = io.TextIOWrapper(io.BytesIO(b""))  # commands that read it run in process
            sys.stdout, sys.stderr = out, err
            with warnings.catch_warnings():  # a warning shown once per process is shown once per command
                code = self._call(req["argv"], req["prog"])
        except KeyboardInterrupt:
            code = 130
        finally:
            self.forwarded_pending = link.forwarded
            link.close()
            for stream in (out, err):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            cwd, environ, umask, sys.argv, sys.stdin, sys.stdout, sys.stderr, os.get_terminal_size = saved
            os.environ.clear()
            os.environ.update(environ)
            os.umask(umask)
            os.chdir(cwd)
        if code in (130, 143) and not link.forwarded:
            self.stopping = True  # the server's own Ctrl-C or SIGTERM: the command stopped, now the server
        # logged before the caller hears the exit code, so that the log is in order with the calls
        self.log(f"aetool serve: exit {code} in {time.perf_counter() - started:.3f} s: aetool {' '.join(req['argv'])}")
        link.finish(code)
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        link.reader.join(1.0)
        return code

    def _call(self, args: list[str], prog: str) -> int:
        """The command as `aetool` runs it (click's standalone mode: its messages and exit codes)."""
        import traceback

        try:
            self.command.main(args=args, prog_name=prog, standalone_mode=True)
            return 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                return exc.code or 0
            print(exc.code, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except Exception:  # noqa: BLE001 - a bug in a command: its traceback, exit 1, as in process
            traceback.print_exc()
            return 1


def _closed(conn: socket.socket) -> bool:
    """Whether the other end has closed the connection (without reading anything)."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _parse_request(req: dict) -> dict:
    """The request with every field checked and typed; ValueError/TypeError/KeyError if not one."""
    import codecs

    def strings(values) -> list[str]:
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise TypeError("not a list of strings")
        return values

    env = req["env"]
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise TypeError("env")
    sizes = [list(map(int, s[:2])) if s else None for s in req["sizes"]]
    encodings = [[codecs.lookup(e).name, str(x)] for e, x in req["encodings"]]
    tty = [bool(t) for t in req["tty"]]
    if len(sizes) != 3 or len(tty) != 3 or len(encodings) != 2:
        raise ValueError("sizes, tty, encodings")
    codecs.lookup_error(encodings[0][1]), codecs.lookup_error(encodings[1][1])
    return {"protocol": req["protocol"], "version": req["version"], "package": req["package"], "prefix": req["prefix"],
            "argv": strings(req["argv"]), "prog": str(req["prog"]), "argv0": str(req["argv0"]), "cwd": str(req["cwd"]),
            "env": env, "umask": int(req["umask"]) & 0o777, "tty": tty,
            "sizes": sizes, "encodings": encodings}


def serve(path: str | None = None, idle_minutes: float = 0.0, log=None, ready=None) -> None:
    """Run a server on `path` (default_socket_path()) until Ctrl-C, SIGTERM or `idle_minutes`
    without a request (0: no limit). `log(line)`: one line per event; `ready()`: called once
    the socket accepts requests."""
    server = Server(path or default_socket_path(), idle_minutes, log)
    server.check_free()  # before the seconds of warm()
    server.warm()
    server.bind()
    if ready is not None:
        ready(server)
    server.serve_forever()
