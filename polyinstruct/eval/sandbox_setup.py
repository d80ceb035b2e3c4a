"""What bwrap needs to run a sample (used by ``polyinstruct.eval.sandbox``, docs/evaluation.md).

- ``interpreter_mounts``: the folders to bind read-only so that this interpreter runs in an
  otherwise empty root, wherever it lives (pyenv, venv, conda, system);
- ``seccomp_filter``: a classic-BPF program for ``bwrap --seccomp`` that fails ``ptrace`` and its
  relatives (bwrap's reaper inside the sandbox runs as the same uid as the sample);
- ``diagnose``: one line naming why bwrap cannot start here and the fix.
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
import sys
import sysconfig
from glob import glob
from pathlib import Path


# -- what the interpreter needs -----------------------------------------------------------------

def _resolve(path: str, links: dict[str, str], depth: int = 0) -> str:
    """The real path of ``path``, recording each symlink met on the way (dest -> target) in ``links``."""
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt) and depth < 40:
            target = os.readlink(nxt)
            links[nxt] = target
            cur = _resolve(os.path.normpath(os.path.join(cur, target)), links, depth + 1)
        else:
            cur = nxt
    return cur


def _shared_libraries(files: list[str]) -> set[str]:
    ldd = shutil.which("ldd")
    if ldd is None or not files:
        return {p for p in ("/lib", "/lib64", "/usr/lib", "/usr/lib64") if os.path.exists(p)}
    out = subprocess.run([ldd, *files], capture_output=True, text=True, timeout=60, env={"LC_ALL": "C"}).stdout
    libs = set()
    for line in out.splitlines():
        line = line.strip()
        path = line.split("=>", 1)[1].strip() if "=>" in line else line
        path = path.split(" (", 1)[0].strip()
        if path.startswith("/"):
            libs.add(path)
    return libs


def interpreter_mounts(executable: str = sys.executable) -> tuple[list[str], dict[str, str]]:
    """(folders/files to bind read-only at the same place, symlinks to recreate) for ``executable``.

    The prefixes of this interpreter (a venv's and its base's), the executable's folder and
    its real folder, the folders of every shared library ``ldd`` lists for the interpreter and
    its extension modules (``lib-dynload``), and ``/etc/ld.so.cache``.
    """
    real_exe = os.path.realpath(executable)
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(executable), os.path.dirname(real_exe), "/etc/ld.so.cache"}
    dynload = sysconfig.get_config_var("DESTSHARED") or ""
    ext = sorted(glob(os.path.join(dynload, "*.so"))) if os.path.isdir(dynload) else []
    if dynload:
        paths.add(dynload)
    for lib in _shared_libraries([real_exe, *ext]):
        paths.add(os.path.dirname(lib))
        paths.add(os.path.dirname(os.path.realpath(lib)))
    links: dict[str, str] = {}
    reals = sorted({_resolve(os.path.abspath(p), links) for p in paths if os.path.exists(p)})
    binds: list[str] = []
    for r in reals:
        if not any(r == b or r.startswith(b.rstrip("/") + "/") for b in binds):
            binds.append(r)
    under = (lambda d: any(d == b or d.startswith(b.rstrip("/") + "/") for b in binds))
    return binds, {d: t for d, t in sorted(links.items()) if not under(d)}


# -- seccomp: no ptrace of the sandbox's other processes (bwrap's reaper runs as the same uid) ------

_AUDIT = {"x86_64": [(0xC000003E, (101, 310, 311, 438)), (0x40000003, (26, 347, 348, 438))],
          "aarch64": [(0xC00000B7, (117, 270, 271, 438))]}   # ptrace, process_vm_readv/writev, pidfd_getfd


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """A classic-BPF seccomp program (for ``bwrap --seccomp``) failing ptrace and its relatives with EPERM."""
    arches = _AUDIT.get(machine or platform.machine())
    if not arches:
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1   # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    prog: list[tuple] = [(ld, 0, 0, 4)]        # seccomp_data.arch
    for i, (arch, nrs) in enumerate(arches):
        block = [(ld, 0, 0, 0)]                # seccomp_data.nr
        if i == 0 and arch == 0xC000003E:
            block.append((jge, "DENY", 0, 0x40000000))   # x32 calls
        block += [(jeq, "DENY", 0, nr) for nr in nrs] + [(ret, 0, 0, allow)]
        prog += [(jeq, 0, len(block), arch)] + block
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    out = b""
    for pc, (code, jt, jf, k) in enumerate(prog):
        jt = len(prog) - 1 - pc - 1 if jt == "DENY" else jt
        out += struct.pack("=HBBI", code, jt, jf, k)
    return out


# -- explaining why it cannot run -----------------------------------------------------------------

def _sysctl(path: str) -> str | None:
    try:
        return Path("/proc/sys", path).read_text().strip()
    except OSError:
        return None


def diagnose(bwrap_stderr: str) -> str:
    """One line: why bwrap could not make its namespaces here, and the fix."""
    said = next((ln.strip() for ln in bwrap_stderr.splitlines() if ln.startswith("bwrap:")),
                bwrap_stderr.strip().splitlines()[-1] if bwrap_stderr.strip() else "no message")
    if not any(w in said.lower() for w in ("namespace", "uid map", "gid map", "setgroups", "operation not permitted")):
        return f"the code sandbox cannot start: bwrap failed ({said})"
    if _sysctl("user/max_user_namespaces") == "0":
        cause = "user namespaces are off (user.max_user_namespaces = 0); fix: sysctl -w user.max_user_namespaces=10000"
    elif _sysctl("kernel/unprivileged_userns_clone") == "0":
        cause = ("unprivileged user namespaces are off (kernel.unprivileged_userns_clone = 0); "
                 "fix: sysctl -w kernel.unprivileged_userns_clone=1")
    elif _sysctl("kernel/apparmor_restrict_unprivileged_userns") == "1":
        cause = ("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1); "
                 "fix: an AppArmor profile allowing userns for /usr/bin/bwrap, or "
                 "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    else:
        cause = ("user namespaces are refused here (in a container: its seccomp/AppArmor profile; "
                 "allow unshare(CLONE_NEWUSER), e.g. docker run --security-opt seccomp=unconfined)")
    return f"the code sandbox cannot start: {cause} (bwrap said: {said})"
