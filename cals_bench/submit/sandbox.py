"""Running a submission's code in its own process, inside bubblewrap where it can run.

Isolation levels (recorded on every run and submission):

- ``bwrap``: the worker runs under bubblewrap (``bwrap``, Debian package ``bubblewrap``) in new user, PID,
  network, IPC, UTS and mount namespaces, as an unprivileged user with every capability dropped and
  ``no_new_privs``. Its file system holds only, read-only, the Python installation, the virtual environment,
  the suite's own packages, the submission's folder and the weight files passed to it, plus a writable
  scratch folder; the data root, the results store, the reports and the weights cache do not exist in it.
  No network (a fresh network namespace has only a loopback that is down).
- ``landlock``: bwrap cannot run here but the kernel has Landlock (:mod:`cals_bench.submit.landlock`): the
  worker confines itself before importing submitted code to reading the same paths as above (and its own
  /proc entry), writing its scratch folder only, no TCP, no signals or ptrace outside itself. Not covered:
  UDP, existing unix sockets, the machine's process list (names only; /proc of others is unreadable).
- ``process``: neither works here. The model still runs in its own process
  and receives only the inputs, but it can read any file the user can. Such runs are refused for the shared
  results store unless ``--trusted`` is given, and are flagged on every table.

In both, the worker lowers its own address-space and file-size limits before importing submitted code, each
batch has a wall-time limit, and stdout/stderr are captured into the submission folder and capped.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cals_bench.errors import CalsBenchError
from cals_bench.submit.wire import Channel, WireError, tensor_from, tensor_message

ENV_SANDBOX = "CALS_BENCH_SANDBOX"  # "none" forces the process level (tests of the refusal path)
SUITE_PACKAGES = ("cals_bench", "cals_bench.baselines", "cals_bench.reference_models", "cals_bench.protocols")


@dataclass(frozen=True)
class Isolation:
    """How a submitted model is isolated (``bwrap``, ``landlock`` or only a separate ``process``)."""

    level: str  # "bwrap", "landlock" or "process"
    detail: str

    @property
    def isolated(self) -> bool:
        return self.level in ("bwrap", "landlock")

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "isolated": self.isolated, "detail": self.detail}


BWRAP_DETAIL = (
    "bubblewrap: user/pid/net/ipc/uts/mount namespaces, unprivileged uid, no capabilities, read-only "
    "system and code, no data root, results store or weights cache in view, no network"
)


@functools.lru_cache(maxsize=1)
def _probe_bwrap() -> tuple[bool, str]:
    exe = shutil.which("bwrap")
    if not exe:
        return False, "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    cmd = [exe, *_base_args(), "--ro-bind", "/usr", "/usr", "--", "/usr/bin/true"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"bwrap cannot start: {exc}"
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"bwrap cannot create its namespaces here ({msg})"
    return True, exe


LANDLOCK_DETAIL = (
    "landlock ABI {abi}: reads only Python, the environment, the suite's code and the submission; writes "
    "only its scratch folder; {net}; no data root, results store or weights cache in view"
)


def _landlock() -> Isolation | None:
    from cals_bench.submit.landlock import abi_version

    abi = abi_version()
    if abi < 1:
        return None
    net = "no TCP (UDP not confined)" if abi >= 4 else "network NOT confined (Landlock ABI < 4)"
    return Isolation("landlock", LANDLOCK_DETAIL.format(abi=abi, net=net))


def detect() -> Isolation:
    """The strongest isolation that works here (``CALS_BENCH_SANDBOX=bwrap|landlock|none`` forces one)."""
    forced = os.environ.get(ENV_SANDBOX, "").strip().lower()
    if forced in {"none", "process", "off"}:
        return Isolation("process", f"separate process only ({ENV_SANDBOX}={forced})")
    ok, text = (False, f"{ENV_SANDBOX}={forced}") if forced == "landlock" else _probe_bwrap()
    if ok:
        return Isolation("bwrap", BWRAP_DETAIL)
    if forced == "bwrap":
        return Isolation("process", f"separate process only: {text}")
    ll = _landlock()
    if ll is not None:
        return ll
    return Isolation("process", f"separate process only: {text}; Landlock unavailable")


def _base_args() -> list[str]:
    return [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
    ]


@dataclass
class Limits:
    """Resource limits of a submission's worker process (time, memory, files, log size, threads)."""

    batch_timeout_s: float = 600.0
    start_timeout_s: float = 300.0
    memory_bytes: int = 8 * 2**30
    file_bytes: int = 2**30
    log_bytes: int = 2**20
    threads: int = field(default_factory=torch.get_num_threads)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class Bind:
    """A read-only bind mount shown to the sandboxed worker (host path -> path inside)."""

    source: Path
    target: str


