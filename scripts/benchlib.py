"""Helpers shared by the benchmark scripts (scripts/bench-*.py)."""
import socket, subprocess, time


def wait_tcp(host, port, timeout=15.0):
    """True once a TCP connect to host:port succeeds, False after `timeout` s."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((host, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_proc(p):
    """SIGTERM, then SIGKILL if the process has not ended within 5 s."""
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
