"""A user's SQL in a process of its own, so that its time and memory limits hold whatever the
statement does: `curate query`, the app's SQL console and the app's filter on the difficulty view.

DuckDB keeps its sorts, joins and aggregates within the reader's `memory_limit`, but not the values
an expression builds (`repeat('x', 10^9)` over a few rows), and a Python thread cannot be stopped
from outside. So the statement runs in a worker: a child Python process that opens the catalog
read-only (the same sandbox as `curate.catalog.read`), runs one allowed function on the reader, and
sends the result back in pickled frames over a pipe, a chunk of rows at a time. Limits:

- memory: the worker's resident memory (Linux, /proc/PID/statm, every 10 ms), at most
  `Limits.max_memory`. Watched twice: by a thread of the worker itself, which exits at once
  (DuckDB runs without holding the interpreter's lock, so the thread runs while a statement
  builds), and by the parent, which kills the worker (in case the worker's thread cannot run);
- time: from the moment the catalog is open, the worker interrupts its own statement at the time
  limit, and the parent kills it `GRACE` seconds later if it has not answered. Before the catalog
  is open, the worker waits for it as every reader does ($CURATE_CATALOG_TIMEOUT), and the parent
  gives it that long and `START` seconds more;
- size: the pickled result, at most `Limits.max_bytes` in all (what reaches the parent).

Past a limit the worker is killed: the system releases its memory and its hold on the catalog at
once, and the caller gets one `QueryLimitError`. At most `MAX_BUSY` workers run queries at once (each
may take its memory limit); a query beyond them waits for one to finish. A worker that answered
(a result, or an error such as bad SQL) is kept for the next query, up to `KEEP` of them (starting
one costs about half a second: the interpreter, pandas and DuckDB); one that was stopped, or holds
more than `KEEP_RSS` afterwards, is not. A worker ends with its parent: EOF on its requests when
idle, a check every second while a query runs. What it prints goes to the parent's stderr (the
"catalog is busy" line, for one).

Frames are an 8-byte big-endian length, then a pickle: pickles from our own child, of DataFrames
and plain values, never from a file.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from curate.catalog.connect import busy_timeout
from curate.errors import CurateError
from curate.sql import Limits, QueryLimitError, memory_limit_message, time_limit_message

# What a worker may run: each takes a `catalog.Reader` first.
TARGETS = {
    "query": ("curate.sql", "iter_limited"),
    "subset_count": ("curate.explore", "subset_count"),
    "subset_page": ("curate.explore", "subset_page"),
}
GRACE = 5.0  # s past the time limit before the parent kills a worker that has not answered
START = 30.0  # s a worker may take to start and reach the catalog, besides the catalog's own wait
POLL = 0.01  # s between two looks at the memory: 10 ms at 10 GB/s is 100 MB over the limit
MAX_BUSY = 2  # workers running queries at once, per process
KEEP = 2  # idle workers kept per process
KEEP_RSS = 2**30  # a worker holding more than this after a query is not kept
OUT_OF_MEMORY = 86  # the exit code of a worker that stopped itself at its memory limit
_HEADER = struct.Struct(">Q")

# The worker's first lines: its own folder leaves the import path, and it imports this very copy of
# curate: the folder that holds it goes first on the path only when the interpreter would find
# another one (a checkout on sys.path, a second install); never otherwise (a site-packages ahead of
# the standard library could shadow it). Frames go through a pipe of their own (file descriptor
# `frames`), so nothing printed on stdout (a sitecustomize, a .pth, a library) can reach them.
_BOOT = """import os, sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import importlib.util
parent = {parent!r}
spec = importlib.util.find_spec("curate")
if spec is None or os.path.dirname(os.path.dirname(os.path.realpath(spec.origin))) != parent:
    sys.path.insert(0, parent)
