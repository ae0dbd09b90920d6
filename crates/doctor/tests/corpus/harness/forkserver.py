"""Starting a case's Python processes from a pre-forking server: the heavy imports once per suite.

Recording the corpus is mostly Python importing the same libraries again: every case starts its
services as processes of their own (each installs its own instrumentation, which patches modules
for the whole process), and each process spent 1-4 s of CPU importing openai, pydantic, celery,
mcp, ... before it ran a line of the case. Started from a server per suite, the whole recording
(scripts/corpus.sh, venvs installed) took 318 CPU-s instead of 520, and 397 s instead of 595
(2-vCPU VM, measured with a cpuacct cgroup around the script, December 2026). A suite's driver starts one `ForkServer` that imports the libraries its processes
share, then starts each process with `server.Popen(...)` instead of `subprocess.Popen(...)`: the
server forks, and the child runs the program as `python SCRIPT ARGS` (or `python -m MODULE ARGS`)
would, in the environment, directory and file descriptors the driver gave it. This is how
pre-forking servers run (gunicorn --preload), and the http suite's services have been started this
way from the start.

What is preloaded is imported in the server's environment, once. OpenTelemetry reads its own
(OTEL_PROPAGATORS, OTEL_SEMCONV_STABILITY_OPT_IN, ...) when its packages are first imported: when
the preload imports it, every process must be started with the OTEL_* variables the server had
(a process asked for with others is refused, not started wrong), and a suite whose processes set
OTEL_* themselves before importing it (the inprocess suite) leaves OpenTelemetry out of its
preload. Nothing else the preload does runs again: threads do not survive the fork, so a library
that starts one when imported (none of the suites' does) would not be preloaded. Each process still
sets up its own TracerProvider, instrumentation and exporters after the fork, as gunicorn's
documented post-fork hook does.

    server = ForkServer(["openai", "pydantic"], env=env, cwd=HERE)
    proc = server.Popen([sys.executable, "service.py", "--fd", str(fd)], stdout=log, stderr=log,
                        env=env, cwd=HERE, pass_fds=[fd])
    proc.send_signal(signal.SIGINT); proc.wait(timeout=15)
    server.close()

`Popen` takes the arguments of `subprocess.Popen` the suites use (stdin, stdout, stderr: a file,
DEVNULL, PIPE, STDOUT or None; env, cwd, pass_fds, start_new_session) and its handle answers as
`subprocess.Popen`'s does (pid, args, returncode, poll, wait, send_signal, terminate, kill).
Run as a script, this file is the server itself.
"""

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_FDS = 16


class ForkServer:
    def __init__(self, preload, env=None, cwd=None):
        self.env = dict(os.environ if env is None else env)
        self.dir = tempfile.mkdtemp(prefix="corpus-forkserver-")
        self.path = os.path.join(self.dir, "sock")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "forkserver.py"), self.path, *preload],
                                     env=self.env, cwd=cwd, stdout=subprocess.PIPE, text=True)
        r, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if r else ""
        if not line.startswith("ready"):
            self.proc.kill()
            raise RuntimeError(f"the fork server did not start (exit code {self.proc.poll()}): {line!r}")
        # The OTEL_* environment every process must have, when the preload imported OpenTelemetry.
        self.otel_env = otel_env(self.env) if line.split()[1:] == ["opentelemetry"] else None

    def Popen(self, args, stdin=None, stdout=None, stderr=None, env=None, cwd=None, pass_fds=(),
              start_new_session=False, text=False):
        return Process(self, args, stdin, stdout, stderr, env, cwd, pass_fds, start_new_session, text)

    def run(self, args, timeout=None, **kwargs):
        """As `subprocess.run` (no capture): waits for the process, kills it past `timeout`."""
        proc = self.Popen(args, **kwargs)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return subprocess.CompletedProcess(args, proc.returncode)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def otel_env(env):
    return {k: v for k, v in env.items() if k.startswith("OTEL_")}


def _fd(stream, default, devnull):
    if stream is None:
        return default
    if stream == subprocess.DEVNULL:
        return devnull
    return stream if isinstance(stream, int) else stream.fileno()


