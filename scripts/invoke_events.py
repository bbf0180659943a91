#!/usr/bin/env python3
"""Prove every sample event in events/ with `cargo lambda invoke`, against the built binary.

Usage (from anywhere; `make test-events` runs it after `cargo test`):

    .venv/bin/python scripts/invoke_events.py [--binary target/debug/flagfn]
                                              [--cargo-lambda .venv/bin/cargo-lambda]

What it does:
  1. starts cargo-lambda's Lambda emulator on a free port without letting it build or run
     anything (`cargo lambda watch --only-lambda-apis`);
  2. runs the already-built binary against the emulator's Runtime API, as Lambda would
     (`AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:<port>/.rt/flagfn`, function `flagfn`),
     over examples/flags.json with no Kinesis stream (events off);
  3. for every events/*.json, `cargo lambda invoke flagfn --data-file events/<file>`,
     and checks the answer against tests/fixtures/events_expected.json exactly as
     tests/events.rs does: for function URL events the statusCode, isBase64Encoded,
     the nosniff header and a JSON body; for every event each JSON pointer -> value
     (types compared strictly: true is not 1, 12 is not 12.0); errors (>= 400) must carry
     a message. An event without an expectation, or an expectation without an event, fails.

Prints one line per event; exits 1 naming the file and field of every mismatch. Both
processes it starts are stopped (by their PIDs) on exit, also on failure or Ctrl-C.
`sam local invoke -e events/<file>` needs Docker; this is the Docker-free equivalent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "flagfn"
READY_TIMEOUT = 60.0  # seconds for the emulator to listen / the binary to start polling
INVOKE_TIMEOUT = 30.0  # seconds per `cargo lambda invoke`

_children: list[subprocess.Popen] = []


class Failure(Exception):
    """A check failed; the message names the file and field."""


def stop_children() -> None:
    """Stops the processes this script started, by PID: SIGTERM, then SIGKILL."""
    while _children:
        child = _children.pop()
        if child.poll() is not None:
            continue
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def on_signal(signum, _frame):
    stop_children()
    sys.exit(128 + signum)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
    _children.append(child)
    return child


def wait_listening(port: int, child: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise Failure(f"cargo lambda watch exited with {child.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise Failure(f"cargo lambda watch did not listen on 127.0.0.1:{port} within {READY_TIMEOUT:.0f} s:\n{tail(log)}")


def function_env(port: int) -> dict[str, str]:
    """The binary's environment: Lambda's variables, the example flags, events off. Nothing
    AWS- or flagfn-related is inherited, so a developer's shell cannot change the result."""
    inherited = ("AWS_", "KINESIS_", "FLAGS_", "EVENTS_", "CACHE_", "MANIFEST_", "FRESHNESS_", "BIND_ADDR", "RUST_LOG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{port}/.rt/{FUNCTION}",
        AWS_LAMBDA_FUNCTION_NAME=FUNCTION,
        AWS_LAMBDA_FUNCTION_VERSION="1",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        FLAGS_FILE=str(ROOT / "examples" / "flags.json"),
        RUST_LOG="warn",
    )
    return env


def resolve(pointer: str, value):
    """RFC 6901 JSON pointer lookup; raises KeyError when the path does not exist."""
    if pointer == "":
        return value
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise KeyError(pointer)
    return value


