"""Run untrusted, model-written Python (HumanEval completions) under bubblewrap (docs/evaluation.md).

Generated code is executed only when the user opts in (``--allow-code-execution``), and then
only here. Each program runs in a ``bwrap`` sandbox of its own (Debian package ``bubblewrap``):

- new user, PID, network, IPC, UTS and cgroup namespaces, a fresh ``/proc``, a minimal ``/dev``
  (read-only, ``/dev/shm`` included), ``--die-with-parent``, ``--new-session``, ``--clearenv``,
  all capabilities dropped;
- an empty, read-only root holding only read-only binds of what the interpreter needs
  (its prefixes and executable, wherever they live, and the folders of the shared libraries
  ``ldd`` names for it and its extension modules) and one size-limited tmpfs on ``/tmp``,
  the only writable place; nothing else of the host (no ``$HOME``, ``/run``, host ``/tmp``);
- limits set by the sample's first process on itself (``_sandbox_init.py``): CPU time,
  address space per process, file size, open files, processes (``RLIMIT_NPROC``, counted per
  user namespace, so only this sample's processes);
- watched from here every ``POLL_S``: the wall clock, the resident memory of all of the
  sample's processes together, the files on its tmpfs, and its output, read as it comes
  (the last ``OUTPUT_CAP`` characters kept, the sample killed past ``Limits.output_mb``);
- a pass only through a per-run token on a pipe (see ``_sandbox_init.py``), never from the
  exit status alone.

Memory and processes across all of a sample's processes: a cgroup per sample where this process
may make one (root: ``pids.max`` on cgroup v1 or v2, ``memory.max`` on v2); everywhere the
watcher above; ``RLIMIT_NPROC`` for non-root (the kernel exempts uid 0 from it, even mapped).
bwrap failing to start is the only ``error``; whatever a program does is its sample's failure.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from polyinstruct.errors import ConfigError
from polyinstruct.eval.sandbox_setup import diagnose, interpreter_mounts, seccomp_filter

log = logging.getLogger(__name__)

INIT_SOURCE = Path(__file__).with_name("_sandbox_init.py").read_text(encoding="utf-8")
OUTPUT_CAP = 4096   # characters of stdout/stderr kept per sample
POLL_S = 0.02       # how often the wall clock, memory and files of a running sample are checked
PAGE = os.sysconf("SC_PAGE_SIZE")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


class SandboxUnavailableError(ConfigError):
    """The sandbox cannot run here (bwrap missing, user namespaces off): the message says the fix."""


@dataclass
class Limits:
    cpu_s: int = 10          # RLIMIT_CPU, seconds of CPU time (SIGXCPU: a timeout)
    wall_s: float = 20.0     # wall clock (a loaded machine runs slower than the CPU limit says)
    memory_mb: int = 2048    # all processes' resident memory together (watched), and RLIMIT_AS of each
    file_mb: int = 16        # RLIMIT_FSIZE
    nproc: int = 16          # RLIMIT_NPROC: the sample's processes
    nofile: int = 64         # RLIMIT_NOFILE
    tmpfs_mb: int = 64       # size of /tmp, the only writable place (bwrap --size)
    max_files: int = 4096    # files and folders on /tmp (watched)
    output_mb: int = 8       # stdout + stderr in all; past it the sample is killed


@dataclass
class Outcome:
    status: str              # passed | failed | timeout | error (error: the sandbox itself failed to start)
    returncode: int | None
    reason: str
    stdout: str = ""
    stderr: str = ""
    wall_s: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# -- the sandbox ----------------------------------------------------------------------------------

def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (through /proc/PID/task/TID/children)."""
    out, stack = [], [pid]
    while stack and len(out) < 100_000:
        p = stack.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return out