class Process:
    """A process the fork server started: its pid, and its exit status once the server says it."""

    def __init__(self, server, args, stdin, stdout, stderr, env, cwd, pass_fds, start_new_session, text):
        self.args = list(args)
        self.returncode = None
        self.stdout = None
        if args[0] != sys.executable:
            raise ValueError(f"the fork server runs this Python only, not {args[0]}")
        env = dict(os.environ if env is None else env)
        if server.otel_env is not None and otel_env(env) != server.otel_env:
            raise ValueError(f"the fork server imported OpenTelemetry with {server.otel_env}, which it read then; "
                             f"{self.args} wants {otel_env(env)}: start it from a server with that environment")
        devnull = os.open(os.devnull, os.O_RDWR)
        ours = [devnull]
        try:
            if stdout == subprocess.PIPE:
                r, w = os.pipe()
                ours.append(w)
                self.stdout = os.fdopen(r, "r" if text else "rb")
                out = w
            else:
                out = _fd(stdout, 1, devnull)
            err = out if stderr == subprocess.STDOUT else _fd(stderr, 2, devnull)
            fds = [_fd(stdin, 0, devnull), out, err, *pass_fds]
            if len(fds) > MAX_FDS:
                raise ValueError(f"at most {MAX_FDS - 3} pass_fds")
            request = {"argv": self.args[1:], "env": env,
                       "cwd": os.path.abspath(cwd or os.getcwd()), "pass_fds": list(pass_fds),
                       "new_session": bool(start_new_session)}
            self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.conn.connect(server.path)
            socket.send_fds(self.conn, [json.dumps(request).encode()], fds)
        finally:
            for fd in ours:
                os.close(fd)
        self.buffer = b""
        line = self._line(timeout=120)
        if line is None or not line.startswith("pid "):
            raise RuntimeError(f"the fork server did not start {self.args}: {line!r}")
        self.pid = int(line.split()[1])

    def _line(self, timeout):
        """The server's next line, or None when none came within `timeout` (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            r, _, _ = select.select([self.conn], [], [], left)
            if not r:
                return None
            chunk = self.conn.recv(4096)
            if not chunk:
                return self.buffer.decode() or "(the connection closed)"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def poll(self):
        if self.returncode is None:
            self._status(0)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None and not self._status(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _status(self, timeout):
        line = self._line(timeout)
        if line is None:
            return False
        if not line.startswith("exit "):
            raise RuntimeError(f"the fork server lost {self.args} (pid {self.pid}): {line!r}")
        self.returncode = int(line.split()[1])
        self.conn.close()
        return True

    def send_signal(self, sig):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


# ------------------------------------------------------------------------------- the server ---

def _run(request, fds):
    """In the forked child: becomes `python ARGV...` with the request's environment and fds."""
    if request["new_session"]:
        os.setsid()
    # Each descriptor to its place (0, 1, 2, then the pass_fds at the numbers the driver used),
    # by way of copies above every target so that no move overwrites one still to be moved.
    targets = [0, 1, 2, *request["pass_fds"]]
    high = max(targets + fds) + 1
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in fds]
    for fd in fds:
        os.close(fd)
    for copy, target in zip(copies, targets):
        os.dup2(copy, target, inheritable=True)
    for copy in copies:
        os.close(copy)
    # Buffered as the interpreter buffers them: stdout by blocks unless PYTHONUNBUFFERED is set.
    unbuffered = bool(request["env"].get("PYTHONUNBUFFERED"))
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1 if unbuffered or os.isatty(1) else -1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    argv = request["argv"]
    pythonpath = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    import runpy

    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[:] = [os.getcwd(), *pythonpath, *BASE_PATH]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = os.path.abspath(argv[0])
        sys.argv = [script, *argv[1:]]
        sys.path[:] = [os.path.dirname(script), *pythonpath, *BASE_PATH]
        runpy.run_path(script, run_name="__main__")


def _child(request, fds):
    """The forked child runs the program and exits as the interpreter would at its end
    (atexit handlers, non-daemon threads joined, streams flushed)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _run(request, fds)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)


def _spawn(conn, listener):
    """In a process of its own (forked per request): forks the program, says its pid, waits for it
    and says how it ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, MAX_FDS)
        request = json.loads(msg)
        pid = os.fork()
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    if pid == 0:
        conn.close()
        listener.close()
        _child(request, fds)  # never returns
    listener.close()
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {pid}\n".encode())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        conn.sendall(f"exit {code}\n".encode())
    except OSError:
        pass
    os._exit(0)


def serve(path, preload):
    for module in preload:
        __import__(module)
    # Any module the preload did not load yet is imported by each child, after the fork.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the per-request processes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    otel = any(m.split(".")[0] == "opentelemetry" for m in sys.modules)
    print("ready opentelemetry" if otel else "ready", flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            # (No `finally` around it: the program's own exit, a SystemExit, leaves through here.)
            _spawn(conn, listener)
        conn.close()


if __name__ == "__main__":
    # The search path a child starts from: this interpreter's, without this script's directory
    # and the server's own PYTHONPATH (each child puts its own first).
    own = {HERE, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)}
    BASE_PATH = [p for p in sys.path if p and os.path.abspath(p) not in own]
    serve(sys.argv[1], sys.argv[2:])