from curate.query_worker import serve
serve({frames})
"""

_idle: list[_Worker] = []
_lock = threading.Lock()
_busy = threading.BoundedSemaphore(MAX_BUSY)


def _forget_workers() -> None:
    """In a forked child: the parent's workers are the parent's (their pipes are shared)."""
    global _lock, _busy
    _idle.clear()
    _lock, _busy = threading.Lock(), threading.BoundedSemaphore(MAX_BUSY)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def query(root, sql: str, params: list | tuple, limits: Limits):
    """Run one read-only statement of the user's in a worker, within `limits`.

    Parameters
    ----------
    root : the workspace whose catalog is read
    sql, params : the statement and its `?` parameters
    limits : the time, row, result-size and memory limits

    Returns
    -------
    pd.DataFrame
        At most `limits.rows` rows; an empty frame for a statement without a result.

    Raises
    ------
    QueryLimitError
        A limit was hit; the worker was stopped and the catalog is free.
    CurateError, duckdb.Error
        The worker's own errors (bad or refused SQL), of the same type and message.
    """
    from dataclasses import replace

    from curate.sql import concat

    # the worker's own deadline stops the statement, so the inner one is off
    inner = replace(limits, seconds=None)
    chunks, _ = run(root, "query", (sql, list(params), inner), limits)
    return concat(chunks)


def call(root, name: str, args: tuple, limits: Limits):
    """`name(reader, *args)` of `TARGETS` in a worker, within `limits`' time, size and memory; its
    return value. Raises as `query` does."""
    return run(root, name, tuple(args), limits)[1]


def run(root, target: str, args: tuple, limits: Limits) -> tuple[list, object]:
    """(chunks yielded, value returned) of `target(reader, *args)` in a worker; see `query`."""
    if target not in TARGETS:
        raise ValueError(f"not a worker target: {target!r}")
    request = {
        "root": str(Path(root).absolute()),
        "cwd": _cwd(),  # paths in the SQL are the caller's
        "target": target,
        "args": args,
        "seconds": limits.seconds,
        "raise_seconds": limits.raise_seconds,
        "max_memory": limits.max_memory,
        "env": {k: v for k, v in os.environ.items() if k.startswith("CURATE_")},
    }
    try:
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise CurateError(
            f"the query's parameters cannot be sent to the process that runs it ({e}); give "
            "plain values: numbers, strings, lists of them"
        ) from None
    with _busy:
        for attempt in (0, 1):
            worker, fresh = _acquire()
            try:
                outcome = worker.run(data, limits)
            except _DiedBeforeStart:
                worker.close()
                if fresh or attempt:  # an idle worker that died unseen: one fresh try
                    raise CurateError(_died_message(worker)) from None
                continue
            except BaseException:
                worker.close()  # stopped at a limit, or interrupted: never reused
                raise
            _release(worker)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
    raise AssertionError("unreachable")  # pragma: no cover


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # removed since: relative paths cannot mean anything
        return None


def _acquire() -> tuple[_Worker, bool]:
    """(a worker, whether it is new)."""
    with _lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive():
                return worker, False
            worker.close()
    return _Worker(), True


def _release(worker: _Worker) -> None:
    rss = _rss(worker.proc.pid)
    with _lock:
        if worker.alive() and (rss is None or rss <= KEEP_RSS) and len(_idle) < KEEP:
            _idle.append(worker)
            return
    worker.close()


def _rss(pid: int | str) -> int | None:
    """Resident memory of process `pid` ("self": this one) in bytes; None where /proc has no
    answer (not Linux)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _above_std(*fds: int) -> list[int]:
    """`fds` moved to numbers above 2: a caller started with stdin, stdout or stderr closed gets
    pipes there, which the worker's own redirections would overwrite."""
    import fcntl

    out = []
    for fd in fds:
        if fd < 3:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        out.append(fd)
    return out


class _DiedBeforeStart(Exception):
    """The worker ended before it opened the catalog for this request."""


