"""What a suite's driver (make.py) does the same way in every broker suite (Celery, RabbitMQ):
wait for a process to say it is ready, stop it, send the users' questions at once, dump the
processes' logs when a case fails, and write a broken hop of truth.json (README.md)."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid


def wait_for_file(path, proc, what, timeout=120):  # generous: shared, busy CI machines
    """The text a process wrote to `path` once it was ready; fails if it exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            if text:
                return text
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout} s")


def stop(proc, timeout=15):
    """Waits for a process told to stop; ends it if it does not."""
    if proc.poll() is None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def ask_at_once(port, sessions):
    """Each question of `sessions` POSTed to `/chat` on `port` by a user of its own (a session
    ID each), all released together; the answers by session ID."""
    answers, errors = {}, []
    barrier = threading.Barrier(len(sessions))

    def user(k, question):
        session_id = f"sess-{uuid.uuid4().hex[:12]}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/chat", method="POST",
            data=json.dumps({"session_id": session_id, "question": question}).encode(),
            headers={"content-type": "application/json"})
        barrier.wait(timeout=10)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                answers[session_id] = json.loads(resp.read())
        except Exception as e:  # noqa: BLE001
            errors.append(f"user {k}: {e!r}")

    users = [threading.Thread(target=user, args=(k, q)) for k, q in enumerate(sessions)]
    for t in users:
        t.start()
    for t in users:
        t.join(timeout=90)
    if errors or len(answers) != len(sessions):
        raise RuntimeError(f"requests failed: {errors}")
    return answers


def dump_logs(logs):
    """The tail of each process's log (name → open file), to stderr, for a case that failed."""
    for name, f in logs.items():
        f.flush()
        with open(f.name) as g:
            sys.stderr.write(f"--- {name} log ---\n{g.read()[-4000:]}\n")


def hop(label, orphan, parents, must_repair, why, kinds, **extra):
    """A broken hop of truth.json: `orphan` and each of `parents` are (trace ID, span ID)."""
    h = {"hop": label, "orphan_trace_id": orphan[0], "orphan_span_id": orphan[1],
         "parent_span_ids": [p[1] for p in parents], "must_repair": must_repair, "why": why, "kinds": kinds}
    h.update(extra)
    return h


class InconsistentRun(RuntimeError):
    """A run whose spans contradict what the case sets up (the library lost a span, or left a
    context current): it is not the case it claims to be, so it is recorded again, never
    scored."""


def record_cases(cases, run_case, out, only=None):
    """Runs each case of `cases` (`run_case(out, spec)` → spans, broken hops), or those named in
    `only`, and says what each recorded. A run found inconsistent is recorded again; three in a
    row are a real failure."""
    for spec in cases:
        if only and spec["case"] not in only:
            continue
        t0 = time.time()
        for attempt in (1, 2, 3):
            try:
                n, hops = run_case(out, spec)
                break
            except InconsistentRun as e:
                if attempt == 3:
                    raise
                print(f"{spec['case']}: run {attempt} discarded ({e}); recording it again", flush=True)
        must = sum(h["must_repair"] for h in hops)
        print(f"{spec['case']}: {n} spans, {len(hops)} broken hops ({must} must_repair), "
              f"{time.time() - t0:.1f} s", flush=True)
