"""The bubblewrap sandbox for model-written code: hostile programs are contained and fail (docs/evaluation.md).

Every attack runs through ``sandbox_driver.py`` as the current user and, when that is root, a second
time as uid 65534 (``setpriv``), with the interpreter each can use (this one, or the system's
``python3``): containment must hold for both. The attacks of one user run as one batch (fast).
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from polyinstruct.eval import sandbox as sb_mod
from polyinstruct.eval import sandbox_setup
from polyinstruct.eval.sandbox import Limits, Sandbox, SandboxUnavailableError

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("sandbox_driver.py")
SECRET_VAR = "POLYINSTRUCT_TEST_SECRET"
NOBODY = 65534
LIMITS = {"cpu_s": 2, "wall_s": 8, "memory_mb": 256, "nproc": 8}


def _traversable(path: str) -> bool:
    parts = os.path.realpath(path).split(os.sep)
    return all(os.stat(os.sep.join(parts[:j]) or "/").st_mode & 0o001 for j in range(1, len(parts)))


def _unprivileged_python() -> str | None:
    for exe in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(exe) and _traversable(exe) and _traversable(os.path.join(ROOT, "polyinstruct")):
            return exe
    return None


def _users() -> list[str]:
    # Not root: the current user is the unprivileged case. Root: root, and uid 65534 too.
    return ["self", "uid65534"] if os.geteuid() == 0 and shutil.which("setpriv") and _unprivileged_python() \
        else ["self"]


def _drive(user: str, programs: dict, limits: dict, env: dict, timeout: float = 240) -> dict:
    cmd = [sys.executable, str(DRIVER)]
    if user == "uid65534":
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", _unprivileged_python(),
               str(DRIVER)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
    p = subprocess.run(cmd, input=json.dumps({"programs": programs, "limits": limits}), capture_output=True,
                       text=True, env=env, timeout=timeout, cwd="/")
    if p.returncode != 0:
        msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        if "SandboxUnavailableError" in msg and os.environ.get("CI") != "true":
            pytest.skip(msg)
        raise AssertionError(f"driver failed as {user}: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _listener(kind: str, where: str | None = None) -> socket.socket:
    if kind == "tcp":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(where)
        if not where.startswith("\0"):
            os.chmod(where, 0o777)
    s.listen(8)
    s.setblocking(False)
    return s


def _accepted(s: socket.socket) -> bool:
    try:
        s.accept()
        return True
    except BlockingIOError:
        return False


def _marker_processes(marker: str) -> list[str]:
    left = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                    left.append(d)
            except OSError:
                pass
    return left


def _connect(family: str, address) -> str:
    return (f"import socket\ns = socket.socket(socket.{family})\n"
            f"try:\n    s.settimeout(2); s.connect({address!r}); s.sendall(b'leak'); print('CONNECTED')\n"
            "except OSError as e:\n    print('refused', type(e).__name__, e)\n")


@pytest.fixture(scope="module", params=_users())
def attacked(request, tmp_path_factory):
    """Run every attack as one batch for one user; the host's view before and after."""
    user = request.param
    tag = uuid.uuid4().hex[:10]
    home = tmp_path_factory.mktemp(f"home-{user}")
    secret, secret_text = f"sk-{uuid.uuid4().hex}", f"private-{uuid.uuid4().hex}"
    (home / ".secret").write_text(secret_text)
    os.chmod(home / ".secret", 0o600)
    if user == "uid65534":
        os.chown(home, NOBODY, NOBODY)
        os.chown(home / ".secret", NOBODY, NOBODY)
    host_tmp = f"/tmp/polyinstruct-escape-{tag}"
    run_lock = f"/run/lock/polyinstruct-escape-{tag}"
    marker = f"polyinstruct-survivor-{tag}"
    socks = {"home": _listener("unix", str(home / "agent.sock")),
             "tmp": _listener("unix", f"/tmp/polyinstruct-sock-{tag}"),
             "abstract": _listener("unix", f"\0polyinstruct-abstract-{tag}"),
             "tcp": _listener("tcp")}
    port = socks["tcp"].getsockname()[1]
    touch_loop = "for j in range(0, len(b), 4096):\n            b[j] = 1\n"
    programs = {
        "ok": "import math, typing, hashlib, re\nprint(math.factorial(5))",
        "assert_fails": "assert 1 == 2",
        "sys_exit": "import sys\nsys.exit(0)",
        "raise_systemexit": "raise SystemExit",
        "os_exit": "import os\nos._exit(0)",
        "environ": (f"import os\nfound = []\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
                    "        for f in ('environ', 'cmdline'):\n            try:\n"
                    "                data = open(f'/proc/{p}/{f}', 'rb').read()\n            except OSError:\n"
                    f"                continue\n            if b'{SECRET_VAR}' in data:\n"
                    "                found.append(data)\nprint(found, dict(os.environ))\n"),
        "home_secret": (f"try:\n    print(open({str(home / '.secret')!r}).read())\n"
                        "except OSError as e:\n    print('denied', e)\n"),
        "plant": f"open({str(home / 'planted.txt')!r}, 'w').write('x')",
        "umount_tmp": ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                       "print('umount', libc.umount2(b'/tmp', 2), ctypes.get_errno())\n"
                       f"open({host_tmp!r}, 'w').write('x')\n"),
        "run_lock": f"open({run_lock!r}, 'w').write('x')",
        "many_files": "for i in range(150):\n    open(f'f{i}', 'wb').write(b'x' * 1024 * 1024)",
        "host_procs": ("import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
                       "print([open(f'/proc/{p}/cmdline', 'rb').read()[:80] for p in pids])\nprint(len(pids))"),
        "ifaces": "import socket\nprint(socket.if_nameindex())",
        "mem_children": ("import os, time\nkids = []\nfor i in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
                         "        b = bytearray(200 * 1024 * 1024)\n        " + touch_loop +
                         "        time.sleep(10)\n        os._exit(0)\n    kids.append(pid)\n"
                         "for k in kids:\n    os.waitpid(k, 0)\n"),
        "ten_gb": ("import os\nkids = []\nfor i in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
                   "        try:\n            b = bytearray(2560 * 1024 * 1024)\n            os._exit(0)\n"
                   "        except MemoryError:\n            os._exit(3)\n    kids.append(pid)\n"
                   "assert all(os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) == 0 for k in kids), 'no memory'\n"),
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "kill_parent": ("import os, signal, ctypes\nr = []\n"
                        f"for pid in (os.getppid(), 1, {os.getpid()}):\n    try:\n"
                        "        os.kill(pid, signal.SIGKILL); r.append('sent')\n"
                        "    except OSError as e:\n        r.append(type(e).__name__)\n"
                        "libc = ctypes.CDLL(None, use_errno=True)\n"
                        "r.append(('ptrace', libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno()))\nprint(r)\n"),
        "unix_home": _connect("AF_UNIX", str(home / "agent.sock")),
        "unix_host_tmp": _connect("AF_UNIX", f"/tmp/polyinstruct-sock-{tag}"),
        "unix_abstract": _connect("AF_UNIX", f"\0polyinstruct-abstract-{tag}"),
        "tcp_loopback": _connect("AF_INET", ("127.0.0.1", port)),
        "nested_userns": ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                          "print('unshare', libc.unshare(0x10000000 | 0x20000), ctypes.get_errno())"),
        "dev_shm": "open('/dev/shm/x', 'w').write('x')",
        "background": ("import subprocess, sys\n"
                       f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'], "
                       "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"),
        "every_fd": ("import os\nfake = b'S\\n' + b'0' * 32 + b'\\n'\nfor p in os.listdir('/proc'):\n"
                     "    if not p.isdigit():\n        continue\n    try:\n"
                     "        fds = os.listdir(f'/proc/{p}/fd')\n    except OSError:\n        continue\n"
                     "    for fd in fds:\n        try:\n"
                     "            with open(f'/proc/{p}/fd/{fd}', 'wb', buffering=0) as f:\n"
                     "                f.write(fake)\n        except OSError:\n            pass\n"
                     "for fd in range(1024):\n    try:\n        os.write(fd, fake)\n    except OSError:\n"
                     "        pass\n"),
        "cpu_loop": "while True:\n    pass",
    }
    t0 = time.monotonic()
    try:
        res = _drive(user, programs, LIMITS, {"HOME": str(home), SECRET_VAR: secret})
        time.sleep(0.3)
        host = {"connected": {k: _accepted(s) for k, s in socks.items()},
                "planted": (home / "planted.txt").exists(), "host_tmp": os.path.exists(host_tmp),
                "run_lock": os.path.exists(run_lock), "survivors": _marker_processes(marker)}
    finally:
        for s in socks.values():
            s.close()
    for name, o in res["outcomes"].items():  # the record of every attack (pytest -s shows it)
        print(f"[{user}] {name}: {o['status']} ({o['reason'] or o['stdout'].strip()[-100:]})")
    print(f"[{user}] host after: {host}")
    return {"user": user, "out": res["outcomes"], "host": host, "secret": secret, "secret_text": secret_text,
            "uid": res["uid"], "seconds": time.monotonic() - t0}