class _Worker:
    """One worker process, and the threads that read its frames and relay its stderr."""

    def __init__(self):
        frames_r, frames_w = _above_std(*os.pipe())
        log_r, log_w = _above_std(*os.pipe())  # the worker's stdout and stderr
        try:
            boot = _BOOT.format(parent=str(Path(__file__).resolve().parents[1]), frames=frames_w)
            self.proc = subprocess.Popen(
                [sys.executable, "-c", boot],
                stdin=subprocess.PIPE,
                stdout=log_w,
                stderr=log_w,
                pass_fds=(frames_w,),
                cwd=os.path.abspath(os.sep),  # never a module from the user's folder
            )
        except BaseException:
            for fd in (frames_r, log_r):
                os.close(fd)
            raise
        finally:
            for fd in (frames_w, log_w):
                os.close(fd)
        self.frames_in = os.fdopen(frames_r, "rb")
        self.log_in = os.fdopen(log_r, "rb")
        self.max_frame = 0
        self.frames: queue.Queue = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._relay, daemon=True).start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Kill the process (if it still runs) and wait for it: its catalog hold is gone after this."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - the system did not reap it
            pass
        for f in (self.proc.stdin, self.frames_in):
            try:
                f.close()
            except OSError:
                pass

    def _read(self) -> None:
        """Frames from the worker into the queue; None once it ends (or sends a frame larger than
        allowed, which is never read)."""
        out = self.frames_in
        try:
            while True:
                head = out.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    break
                (n,) = _HEADER.unpack(head)
                if n > self.max_frame:
                    self.frames.put(("too-large", n))
                    return
                body = out.read(n)
                if len(body) < n:
                    break
                self.frames.put(("frame", body))
        except (OSError, ValueError):
            pass
        self.frames.put(None)

    def _relay(self) -> None:
        """The worker's stderr, line by line, to this process's (the last lines kept for an
        unexpected end)."""
        try:
            for raw in self.log_in:
                line = raw.decode(errors="replace")
                self.stderr_tail.append(line.rstrip("\n"))
                try:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                except Exception:  # no stderr (None, closed): the pipe is still drained
                    pass
        except (OSError, ValueError):
            pass
        finally:
            self.log_in.close()

    def run(self, data: bytes, limits: Limits):
        """(chunks, value), or the worker's own exception (returned, not raised: the worker is
        fine); raises QueryLimitError at a limit, _DiedBeforeStart, or CurateError if it dies."""
        self.max_frame = limits.max_bytes + 2**20  # a chunk within the limit, and pickle's framing
        self.stderr_tail.clear()  # what an unexpected end reports is this request's
        try:
            self.proc.stdin.write(_HEADER.pack(len(data)))
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _DiedBeforeStart() from None
        started, opened = time.monotonic(), None
        chunks: list = []
        received = 0
        while True:
            try:
                item = self.frames.get(timeout=POLL)
            except queue.Empty:
                item = False
            self._watch(started, opened, limits)
            if item is False:
                continue
            if item is None:  # the frames' pipe ended: the worker did, or will (else: kill it)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.close()
                if self.proc.returncode == OUT_OF_MEMORY:
                    raise QueryLimitError(memory_limit_message(limits.max_memory))
                if opened is None:
                    raise _DiedBeforeStart()
                self.close()
                raise CurateError(_died_message(self))
            if item[0] == "too-large":
                self.close()
                raise QueryLimitError(_bytes_message(limits))
            received += len(item[1])
            if received > limits.max_bytes + 2**20:  # nested values pandas' count misses, too
                self.close()
                raise QueryLimitError(_bytes_message(limits))
            message = pickle.loads(item[1])
            kind = message[0]
            if kind == "opened":
                opened = time.monotonic()
            elif kind == "chunk":
                chunks.append(message[1])
            elif kind == "done":
                return chunks, message[1]
            elif kind == "error":
                return _rebuild(*message[1:])

    def _watch(self, started: float, opened: float | None, limits: Limits) -> None:
        """Kill the worker past its memory limit, its time limit (with grace), or the time it may
        take to open the catalog."""
        rss = _rss(self.proc.pid)
        if rss is not None and rss > limits.max_memory:
            self.close()
            raise QueryLimitError(memory_limit_message(limits.max_memory))
        now = time.monotonic()
        if opened is None and now - started > busy_timeout() + START:
            self.close()
            raise CurateError(
                f"the process running the query did not reach the catalog within "
                f"{busy_timeout() + START:.0f} s and was stopped; is the catalog held by another "
                "process, or the machine overloaded? Run it again"
            )
        if opened is not None and limits.seconds is not None:
            if now - opened > limits.seconds + GRACE:
                self.close()
                raise QueryLimitError(time_limit_message(limits.seconds, limits.raise_seconds))


