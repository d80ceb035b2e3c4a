"""The first process of a sample inside bubblewrap (stdlib only; started by ``polyinstruct.eval.sandbox``).

Run as ``python -I -S -B -c SOURCE STATUS_FD`` inside the sandbox. It reads the request bwrap
copied to ``/tmp/.request`` (``--file``; bwrap closes its own copy of the descriptor) and deletes
it, sets the sample's resource limits on itself, writes ``S`` (started) to STATUS_FD and runs the
program in this process. Only when the program's code returns normally (the HumanEval check
ran to its end) does it write the per-run token that came with the request; ``SystemExit``
(``sys.exit``, ``exit()``), an exception, ``os._exit`` or a signal never reach that line, so
they fail. The harness (sandbox.py) passes a sample only if the status channel holds exactly
``S`` and that token and the process exited 0; anything else the program wrote there fails it.
"""

import json
import os
import resource
import sys
import traceback


def _limits(lim: dict) -> None:
    def both(res: int, value: int, hard: int | None = None) -> None:
        resource.setrlimit(res, (value, value if hard is None else hard))

    both(resource.RLIMIT_CORE, 0)
    # soft -> SIGXCPU (a timeout); the hard limit a second later -> SIGKILL for a program catching it
    both(resource.RLIMIT_CPU, int(lim["cpu_s"]), int(lim["cpu_s"]) + 1)
    both(resource.RLIMIT_AS, int(lim["memory_mb"]) * 1024 * 1024)
    both(resource.RLIMIT_FSIZE, int(lim["file_mb"]) * 1024 * 1024)
    both(resource.RLIMIT_NOFILE, int(lim["nofile"]))
    # counted per (user namespace, uid): this sample's own processes, bwrap's reaper and this one
    both(resource.RLIMIT_NPROC, int(lim["nproc"]) + 2)


def main() -> None:
    status_fd = int(sys.argv[1])
    with open("/tmp/.request", encoding="utf-8") as f:
        req = json.load(f)
    os.unlink("/tmp/.request")
    token = req.pop("token").encode()
    source = req.pop("program")
    _limits(req["limits"])
    sys.argv = ["/tmp/program.py"]
    os.write(status_fd, b"S\n")
    ok, reason = False, ""
    try:
        code = compile(source, "/tmp/program.py", "exec")
        del source
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        ok = True
    except SystemExit as e:
        reason = f"the program exited (SystemExit({e.code!r})) before its check finished"
    except BaseException as e:  # noqa: BLE001 - the program's own failure: report it
        reason = f"{type(e).__name__}: {e}"[:300]
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    if ok:
        os.write(status_fd, token + b"\n")
        os._exit(0)
    try:
        os.write(status_fd, ("F " + reason.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(1)


if __name__ == "__main__":
    main()