def test_runs_as_the_intended_user(attacked):
    assert attacked["uid"] == (NOBODY if attacked["user"] == "uid65534" else os.geteuid())


def test_plain_programs_pass_and_fail(attacked):
    out = attacked["out"]
    assert out["ok"]["status"] == "passed" and out["ok"]["stdout"].strip() == "120"
    assert out["assert_fails"]["status"] == "failed" and "AssertionError" in out["assert_fails"]["stderr"]


@pytest.mark.parametrize("name", ["sys_exit", "raise_systemexit", "os_exit"])
def test_exiting_early_never_passes(attacked, name):
    o = attacked["out"][name]
    assert o["status"] == "failed", o


def test_parent_environment_is_not_readable(attacked):
    o = attacked["out"]["environ"]
    assert o["status"] == "passed"  # ran to the end and found nothing
    assert attacked["secret"] not in o["stdout"] and SECRET_VAR not in o["stdout"]


def test_home_is_invisible(attacked):
    o = attacked["out"]["home_secret"]
    assert "denied" in o["stdout"] and attacked["secret_text"] not in o["stdout"]
    assert attacked["out"]["plant"]["status"] == "failed" and not attacked["host"]["planted"]


def test_host_tmp_and_run_lock_are_not_writable(attacked):
    o = attacked["out"]["umount_tmp"]
    assert "umount -1" in o["stdout"]  # no capability to unmount anything
    assert not attacked["host"]["host_tmp"]
    assert attacked["out"]["run_lock"]["status"] == "failed" and not attacked["host"]["run_lock"]
    assert attacked["out"]["dev_shm"]["status"] == "failed"
    assert "Read-only file system" in attacked["out"]["dev_shm"]["stderr"]


