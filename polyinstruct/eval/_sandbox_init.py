"""The first process inside a sandbox (stdlib only; started by ``polyinstruct.eval.sandbox``).

Run as ``python -I -S _sandbox_init.py STATUS_FD`` with a JSON request on stdin
(``program``, ``limits``, ``uid``, ``namespaces``). Inside fresh namespaces it is PID 1 and
(namespace-)root: it mounts throwaway tmpfs over /tmp, /var/tmp and /dev/shm, creates the
working folder in the new /tmp, forks the program's process (resource limits set, privileges
dropped to ``uid`` when one is given, environment emptied), waits for it up to the wall-clock
limit, kills every process that is left, and writes one JSON status line to STATUS_FD.
"""

import ctypes
import json
import os
import resource
import signal
import sys
import time
import traceback

MS_NOSUID, MS_NODEV = 2, 4
PR_SET_NO_NEW_PRIVS = 38


def _mount_tmpfs(libc, target: str, size_mb: int) -> None:
    if not os.path.isdir(target):
        return
    opts = f"size={size_mb}m,mode=1777".encode()
    if libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


MS_BIND, MS_REMOUNT, MS_RDONLY, MS_REC = 4096, 32, 1, 16384


def _mount(libc, src, target: str, fstype, flags: int, data) -> None:
    enc = (lambda x: None if x is None else x.encode())
    if libc.mount(enc(src), target.encode(), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def _expose(libc, paths: list, uid) -> None:
    """Make the interpreter's own files readable to ``uid`` (and nothing else of a private folder).

    When Python lives under a folder others cannot enter (``/root/.pyenv``), that folder is
    covered by an empty tmpfs inside this mount namespace and only the interpreter's folder is
    bind-mounted back, read-only: the program can import the standard library and sees nothing
    else of the private folder.
    """
    if uid is None:
        return
    done = set()
    for i, path in enumerate(paths):
        path = os.path.realpath(path)
        parts = path.split(os.sep)
        blocked = None
        for j in range(2, len(parts) + 1):
            anc = os.sep.join(parts[:j])
            if not os.stat(anc).st_mode & 0o001:
                blocked = anc
                break
        if blocked is None or path in done:
            continue
        stage = f"/tmp/.expose{i}"
        os.makedirs(stage)
        _mount(libc, path, stage, None, MS_BIND | MS_REC, None)
        if blocked not in done:
            _mount(libc, "tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
            done.add(blocked)
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(libc, stage, path, None, MS_BIND | MS_REC, None)
        _mount(libc, None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        libc.umount2(stage.encode(), 2)  # MNT_DETACH
        os.rmdir(stage)
        done.add(path)


def _limit(name: str, value: int, hard: int | None = None) -> None:
    res = getattr(resource, name)
    resource.setrlimit(res, (value, value if hard is None else hard))


def _cpu_used() -> float:
    """CPU seconds used by the waited-for children (the program under test)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _child(req: dict, work: str, status_fd: int) -> None:
    os.close(status_fd)
    lim = req["limits"]
    code = 1
    try:
        os.chdir(work)
        if not req["namespaces"]:
            os.setsid()  # without a PID namespace the process group is what gets killed
        _limit("RLIMIT_CORE", 0)
        # Soft limit -> SIGXCPU (scored "timeout"); the hard limit one second later -> SIGKILL for a
        # program that catches SIGXCPU. With soft == hard the kernel may send SIGKILL first.
        _limit("RLIMIT_CPU", int(lim["cpu_s"]), int(lim["cpu_s"]) + 1)
        _limit("RLIMIT_AS", int(lim["memory_mb"]) * 1024 * 1024)
        _limit("RLIMIT_FSIZE", int(lim["file_mb"]) * 1024 * 1024)
        _limit("RLIMIT_NOFILE", int(lim["nofile"]))
        if lim.get("nproc"):
            _limit("RLIMIT_NPROC", int(lim["nproc"]))
        uid = req.get("uid")
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        try:
            ctypes.CDLL(None).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        os.environ.clear()
        os.environ.update(HOME=work, TMPDIR=work, PATH="/usr/local/bin:/usr/bin:/bin", LANG="C.UTF-8")
        sys.argv = ["program.py"]
        compiled = compile(req["program"], os.path.join(work, "program.py"), "exec")
        exec(compiled, {"__name__": "__main__", "__builtins__": __builtins__})
        code = 0
    except SystemExit as e:
        code = 0 if e.code in (None, 0) else (e.code if isinstance(e.code, int) else 1)
    except BaseException:  # noqa: BLE001 - the program's own failure: report it, exit non-zero
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code & 0xFF)


def _kill_rest(req: dict, child: int) -> None:
    """Kill every process the program left behind."""
    if req["namespaces"] and os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)  # PID 1: every other process of this PID namespace
        except ProcessLookupError:
            pass
        return
    uid = req.get("uid")
    if uid is not None:  # a uid of its own: kill everything running as it
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    try:
        os.killpg(child, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> None:
    status_fd = int(sys.argv[1])
    req = json.loads(sys.stdin.buffer.read())
    lim = req["limits"]
    status = {"status": "error", "returncode": None, "detail": ""}
    try:
        if req["namespaces"]:
            libc = ctypes.CDLL(None, use_errno=True)
            for target in ("/tmp", "/var/tmp", "/dev/shm"):
                _mount_tmpfs(libc, target, int(lim["tmpfs_mb"]))
            _expose(libc, [sys.base_prefix, sys.prefix, os.path.dirname(sys.executable)], req.get("uid"))
            work = "/tmp/work"
        else:
            work = req["work"]
        os.makedirs(work, mode=0o700, exist_ok=True)
        if req.get("uid") is not None:
            os.chown(work, req["uid"], req["uid"])
        start = time.monotonic()
        child = os.fork()
        if child == 0:
            _child(req, work, status_fd)
        deadline = start + float(lim["wall_s"])
        rc = None
        while rc is None:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == child:
                rc = os.waitstatus_to_exitcode(wstatus)
                break
            if pid == 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
        _kill_rest(req, child)
        if rc is None:
            status = {"status": "timeout", "returncode": None,
                      "detail": f"wall-clock limit {lim['wall_s']} s reached"}
        elif rc == 0:
            status = {"status": "passed", "returncode": 0, "detail": ""}
        elif rc < 0:
            sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
            over_cpu = -rc == signal.SIGXCPU or (-rc == signal.SIGKILL and _cpu_used() >= float(lim["cpu_s"]))
            status = {"status": "timeout" if over_cpu else "failed",
                      "returncode": rc, "detail": f"killed by {sig}"}
        else:
            status = {"status": "failed", "returncode": rc, "detail": f"exit status {rc}"}
        status["wall_s"] = round(time.monotonic() - start, 4)
    except BaseException as e:  # noqa: BLE001 - the sandbox itself failed: say so
        status = {"status": "error", "returncode": None, "detail": f"sandbox: {type(e).__name__}: {e}"}
    with os.fdopen(status_fd, "w") as f:
        f.write(json.dumps(status) + "\n")
    # reap what is left (PID 1 must not exit before its children are gone to report cleanly)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break


if __name__ == "__main__":
    main()