def code_paths() -> list[Path]:
    """Folders the worker needs read-only: Python itself, the environment, the suite's packages."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    for name in SUITE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            paths.update(Path(p).resolve() for p in spec.submodule_search_locations)
    exe = Path(sys.executable).resolve()
    paths.add(exe.parent.parent)
    out = sorted(paths, key=lambda p: len(p.parts))
    return [p for p in out if not any(q != p and q in p.parents for q in out) and p.exists()]


def check_hidden(binds: list[Path], protected: dict[str, Path | None]) -> None:
    """Refuse to show the worker a folder that holds the data, the results store or the weights cache."""
    for b in binds:
        b = b.resolve()
        for what, p in protected.items():
            if p is None or not Path(p).exists():
                continue
            p = Path(p).resolve()
            if p == b or b in p.parents:
                raise CalsBenchError(
                    f"{b} holds the {what} ({p}); the submission's code must not see it: move the model "
                    "files to a folder of their own"
                )


class WorkerError(Exception):
    """The worker failed: ``reason`` is the one line a user sees; ``fatal`` when the worker is gone."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


class Worker:
    """One sandboxed worker process running one submitted model."""

    def __init__(
        self,
        spec: str,
        args: dict[str, Any],
        *,
        folder: Path,
        isolation: Isolation,
        limits: Limits | None = None,
        binds: list[Bind] | None = None,
        sys_paths: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.spec, self.args = spec, dict(args)
        self.folder = Path(folder).resolve()  # bwrap binds need absolute paths (--results may be relative)
        self.isolation = isolation
        self.limits = limits or Limits()
        self.binds = list(binds or [])
        self.sys_paths = list(sys_paths or [])
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.meta: dict[str, Any] = {}
        self.dead: str | None = None
        self.log_overflow: str | None = None
        self.log_sizes = {"stdout": 0, "stderr": 0}
        self.peak_rss_kib: int | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------------------------
    def command(self, rfd: int, wfd: int) -> list[str]:
        py = [sys.executable, "-I", "-m", "cals_bench.submit.worker", str(rfd), str(wfd)]
        if self.isolation.level != "bwrap":
            return py
        scratch = self.folder / "scratch"
        cmd = [shutil.which("bwrap") or "bwrap", *_base_args(), "--ro-bind", "/usr", "/usr"]
        for p in code_paths():
            cmd += ["--ro-bind", str(p), str(p)]
        for b in self.binds:
            cmd += ["--ro-bind", str(b.source), b.target]
        cmd += ["--bind", str(scratch), "/tmp", "--chdir", "/tmp"]
        for k, v in self._env().items():
            cmd += ["--setenv", k, v]
        return [*cmd, "--", *py]

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "XDG_CACHE_HOME": "/tmp/.cache",
            "TORCH_HOME": "/tmp/.cache/torch",
            "CALS_BENCH_OFFLINE": "1",
            "OMP_NUM_THREADS": str(self.limits.threads),
            "LANG": "C.UTF-8",
        }
        env.update(self.env)
        return env

    def start(self) -> None:
        """Start the process (returns at once; :meth:`handshake` waits for the model to load)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        scratch = self.folder / "scratch"
        scratch.mkdir(exist_ok=True)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = self._env()
        if self.isolation.level != "bwrap":
            env = {**env, "HOME": str(scratch), "TMPDIR": str(scratch), "XDG_CACHE_HOME": str(scratch)}
        self.proc = subprocess.Popen(
            self.command(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(to_child_r, from_child_w),
            cwd=str(scratch),
            env=env,
            start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        os.set_blocking(to_child_w, False)
        self.chan = Channel(from_child_r, to_child_w)
        self._fds = (from_child_r, to_child_w)
        for stream in ("stdout", "stderr"):
            t = threading.Thread(target=self._drain, args=(stream,), daemon=True)
            t.start()
            self._threads.append(t)
        self.chan.send(
            {
                "op": "load",
                "spec": self.spec,
                "args": self.args,
                "paths": self.sys_paths,
                "threads": self.limits.threads,
                "limits": {"memory_bytes": self.limits.memory_bytes, "file_bytes": self.limits.file_bytes},
                "landlock": self._landlock_paths() if self.isolation.level == "landlock" else None,
            },
            timeout=30,
        )

    def _landlock_paths(self) -> dict[str, list[str]]:
        ro = [str(p) for p in code_paths()] + [str(b.source) for b in self.binds]
        ro += [
            "/usr",
            "/lib",
            "/lib64",
            "/bin",
            "/etc/ld.so.cache",
            "/dev/urandom",
            "/sys/devices/system/cpu",
        ]
        return {"ro": ro, "rw": [str(self.folder / "scratch"), "/dev/null"]}

    def _drain(self, stream: str) -> None:
        """Copy the worker's stdout/stderr into the folder up to the cap; past it, stop the worker."""
        pipe = getattr(self.proc, stream)
        cap = self.limits.log_bytes
        with open(self.folder / f"{stream}.txt", "wb") as out:
            while True:
                chunk = pipe.read1(1 << 16)
                if not chunk:
                    break
                room = cap - self.log_sizes[stream]
                if room > 0:
                    out.write(chunk[:room])
                    out.flush()
                self.log_sizes[stream] += len(chunk)
                if self.log_sizes[stream] > cap and not self.log_overflow:
                    self.log_overflow = stream
                    out.write(f"\n[cals-bench: {stream} capped at {cap} bytes; worker stopped]\n".encode())
                    self.kill()

    def handshake(self) -> dict[str, Any]:
        """Wait for the model to load in the worker; its self-description (untrusted, informative)."""
        reply, _ = self._recv(self.limits.start_timeout_s, "loading the model")
        if not reply.get("ok"):
            self._fatal(f"loading the model failed: {reply.get('error')}")
        self.meta = dict(reply.get("meta") or {})
        return self.meta

    def enhance(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """Send one input batch; the model's output (any dtype, any shape up to a ceiling)."""
        if self.dead:
            raise WorkerError(self.dead, fatal=True)
        header, raw = tensor_message(x.float())
        try:
            self.chan.send(
                {**header, "op": "enhance", "seed": int(seed)}, raw, timeout=self.limits.batch_timeout_s
            )
        except WireError as exc:
            self._fatal(self._why(exc, "receiving a batch"))
        ceiling = max(x.numel() * 8 * 4, 1 << 20)
        reply, payload = self._recv(self.limits.batch_timeout_s, "enhancing a batch", ceiling)
        if reply.get("peak_rss_kib"):
            self.peak_rss_kib = int(reply["peak_rss_kib"])
        if not reply.get("ok"):
            raise WorkerError(f"model {reply.get('error')}")
        try:
            return tensor_from(reply, payload)
        except WireError as exc:
            self._fatal(f"the worker sent a malformed output: {exc}")

    def _recv(self, timeout: float, doing: str, ceiling: int | None = 1 << 20):
        if self.dead:
            raise WorkerError(self.dead, fatal=True)
        try:
            return self.chan.recv(timeout=timeout, max_payload=ceiling)
        except WireError as exc:
            self._fatal(self._why(exc, doing))

    def _why(self, exc: WireError, doing: str) -> str:
        if exc.reason == "timeout":
            return f"timed out after {self.limits.batch_timeout_s if 'batch' in doing else self.limits.start_timeout_s:g} s {doing} (wall-time limit)"
        if exc.reason == "protocol":
            return f"sent a malformed message while {doing} ({exc})"
        if exc.reason == "too-large":
            return f"sent an output over the size limit while {doing} ({exc})"
        code = self._wait_exit(5.0)
        if self.log_overflow:
            return (
                f"printed more than {self.limits.log_bytes} bytes to {self.log_overflow} "
                f"(log capped; see {self.folder / (self.log_overflow + '.txt')})"
            )
        if code is None:
            return f"stopped answering while {doing} ({exc})"
        if code < 0 or code >= 128:
            sig = -code if code < 0 else code - 128
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = " (likely the memory limit)" if sig == signal.SIGKILL else ""
            return f"worker was killed by {name} while {doing}{hint}"
        return f"worker exited with status {code} while {doing} (the model called exit or crashed)"

    def _wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout) if self.proc else None
        except subprocess.TimeoutExpired:
            return None

    def _fatal(self, reason: str):
        self.dead = reason
        self.kill()
        raise WorkerError(reason, fatal=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()

    def close(self) -> dict[str, Any]:
        """Stop the worker (politely, then by force); what it left: exit status and log sizes."""
        if self.proc is None:
            return {}
        if self.proc.poll() is None and not self.dead:
            with contextlib.suppress(WireError):
                self.chan.send({"op": "exit"}, timeout=5)
            if self._wait_exit(10.0) is None:
                self.kill()
        self.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(timeout=10)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.folder / "scratch", ignore_errors=True)
        return {"exit_status": self.proc.returncode, "log_bytes": dict(self.log_sizes)}

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
