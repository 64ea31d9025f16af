"""Landlock (Linux >= 5.13) through its three system calls: the fallback sandbox where bubblewrap cannot
create namespaces (e.g. unprivileged containers).

The worker applies it to itself before importing any submitted code: reading only beneath the paths it is
given (Python, the environment, the suite's packages, the submission and its weights, its own /proc entry),
writing only beneath its scratch folder, no TCP bind/connect (ABI >= 4), no abstract unix sockets or signals
outside its domain (ABI >= 6). Landlock also denies ptrace (and /proc/<pid>/mem) of processes outside the
domain. Not covered: UDP, connecting to existing unix socket files, the process list.
"""

from __future__ import annotations

import ctypes
import os
import struct

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same number on every arch
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1 << 0, 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 where Landlock is unavailable."""
    try:
        r = _libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (AttributeError, OSError):
        return 0
    return int(r) if r > 0 else 0


def _fs_rights(abi: int) -> int:
    rights = FS_ABI1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _check(r: int, what: str) -> int:
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock {what}: {os.strerror(err)}")
    return r


def restrict(read_only: list[str], read_write: list[str]) -> dict[str, object]:
    """Confine this process (and its future children) for good; returns what was applied."""
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    handled = _fs_rights(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("<QQQ", handled, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _check(
        _libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
        "create_ruleset",
    )
    try:
        ro = EXECUTE | READ_FILE | READ_DIR
        for paths, rights in ((read_only, ro), (read_write, handled)):
            for path in paths:
                try:
                    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a path that does not exist grants nothing
                try:
                    allowed = rights & handled
                    if not os.path.isdir(path):
                        allowed &= FILE_RIGHTS
                    rule = ctypes.create_string_buffer(struct.pack("<Qi", allowed, pfd), 12)
                    _check(
                        _libc.syscall(
                            ctypes.c_long(SYS_ADD_RULE),
                            ctypes.c_int(fd),
                            ctypes.c_int(RULE_PATH_BENEATH),
                            rule,
                            ctypes.c_uint32(0),
                        ),
                        f"add_rule {path}",
                    )
                finally:
                    os.close(pfd)
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(
            _libc.syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)),
            "restrict_self",
        )
    finally:
        os.close(fd)
    return {"abi": abi, "tcp_denied": bool(net), "scoped": bool(scoped)}
