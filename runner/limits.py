"""Operating-system limits a load test runs into, checked before it starts.

The seed experiment died with "Too many open files": every open connection
is a file descriptor. We raise the soft limit to what the concurrency needs
and, when the hard limit is too low, stop with a message that names the fix.
"""

from __future__ import annotations

from .errors import EnvironmentLimitError

#: Descriptors kept free for the interpreter, logs, reports and the built-in target's pipes.
FD_HEADROOM = 64


def ensure_open_files(concurrency: int) -> int:
    """Make sure ``concurrency`` sockets can be open at once; return the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise
        return -1
    need = concurrency + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        raise EnvironmentLimitError(
            f"concurrency {concurrency} needs {need} open files, but the hard limit (ulimit -Hn) is {hard}. "
            f"Raise it (e.g. 'ulimit -n {need}' as root, or nofile in /etc/security/limits.conf) "
            f"or lower the concurrency."
        )
    target = need if hard == resource.RLIM_INFINITY else max(need, min(hard, 65536))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target