def _usage(pids: list[int]) -> tuple[int, int]:
    """(resident bytes, tasks) of ``pids`` together, from /proc/PID/stat."""
    rss = tasks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            tasks += int(fields[17])
            rss += int(fields[21]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
    return rss, tasks


def _oom_killed(cgroup: str) -> bool:
    try:
        events = dict(ln.split() for ln in Path(cgroup, "memory.events").read_text().splitlines())
    except (OSError, ValueError):
        return False
    return int(events.get("oom_kill", 0)) > 0


class _Cgroups:
    """A cgroup per sample where this process may make one (root): ``pids.max`` (cgroup v1 or v2)
    and, on cgroup v2, ``memory.max`` with no swap. Elsewhere ``None``: the watcher and rlimits bound them."""

    def __init__(self):
        self.base: str | None = None
        self.memory = False
        self._n = 0
        if os.geteuid() != 0:
            return
        try:
            if Path("/sys/fs/cgroup/cgroup.controllers").exists():      # cgroup v2 (unified)
                top = set(Path("/sys/fs/cgroup/cgroup.subtree_control").read_text().split())
                if "pids" not in top:
                    return
                base = f"/sys/fs/cgroup/polyinstruct-{os.getpid()}"
                os.makedirs(base, exist_ok=True)
                ctl = "+pids" + (" +memory" if "memory" in top else "")
                Path(base, "cgroup.subtree_control").write_text(ctl)
                self.memory = "memory" in top
            elif Path("/sys/fs/cgroup/pids/cgroup.procs").exists():     # cgroup v1 pids hierarchy
                base = f"/sys/fs/cgroup/pids/polyinstruct-{os.getpid()}"
                os.makedirs(base, exist_ok=True)
            else:
                return
            self.base = base
            atexit.register(self.remove, base)
        except OSError as e:
            log.info("no cgroup for the sandbox (%s): processes and memory are bounded by rlimits and the watcher", e)

    def make(self, limits: "Limits") -> str | None:
        if self.base is None:
            return None
        self._n += 1
        path = os.path.join(self.base, f"s{self._n}-{secrets.token_hex(3)}")
        try:
            os.mkdir(path)
            Path(path, "pids.max").write_text(str(limits.nproc + 3))  # + bwrap, its reaper, the init
            if self.memory:
                Path(path, "memory.max").write_text(str(limits.memory_mb * 1024 * 1024))
                if Path(path, "memory.swap.max").exists():
                    Path(path, "memory.swap.max").write_text("0")
            return path
        except OSError as e:
            log.warning("cannot set up a cgroup for a sample (%s); bounded by rlimits and the watcher", e)
            self.remove(path)
            return None

    @staticmethod
    def remove(path: str | None) -> None:
        for _ in range(50):
            if path is None or not os.path.isdir(path):
                return
            try:
                os.rmdir(path)
                return
            except OSError:
                time.sleep(0.01)  # the killed processes are still being reaped


def _files(pids: list[int], size: int) -> int:
    """Inodes in use on the sample's /tmp (recognised by its size), seen through its processes' root."""
    for p in pids[1:4]:
        try:
            st = os.statvfs(f"/proc/{p}/root/tmp")
        except OSError:
            continue
        if st.f_blocks * st.f_frsize == size:
            return st.f_files - st.f_ffree
    return 0


class Sandbox:
    """Runs programs in bwrap, ``workers`` at a time (see the module docstring)."""

    def __init__(self, limits: Limits | None = None, *, workers: int = 2, bwrap: str | None = None):
        if workers < 1:
            raise ConfigError(f"sandbox workers must be >= 1, got {workers}", field="workers")
        self.limits = limits or Limits()
        self.workers = workers
        self.root = os.geteuid() == 0
        self.bwrap = bwrap or shutil.which("bwrap")
        if not self.bwrap or not os.access(self.bwrap, os.X_OK):
            raise SandboxUnavailableError(
                "the code sandbox needs bubblewrap, which is not installed: apt-get install bubblewrap "
                "(Debian/Ubuntu; dnf install bubblewrap on Fedora)")
        self.binds, self.links = interpreter_mounts()
        self._cgroups = _Cgroups()
        self._seccomp = seccomp_filter()
        out = self.run("import collections, math, typing, re, hashlib\nprint('ok')")
        if not (out.passed and out.stdout.strip() == "ok"):
            if out.status == "error":
                raise SandboxUnavailableError(diagnose(out.stderr))
            raise SandboxUnavailableError(f"the code sandbox starts but cannot run Python ({out.status}: {out.reason}; "
                                          f"{out.stderr.strip()[-300:]})")
        self.isolation = "bwrap"

    def _command(self, status_fd: int, request_fd: int, seccomp_fd: int | None) -> list[str]:
        lim = self.limits
        # /tmp first: an interpreter under /tmp (a venv there) is bound on top of it, read-only
        cmd = [self.bwrap, "--size", str(lim.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp",
               "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--clearenv"]
        if seccomp_fd is not None:
            cmd += ["--seccomp", str(seccomp_fd)]
        for k, v in ENV.items():
            cmd += ["--setenv", k, v]
        for path in self.binds:
            cmd += ["--ro-bind", path, path]
        for dest, target in self.links.items():
            if os.path.dirname(dest) != "/":
                cmd += ["--dir", os.path.dirname(dest)]
            cmd += ["--symlink", target, dest]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                "--file", str(request_fd), "/tmp/.request", "--remount-ro", "/", "--chdir", "/tmp",
                sys.executable, "-I", "-S", "-B", "-c", INIT_SOURCE, str(status_fd)]
        return cmd

    def run(self, program: str) -> Outcome:
        """Run one program under ``self.limits``; its outcome (never raises for what the program does)."""
        token = secrets.token_hex(16)
        req = json.dumps({"program": program, "token": token, "limits": asdict(self.limits)}).encode()
        request_fd = os.memfd_create("polyinstruct-sample", os.MFD_CLOEXEC)
        seccomp_fd = os.memfd_create("polyinstruct-seccomp", os.MFD_CLOEXEC) if self._seccomp else None
        status_r, status_w = os.pipe()
        try:
            os.write(request_fd, req)
            os.lseek(request_fd, 0, os.SEEK_SET)
            if seccomp_fd is not None:
                os.write(seccomp_fd, self._seccomp)
                os.lseek(seccomp_fd, 0, os.SEEK_SET)
            cgroup = self._cgroups.make(self.limits)
            cmd = self._command(status_w, request_fd, seccomp_fd)
            if cgroup:  # the shell joins the sample's cgroup, then becomes bwrap: every process is in it
                cmd = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, *cmd]
            start = time.monotonic()
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        pass_fds=tuple(fd for fd in (status_w, request_fd, seccomp_fd)
                                                       if fd is not None), start_new_session=True,
                                        cwd="/", env={"PATH": ENV["PATH"]})
            except OSError as e:
                os.close(status_r)
                self._cgroups.remove(cgroup)
                return Outcome("error", None, f"bwrap could not start: {e}")
        finally:
            os.close(request_fd)
            os.close(status_w)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        try:
            out = self._supervise(proc, status_r, token, start)
            if cgroup and out.status != "passed" and _oom_killed(cgroup):
                out.status, out.reason = "failed", f"memory limit {self.limits.memory_mb} MB (cgroup memory.max)"
            return out
        finally:
            self._cgroups.remove(cgroup)

    def _supervise(self, proc: subprocess.Popen, status_r: int, token: str, start: float) -> Outcome:
        lim = self.limits
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        bufs = {out_fd: bytearray(), err_fd: bytearray(), status_r: bytearray()}
        sel = selectors.DefaultSelector()
        for fd in bufs:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        total, killed, why = 0, None, ""
        deadline = start + float(lim.wall_s)
        next_watch = start
        try:
            while sel.get_map():
                now = time.monotonic()
                if killed is None and now >= deadline:
                    killed, why = "timeout", f"wall-clock limit {lim.wall_s} s reached"
                    self._kill(proc)
                elif killed is not None and now >= deadline + 10:
                    break  # killed long ago and still a pipe open: give up on the rest of its output
                if killed is None and now >= next_watch:
                    pids = _tree(proc.pid)
                    (rss, tasks), files = _usage(pids), _files(pids, lim.tmpfs_mb * 1024 * 1024)
                    if rss > lim.memory_mb * 1024 * 1024:
                        killed, why = "failed", f"memory limit: {rss >> 20} MB resident in all its processes " \
                                                f"(limit {lim.memory_mb} MB)"
                    elif tasks > lim.nproc + 3:
                        killed, why = "failed", f"process limit: {tasks} processes/threads (limit {lim.nproc})"
                    elif files > lim.max_files:
                        killed, why = "failed", f"file limit: {files} files on /tmp (limit {lim.max_files})"
                    if killed:
                        self._kill(proc)
                    next_watch = now + POLL_S
                for key, _ in sel.select(POLL_S):
                    fd = key.fd
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(fd)
                        continue
                    buf = bufs[fd]
                    if fd == status_r:
                        buf += data[:4096 - len(buf)] if len(buf) < 4096 else b""
                        continue
                    total += len(data)
                    buf += data
                    if len(buf) > 2 * OUTPUT_CAP:
                        del buf[:-OUTPUT_CAP]
                    if killed is None and total > lim.output_mb * 1024 * 1024:
                        killed, why = "failed", f"output limit: more than {lim.output_mb} MB printed"
                        self._kill(proc)
        finally:
            sel.close()
            os.close(status_r)
            proc.stdout.close()
            proc.stderr.close()
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            rc = proc.wait()
        wall = round(time.monotonic() - start, 4)
        text = (lambda b: bytes(b).decode("utf-8", "replace")[-OUTPUT_CAP:])
        verdict = self._judge(rc, bytes(bufs[status_r]), token, killed, why, wall)
        return Outcome(*verdict, text(bufs[out_fd]), text(bufs[err_fd]), wall)

    def _judge(self, rc: int, status: bytes, token: str, killed: str | None, why: str,
               wall: float) -> tuple[str, int, str]:
        if killed:
            return killed, rc, why
        if not status.startswith(b"S\n"):   # the program never started: bwrap or the interpreter failed
            return "error", rc, f"the sandbox did not start (bwrap exit status {rc})"
        rest = status[2:]
        if rest == token.encode() + b"\n" and rc == 0:
            return "passed", rc, ""
        if rc == 128 + signal.SIGXCPU or (rc == 128 + signal.SIGKILL and wall >= self.limits.cpu_s):
            return "timeout", rc, f"CPU limit {self.limits.cpu_s} s reached"
        if rest.startswith(b"F "):
            return "failed", rc, rest[2:].split(b"\n", 1)[0].decode("utf-8", "replace")
        if token.encode() in rest:
            return "failed", rc, "something else was written to the status channel"
        if rc > 128:
            sig = rc - 128
            name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
            return "failed", rc, f"killed by {name}"
        return "failed", rc, f"exited with status {rc} before its check finished"

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """Kill bwrap: its reaper (PID 1 of the sample's PID namespace) dies with it (--die-with-parent),
        and with PID 1 every process of the namespace."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except (ProcessLookupError, PermissionError):
            pass

    def run_many(self, programs: Iterable[str], progress: Callable[[int, int], None] | None = None) -> list[Outcome]:
        """Run programs ``workers`` at a time; outcomes in input order."""
        from concurrent.futures import as_completed

        programs = list(programs)
        out: list[Outcome | None] = [None] * len(programs)
        with ThreadPoolExecutor(self.workers) as pool:
            futs = {pool.submit(self.run, p): i for i, p in enumerate(programs)}
            for done, fut in enumerate(as_completed(futs), 1):
                out[futs[fut]] = fut.result()
                if progress is not None:
                    progress(done, len(programs))
        return out  # type: ignore[return-value]
