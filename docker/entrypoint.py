#!/usr/bin/env python3
"""PID 1 of the edge node image: give the cache volume to the node's user, then run the node as that user.

Started as root (the image's default user), it

1. creates the cache folder (``$EE_CACHE_DIR``, default ``/edge_node/_local_cache``) if needed and gives every
   entry in it that the node user does not own to that user: a fresh named volume, a host folder, or a Ratio1
   volume holding root-owned files all become writable by the node (DECISIONS 23);
2. starts the command (default ``python3 device.py``) as the unprivileged user ``edge`` in a child process;
3. stays PID 1: it forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the child, reaps every
   zombie (processes that the node's children leave behind are re-parented to PID 1), and exits with the
   child's exit status (128 + signal number when a signal ended it).

Started as another user (Kubernetes ``runAsUser``, ``docker run --user``), it skips step 1 and only checks
that the cache is writable, so a mis-mounted volume gives a clear message instead of a traceback. Standard
library only; no tini needed (and none is available offline).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

NODE_USER = "edge"
DEFAULT_CACHE = "/edge_node/_local_cache"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def say(message: str) -> None:
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)


def give_to(root: Path, uid: int, gid: int) -> int:
    """``chown -R uid:gid root``, touching only entries with another owner; returns how many changed."""
    changed = 0
    for path in [root, *root.rglob("*")]:
        try:
            st = path.lstat()
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(path, uid, gid)
                changed += 1
        except FileNotFoundError:  # removed while we walked
            continue
    return changed


def prepare_cache(cache: Path, user: pwd.struct_passwd | None) -> None:
    """As root: create the cache and give it to the node user. As anyone else: check it is writable."""
    if user is not None:
        cache.mkdir(parents=True, exist_ok=True)
        changed = give_to(cache, user.pw_uid, user.pw_gid)
        if changed:
            say(f"gave {changed} entr{'y' if changed == 1 else 'ies'} of {cache} to {user.pw_name}")
        return
    if not cache.is_dir():
        try:
            cache.mkdir(parents=True)
        except OSError as exc:
            sys.exit(f"entrypoint: cannot create the cache folder {cache}: {exc}; mount a writable volume there")
    if not os.access(cache, os.W_OK | os.X_OK):
        st = cache.stat()
        sys.exit(
            f"entrypoint: the cache folder {cache} (owner {st.st_uid}:{st.st_gid}) is not writable by uid "
            f"{os.getuid()}: start the container as root (the default) so it can fix the owner, or give the "
            "volume to this user (Kubernetes: securityContext.fsGroup)"
        )


def main(argv: list[str]) -> int:
    command = argv or ["python3", "device.py"]
    cache = Path(os.environ.get("EE_CACHE_DIR") or DEFAULT_CACHE)
    user = None
    if os.getuid() == 0:
        try:
            user = pwd.getpwnam(NODE_USER)
        except KeyError:
            say(f"no user {NODE_USER!r} in this image: running as root")
    prepare_cache(cache, user)
    options: dict = {}
    if user is not None:
        options = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    received: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if child is not None and child.returncode is None:
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    try:
        child = subprocess.Popen(command, **options)
    except OSError as exc:
        say(f"cannot start {' '.join(command)}: {exc}")
        return 127
    if received:  # a signal that came before the child existed
        forward(received[-1], None)
    while True:
        try:
            pid, status = os.wait()  # reaps the child and any orphan re-parented to PID 1
        except ChildProcessError:
            return 0
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            code = child.returncode
            return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
