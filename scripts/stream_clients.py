#!/usr/bin/env python3
"""Many clients on the local server's change stream (docs/performance.md).

Starts the real binary on a temporary flags file, opens CLIENTS streams, and measures:
the server's resident memory per connected client, the time from one flags-file edit
until every client has its `refetchEvaluation` message, and the time shutdown takes to
close them all. Fails only past generous bounds (the figures are printed):

    python3 scripts/stream_clients.py --binary target/debug/flagfn [--clients 10000]
"""

import argparse
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# The stated bound: resident memory per connected stream, over the idle server's.
BOUND_BYTES_PER_CLIENT = 32 * 1024
DEADLINE_S = 60.0


def write_flags(path: Path, enabled: bool, version: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        '{"flags":[{"key":"banner","enabled":%s,"rollout_percentage":100,"version":%d}]}'
        % ("true" if enabled else "false", version)
    )
    at = 1_700_000_000 + version
    os.utime(tmp, (at, at))
    tmp.replace(path)


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def start(binary: str, flags: Path, clients: int) -> tuple[subprocess.Popen, str]:
    connections = max(1024, (clients * 4 + 2) // 3 + 64)
    env = {
        **os.environ,
        "FLAGS_FILE": str(flags),
        "BIND_ADDR": "127.0.0.1:0",
        "SERVER_MAX_CONNECTIONS": str(connections),
        "STREAM_MAX_CLIENTS": str(clients),
        "RUST_LOG": "warn",
    }
    for name in ("AWS_LAMBDA_RUNTIME_API", "FLAGS_TABLE", "KINESIS_STREAM_NAME", "EVENTS_FILE", "MANIFEST_TABLE"):
        env.pop(name, None)
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        found = re.search(r"listening on http://([0-9.]+):(\d+)", line)
        if found:
            return proc, f"{found.group(1)}:{found.group(2)}"
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit("flagfn did not start")


def wait_all(selector: selectors.BaseSelector, received: dict, marker: bytes, count: int) -> float:
    """Reads every socket until `count` of them have seen `marker`; returns the seconds taken."""
    started = time.monotonic()
    done = sum(1 for text in received.values() if marker in text)
    while done < count:
        if time.monotonic() - started > DEADLINE_S:
            sys.exit(f"only {done} of {count} clients saw {marker!r} within {DEADLINE_S:.0f} s")
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            before = marker in received[sock]
            received[sock] += chunk
            if not before and marker in received[sock]:
                done += 1
            if not chunk:
                selector.unregister(sock)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/debug/flagfn")
    parser.add_argument("--clients", type=int, default=10_000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.clients + 256:
        # The server (a child) inherits the limit: both ends need a descriptor per client.
        print(f"the open-file limit ({hard}) allows {hard - 256} clients, not {args.clients}")
        args.clients = max(1, hard - 256)
    need = args.clients + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    with tempfile.TemporaryDirectory() as tmp:
        flags = Path(tmp) / "flags.json"
        write_flags(flags, True, 1)
        proc, addr = start(args.binary, flags, args.clients)
        try:
            host, port = addr.split(":")
            body = b'{"context":{"targetingKey":"user-1"}}'
            request = urllib.request.Request(f"http://{addr}/ofrep/v1/evaluate/flags", data=body, method="POST")
            urllib.request.urlopen(request, timeout=10).read()
            time.sleep(0.5)
            idle = rss_bytes(proc.pid)

            selector = selectors.DefaultSelector()
            received: dict = {}
            opened = time.monotonic()
            # In batches of 100, each answered before the next: the listen backlog is 128,
            # and a connection past it waits a second for its SYN to be sent again.
            for start_at in range(0, args.clients, 100):
                for _ in range(min(100, args.clients - start_at)):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.settimeout(10)
                    sock.connect((host, int(port)))
                    sock.sendall(b"GET /ofrep/v1/stream HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n")
                    sock.setblocking(False)
                    received[sock] = b""
                    selector.register(sock, selectors.EVENT_READ)
                wait_all(selector, received, b"flagfn change stream", len(received))
            open_s = time.monotonic() - opened
            time.sleep(0.5)
            connected = rss_bytes(proc.pid)
            per_client = (connected - idle) / args.clients

            write_flags(flags, False, 2)
            edited = time.monotonic()
            wait_all(selector, received, b"refetchEvaluation", args.clients)
            fan_out = time.monotonic() - edited

            proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            code = proc.wait(timeout=DEADLINE_S)
            stop_s = time.monotonic() - stopping
            wait_all(selector, received, b"0\r\n\r\n", args.clients)
            for sock in received:
                sock.close()
        finally:
            if proc.poll() is None:
                proc.kill()
    mib = 1024 * 1024
    print(
        f"{args.clients} change-stream clients: opened in {open_s:.1f} s; server RSS {idle / mib:.1f} MiB idle, "
        f"{connected / mib:.1f} MiB connected = {per_client / 1024:.1f} KiB per client; "
        f"edit → every client notified in {fan_out * 1000:.0f} ms; shutdown closed them all in {stop_s * 1000:.0f} ms "
        f"(exit {code})"
    )
    if per_client > BOUND_BYTES_PER_CLIENT:
        sys.exit(f"{per_client:.0f} bytes per client is over the stated {BOUND_BYTES_PER_CLIENT}")
    if code != 0:
        sys.exit(f"flagfn exited with {code}")


if __name__ == "__main__":
    main()