def same(a, b) -> bool:
    """JSON equality as serde_json's `Value ==`: bools are not numbers, ints not floats."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def check(name: str, output, want: dict) -> tuple[str, int]:
    """Checks one answer; returns a short summary and how many pointers were checked."""
    body = output
    summary = "direct invoke"
    if "status" in want:
        if not isinstance(output, dict):
            raise Failure(f"{name}: the answer is not a function URL response: {output!r}")
        if not same(output.get("statusCode"), want["status"]):
            raise Failure(f"{name}: statusCode {output.get('statusCode')!r}, expected {want['status']!r}")
        if output.get("isBase64Encoded") is not False:
            raise Failure(f"{name}: isBase64Encoded {output.get('isBase64Encoded')!r}, expected false")
        headers = output.get("headers") or {}
        if headers.get("x-content-type-options") != "nosniff":
            raise Failure(f"{name}: headers.x-content-type-options {headers.get('x-content-type-options')!r}")
        text = output.get("body")
        if not isinstance(text, str):
            raise Failure(f"{name}: no body string: {output!r}")
        try:
            body = None if text == "" else json.loads(text)
        except json.JSONDecodeError as e:
            raise Failure(f"{name}: body is not JSON ({e}): {text!r}") from e
        summary = f"status {output['statusCode']}"
    status = want.get("status")
    if isinstance(status, int) and status >= 400:
        message = body.get("error", body.get("errorDetails")) if isinstance(body, dict) else None
        if not isinstance(message, str):
            raise Failure(f"{name}: {status} without an error message: {body!r}")
    pointers = want.get("body", {})
    for pointer, expected in pointers.items():
        try:
            actual = resolve(pointer, body)
        except KeyError:
            shown = json.dumps(body)
            shown = shown if len(shown) <= 300 else shown[:300] + "..."
            raise Failure(f"{name} {pointer}: missing, expected {json.dumps(expected)}; body: {shown}")
        if not same(actual, expected):
            raise Failure(f"{name} {pointer}: {json.dumps(actual)}, expected {json.dumps(expected)}")
    return summary, len(pointers)


def invoke(cargo_lambda: str, port: int, name: str):
    args = [cargo_lambda, "lambda", "invoke", FUNCTION, "--invoke-address", "127.0.0.1",
            "--invoke-port", str(port), "--data-file", str(Path("events") / name)]
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=INVOKE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{name}: cargo lambda invoke gave no answer within {INVOKE_TIMEOUT:.0f} s") from e
    if done.returncode != 0:
        said = done.stderr.strip() or done.stdout.strip()
        raise Failure(f"{name}: cargo lambda invoke failed ({done.returncode}): {said}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise Failure(f"{name}: the answer is not JSON ({e}): {done.stdout!r}") from e


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/debug/flagfn", help="the built function (default: %(default)s)")
    parser.add_argument("--cargo-lambda", default=str(ROOT / ".venv" / "bin" / "cargo-lambda"),
                        help="the cargo-lambda executable (default: the project's .venv)")
    args = parser.parse_args()
    binary = Path(args.binary)
    binary = binary if binary.is_absolute() else (Path.cwd() / binary)
    if not binary.is_file():
        binary = ROOT / args.binary
    if not binary.is_file() or not os.access(binary, os.X_OK):
        print(f"invoke_events: no executable {args.binary}; run `cargo build` (or `cargo test`) first", file=sys.stderr)
        return 2
    if not Path(args.cargo_lambda).is_file():
        print(f"invoke_events: no {args.cargo_lambda}; run `make venv` to install cargo-lambda", file=sys.stderr)
        return 2

    expected = json.loads((ROOT / "tests" / "fixtures" / "events_expected.json").read_text())
    described = {k for k in expected if k.endswith(".json")}
    files = sorted(p.name for p in (ROOT / "events").glob("*.json"))
    problems = [f"{name}: no expectation in tests/fixtures/events_expected.json" for name in files
                if name not in described]
    problems += [f"{name}: expected in tests/fixtures/events_expected.json but not in events/"
                 for name in sorted(described - set(files))]

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logs = Path(tempfile.mkdtemp(prefix="invoke-events-"))
    port = free_port()
    watch_log, function_log = logs / "cargo-lambda-watch.log", logs / "flagfn.log"
    try:
        watch = start([args.cargo_lambda, "lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1",
                       "--invoke-port", str(port)], watch_log)
        wait_listening(port, watch, watch_log)
        function = start([str(binary)], function_log, env=function_env(port))
        print(f"cargo lambda watch on 127.0.0.1:{port} (pid {watch.pid}); {binary} (pid {function.pid})")
        for name in files:
            if name not in described:
                print(f"FAIL {name}: no expectation")
                continue
            try:
                summary, checked = check(name, invoke(args.cargo_lambda, port, name), expected[name])
                print(f"ok   {name:36} {summary}, {checked} field(s) as expected")
            except Failure as failure:
                problems.append(str(failure))
                print(f"FAIL {failure}")
            if function.poll() is not None:
                problems.append(f"{name}: flagfn exited with {function.returncode}:\n{tail(function_log)}")
                break
    except Failure as failure:
        problems.append(str(failure))
    finally:
        stop_children()

    return finish(problems, logs, f"all {len(files)} events answered as expected through cargo lambda invoke")


def finish(problems, logs, success):
    """Prints the problems (keeping the logs) or `success` (removing them); the exit code."""
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(f"logs: {logs}", file=sys.stderr)
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    print(success)
    return 0


if __name__ == "__main__":
    sys.exit(main())