def test_tmpfs_size_holds_against_many_files(attacked):
    o = attacked["out"]["many_files"]
    assert o["status"] == "failed" and "No space left on device" in o["stderr"]


def test_host_processes_and_interfaces_are_invisible(attacked):
    o = attacked["out"]["host_procs"]
    assert o["status"] == "passed"
    assert int(o["stdout"].split()[-1]) <= 3  # bwrap's reaper, the sample's init and itself
    assert "pytest" not in o["stdout"] and "sandbox_driver" not in o["stdout"]
    assert attacked["out"]["ifaces"]["stdout"].strip() == "[(1, 'lo')]"


def test_no_socket_of_the_host_is_reachable(attacked):
    for name in ("unix_home", "unix_host_tmp", "unix_abstract", "tcp_loopback"):
        o = attacked["out"][name]
        assert "CONNECTED" not in o["stdout"] and "refused" in o["stdout"], (name, o)
    assert attacked["host"]["connected"] == {"home": False, "tmp": False, "abstract": False, "tcp": False}


def test_memory_is_bounded_across_processes(attacked):
    o = attacked["out"]["mem_children"]   # 4 x 200 MB under memory_mb=256
    assert o["status"] == "failed" and "memory" in o["reason"], o
    o = attacked["out"]["ten_gb"]         # 4 x 2.5 GB
    assert o["status"] == "failed" and "no memory" in o["stderr"], o


def test_fork_bomb_is_contained(attacked):
    o = attacked["out"]["fork_bomb"]
    assert o["status"] == "failed" and o["wall_s"] < 5, o


def test_parent_cannot_be_killed_or_traced(attacked):
    o = attacked["out"]["kill_parent"]
    assert o["status"] == "passed", o
    # the evaluator's pid does not exist in the sample's PID namespace; PTRACE_ATTACH fails (-1)
    assert "ProcessLookupError" in o["stdout"] and "('ptrace', -1, 1)" in o["stdout"]  # EPERM (seccomp)


