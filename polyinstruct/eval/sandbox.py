"""Run untrusted, model-written Python (HumanEval completions) in a sandbox (docs/evaluation.md).

Generated code is executed only when the user opts in (``--allow-code-execution``), and then
only here. Each program runs in a process of its own:

- **no network**: a fresh Linux network namespace (only a loopback, down); where one cannot be
  made, ``Sandbox`` refuses unless ``allow_no_network_isolation=True``
  (``--allow-no-network-isolation``), which the user passes to accept running without it;
- **a throwaway working folder**: a fresh mount namespace with tmpfs over ``/tmp``,
  ``/var/tmp`` and ``/dev/shm`` (size-limited); the program runs in ``/tmp/work`` and all of
  it disappears with the namespace;
- **limits**: CPU time (``RLIMIT_CPU``), address space (``RLIMIT_AS``), file size
  (``RLIMIT_FSIZE``), open files, no core dumps, and a wall-clock limit;
- **process count**: ``RLIMIT_NPROC`` is not enforced for root, so when polyinstruct runs as
  root each worker drops to a uid of its own (no files, no home) before running the program;
  then NPROC counts exactly that program's processes, nothing on disk is writable to it
  except its folder, and leftovers are found by uid. Not as root, the namespaces are made in
  a user namespace (``unshare --user --map-root-user``) and NPROC bounds the user's processes;
- **cleanup**: the program's first process is PID 1's child in a fresh PID namespace; when it
  ends (or time is up) PID 1 kills everything left in the namespace.

The namespaces come from util-linux ``unshare`` (``--net --mount --pid --fork --kill-child``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from polyinstruct.errors import ConfigError

log = logging.getLogger(__name__)

INIT = Path(__file__).with_name("_sandbox_init.py")
OUTPUT_CAP = 4096  # characters of stdout/stderr kept per sample


class SandboxUnavailableError(ConfigError):
    """The isolation the sandbox promises cannot be set up on this machine."""


@dataclass
class Limits:
    cpu_s: int = 10          # RLIMIT_CPU, seconds of CPU time
    wall_s: float = 20.0     # wall clock (a loaded machine runs slower than the CPU limit says)
    memory_mb: int = 2048    # RLIMIT_AS
    file_mb: int = 16        # RLIMIT_FSIZE
    nproc: int = 16          # RLIMIT_NPROC (processes of the sample's uid)
    nofile: int = 64         # RLIMIT_NOFILE
    tmpfs_mb: int = 64       # size of each throwaway tmpfs


@dataclass
class Outcome:
    status: str              # passed | failed | timeout | error (error: the sandbox itself failed)
    returncode: int | None
    detail: str
    stdout: str = ""
    stderr: str = ""
    wall_s: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _uid_base() -> int:
    # uids no account uses; distinct per process so that concurrent evaluations do not share counts
    return 3_000_000 + (os.getpid() % 100_000) * 64


class Sandbox:
    """Runs programs one process each, ``workers`` at a time (see the module docstring)."""

    def __init__(self, limits: Limits | None = None, *, workers: int = 2,
                 allow_no_network_isolation: bool = False):
        if workers < 1:
            raise ConfigError(f"sandbox workers must be >= 1, got {workers}", field="workers")
        self.limits = limits or Limits()
        self.workers = workers
        self.root = os.geteuid() == 0
        self._slots = list(range(workers))
        self._lock = threading.Lock()
        self.namespaces = self._probe()
        if not self.namespaces:
            if not allow_no_network_isolation:
                raise SandboxUnavailableError(
                    "cannot create a network namespace here (util-linux `unshare --net` failed: "
                    f"{self._probe_error}); generated code is not run without network isolation unless you "
                    "pass --allow-no-network-isolation (docs/evaluation.md, 'Running generated code')")
            log.warning("sandbox WITHOUT network, mount and PID isolation (--allow-no-network-isolation): %s",
                        self._probe_error)
            out = self.run("import collections, math, typing\nprint('ok')", _namespaces=False)
            if not (out.passed and out.stdout.strip() == "ok"):
                raise SandboxUnavailableError(
                    "the sandbox cannot run Python here without namespaces (the sample's own uid cannot read the "
                    f"interpreter's files under {sys.base_prefix}?): {out.detail} {out.stderr.strip()[-300:]}")
        self.isolation = "namespaces" if self.namespaces else "rlimits-only"

    # -- setup ----------------------------------------------------------------------------------
    def _prefix(self) -> list[str]:
        exe = shutil.which("unshare") or "unshare"
        flags = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
        if not self.root:
            flags = ["--user", "--map-root-user", *flags]
        return [exe, *flags, "--"]

    def _probe(self) -> bool:
        self._probe_error = ""
        if shutil.which("unshare") is None:
            self._probe_error = "util-linux unshare is not installed"
            return False
        out = self.run("print('ok')", _namespaces=True)
        if out.status == "passed" and out.stdout.strip() == "ok":
            return True
        self._probe_error = (out.detail + " " + out.stderr.strip()[-300:]).strip()
        return False

    # -- running --------------------------------------------------------------------------------
    def run(self, program: str, *, _namespaces: bool | None = None) -> Outcome:
        """Run one program; its outcome (never raises for what the program does)."""
        with self._lock:
            slot = self._slots.pop() if self._slots else 0
        try:
            return self._run(program, slot, self.namespaces if _namespaces is None else _namespaces)
        finally:
            with self._lock:
                self._slots.append(slot)

    def _run(self, program: str, slot: int, namespaces: bool) -> Outcome:
        uid = _uid_base() + slot if self.root else None
        work = None
        if not namespaces:
            work = tempfile.mkdtemp(prefix="polyinstruct-sandbox-")
        req = {"program": program, "limits": asdict(self.limits), "uid": uid, "namespaces": namespaces,
               "work": os.path.join(work, "work") if work else None}
        r, w = os.pipe()
        cmd = [*(self._prefix() if namespaces else []), sys.executable, "-I", "-S", str(INIT), str(w)]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    pass_fds=(w,), start_new_session=True, cwd="/")
        except OSError as e:
            os.close(r)
            os.close(w)
            return Outcome("error", None, f"sandbox could not start: {e}")
        os.close(w)
        try:
            stdout, stderr = proc.communicate(json.dumps(req).encode(), timeout=self.limits.wall_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        finally:
            with os.fdopen(r) as f:
                status_line = f.read()
            if work:
                shutil.rmtree(work, ignore_errors=True)
        out_s = stdout.decode("utf-8", "replace")[-OUTPUT_CAP:]
        err_s = stderr.decode("utf-8", "replace")[-OUTPUT_CAP:]
        try:
            st = json.loads(status_line.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Outcome("error", proc.returncode, f"sandbox gave no status (exit {proc.returncode})",
                           out_s, err_s)
        return Outcome(st["status"], st.get("returncode"), st.get("detail", ""), out_s, err_s, st.get("wall_s"))

    def run_many(self, programs: Iterable[str], progress=None) -> list[Outcome]:
        """Run programs ``workers`` at a time; outcomes in input order."""
        programs = list(programs)
        out: list[Outcome | None] = [None] * len(programs)
        with ThreadPoolExecutor(self.workers) as pool:
            futs = {pool.submit(self.run, p): i for i, p in enumerate(programs)}
            from concurrent.futures import as_completed

            for done, fut in enumerate(as_completed(futs), 1):
                out[futs[fut]] = fut.result()
                if progress is not None:
                    progress(done, len(programs))
        return out  # type: ignore[return-value]