def _died_message(worker: _Worker) -> str:
    code = worker.proc.returncode
    last = next((x for x in reversed(worker.stderr_tail) if x.strip()), None)
    if code is not None and code < 0:
        last = f"signal {-code}"
    last = last or f"exit code {code}"
    return (
        f"the process running the query ended unexpectedly ({last}); run it again, and if it "
        "keeps failing, narrow it"
    )


def _bytes_message(limits: Limits) -> str:
    return (
        f"the result passed {limits.max_bytes / 2**20:,.0f} MiB; select fewer or narrower columns, "
        "or fewer rows (LIMIT, WHERE)"
    )


def _rebuild(module: str, name: str, text: str) -> BaseException:
    """The worker's exception as the same type here: ours, DuckDB's, or a CurateError."""
    import duckdb

    if module.startswith("curate"):
        cls = {"QueryLimitError": QueryLimitError}.get(name, CurateError)
        return cls(text)
    if module.startswith("duckdb") or module.startswith("_duckdb"):
        cls = getattr(duckdb, name, duckdb.Error)
        if isinstance(cls, type) and issubclass(cls, duckdb.Error):
            return cls(text)
    return CurateError(f"the query failed: {name}: {(text.splitlines() or [''])[0]}")


# ---- the worker's side ----


def serve(frames_fd: int) -> None:
    """The worker's loop: one request at a time from stdin, its frames to `frames_fd`, until EOF."""
    import signal

    from curate.catalog import connect

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's, which stops the worker
    out = os.fdopen(frames_fd, "wb")
    sys.stdout = sys.stderr
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))  # pickling deeply nested values
    parent = os.getppid()
    connect.ASKING_PID = parent  # a catalog held by the process that asked: no use waiting
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True).start()
    inp = sys.stdin.buffer
    while True:
        head = inp.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        (n,) = _HEADER.unpack(head)
        request = pickle.loads(inp.read(n))
        _answer(request, lambda message: _send(out, message))


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _orphan_watch(parent: int) -> None:
    """End this worker once its parent is gone (a killed `curate query` or app)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


class _MemoryWatch:
    """Exit this worker (code OUT_OF_MEMORY) once it holds more than `limit` bytes, checked every
    POLL seconds by a thread, until stopped."""

    def __init__(self, limit: int):
        self._stop = threading.Event()
        if _rss("self") is not None:
            threading.Thread(target=self._run, args=(limit,), daemon=True).start()

    def _run(self, limit: int) -> None:
        while not self._stop.wait(POLL):
            rss = _rss("self")
            if rss is not None and rss > limit:
                os._exit(OUT_OF_MEMORY)

    def stop(self) -> None:
        self._stop.set()


def _answer(request: dict, send) -> None:
    from curate import catalog
    from curate.sql import Deadline
    from curate.workspace import Workspace

    for key in [k for k in os.environ if k.startswith("CURATE_")]:
        del os.environ[key]
    os.environ.update(request["env"])
    watch = _MemoryWatch(request["max_memory"])
    try:
        try:
            os.chdir(request["cwd"] or os.path.abspath(os.sep))
        except OSError:
            os.chdir(os.path.abspath(os.sep))
        module, name = TARGETS[request["target"]]
        fn = getattr(importlib.import_module(module), name)
        with catalog.read(Workspace(request["root"])) as con:
            send(("opened",))
            deadline = Deadline(con._con, request["seconds"])
            try:
                value = fn(con, *request["args"])
                if inspect.isgenerator(value):
                    for chunk in value:
                        send(("chunk", chunk))
                    value = None
            except Exception:
                if deadline.fired:
                    raise QueryLimitError(
                        time_limit_message(request["seconds"], request["raise_seconds"])
                    ) from None
                raise
            finally:
                deadline.end()
        send(("done", value))  # after the catalog is closed: the caller may write at once
    except Exception as e:
        send(("error", type(e).__module__, type(e).__name__, str(e)))
    finally:
        watch.stop()
        os.chdir(os.path.abspath(os.sep))