def test_background_children_do_not_survive(attacked):
    assert attacked["out"]["background"]["status"] == "passed"
    assert attacked["host"]["survivors"] == []


def test_writing_every_fd_cannot_forge_a_pass_or_abort(attacked):
    o = attacked["out"]["every_fd"]
    assert o["status"] == "failed" and "status channel" in o["reason"], o


def test_no_nested_user_namespace(attacked):
    # a new user + mount namespace would give back capabilities to mount an unlimited tmpfs: refused
    o = attacked["out"]["nested_userns"]
    assert o["status"] == "passed" and o["stdout"].split()[1] == "-1", o


def test_cpu_loop_times_out(attacked):
    assert attacked["out"]["cpu_loop"]["status"] == "timeout"


def test_attacks_run_fast(attacked):
    assert attacked["seconds"] < 60, attacked["seconds"]


@pytest.mark.parametrize("user", _users())
def test_evaluator_memory_stays_flat_under_a_print_flood(user):
    # 200 MB of lines, then one 300 MB line, read as it comes: the evaluator keeps 4 KB of it.
    res = _drive(user, {"flood": "while True:\n    print('x' * 9999)", "one_line": "print('x' * (300 << 20))"},
                 {"output_mb": 200, "memory_mb": 1024, "wall_s": 30, "cpu_s": 20}, {})
    for name in ("flood", "one_line"):
        o = res["outcomes"][name]
        assert o["status"] == "failed" and "output limit" in o["reason"], o
        assert len(o["stdout"]) <= sb_mod.OUTPUT_CAP
    grew = res["peak_rss_mb"] - res["base_rss_mb"]
    print(f"{user}: evaluator RSS {res['base_rss_mb']:.1f} MB before, peak {res['peak_rss_mb']:.1f} MB")
    assert grew < 10, res


def test_venv_under_a_home_cache_folder_works(tmp_path):
    """The layout that broke the old sandbox: Python under a home folder, a venv under ~/.cache."""
    venv = tmp_path / "home" / ".cache" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    code = ("from polyinstruct.eval.sandbox import Sandbox\ns = Sandbox(workers=1)\n"
            "o = s.run('import sys\\nprint(sys.executable)')\nprint(o.status, o.stdout.strip(), s.binds)")
    p = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, cwd="/")
    assert p.returncode == 0, p.stderr[-2000:]
    status, exe, _ = p.stdout.split(" ", 2)
    assert status == "passed" and exe == str(venv / "bin" / "python")  # the venv's interpreter, under /tmp


# -- when it cannot run: one line naming the cause and the fix ------------------------------------

def test_sandbox_is_usable_in_ci():
    """CI installs bubblewrap (.ci/run): there the sandbox must work, never be skipped."""
    try:
        Sandbox(Limits(wall_s=10), workers=1)
    except SandboxUnavailableError as e:
        if os.environ.get("CI") == "true":
            raise AssertionError(f"the sandbox must be usable in CI: {e}") from None
        pytest.skip(str(e))


def test_other_bwrap_failures_are_not_blamed_on_namespaces(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: execvp /nowhere/python: No such file or directory' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxUnavailableError, match="bwrap failed .*execvp /nowhere/python"):
        Sandbox(bwrap=str(fake), workers=1)


def test_missing_bwrap_says_which_package(monkeypatch):
    monkeypatch.setattr(sb_mod.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap") as e:
        Sandbox()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("sysctl,value,fix", [
    ("user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces="),
    ("kernel/unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"),
    ("kernel/apparmor_restrict_unprivileged_userns", "1", "kernel.apparmor_restrict_unprivileged_userns=0"),
    (None, None, "seccomp"),
])
def test_user_namespaces_off_names_the_sysctl(tmp_path, monkeypatch, sysctl, value, fix):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace, likely because the kernel "
                    "does not allow non-privileged user namespaces.' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sandbox_setup, "_sysctl", lambda path: value if path == sysctl else None)
    with pytest.raises(SandboxUnavailableError) as e:
        Sandbox(bwrap=str(fake), workers=1)
    msg = str(e.value)
    assert fix in msg and "No permissions to creating new namespace" in msg and "\n" not in msg
