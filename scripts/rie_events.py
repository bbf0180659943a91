#!/usr/bin/env python3
"""Run every sample event through AWS's own Lambda Runtime Interface Emulator, with
evaluation events streaming to Kinesis (moto), and report what Lambda would bill.

Usage (from anywhere; `make test-rie` runs it after `cargo test`):

    .venv/bin/python scripts/rie_events.py [--binary target/debug/flagfn] [--rounds 3]
                                           [--env NAME=VALUE ...]

What it does:
  1. starts moto on a free port and creates a Kinesis stream;
  2. starts `aws-lambda-rie` from the installed SAM CLI (the emulator `sam local invoke`
     runs inside its container) on 127.0.0.1 with the built binary as `bootstrap`, over
     examples/flags.json, events to that stream, default flush settings
     (EVENTS_FLUSH_MIN / EVENTS_FLUSH_MAX_AGE_MS, or --env overrides);
  3. invokes every events/*.json `--rounds` times and checks each answer against
     tests/fixtures/events_expected.json exactly as scripts/invoke_events.py does;
  4. checks that the internal extension registered (for INVOKE);
  5. sends SIGTERM to the emulator (as Lambda does at shutdown), which passes it on to the
     runtime; waits for both to exit;
  6. reads the whole stream back and checks that every recorded event reached it: the
     function's shutdown account says delivered == recorded and dropped == 0, the stream
     holds exactly `recorded` records, each invocation's request id carries as many
     events as its answer reports evaluations (where the answer says), and no event
     belongs to an unknown request;
  7. prints the emulator's INIT REPORT duration and the median invocation Duration (which,
     in Lambda, includes the extension's after-response work: the event flush).

Exits 1 naming every problem. Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import invoke_events as ie  # noqa: E402  (the same checks, the same process handling)

ROOT = ie.ROOT
STREAM = "flagfn-rie-events"
REGION = "us-east-1"
INVOKE_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0


def default_rie() -> str:
    found = sorted(glob.glob(str(ROOT / ".venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")))
    return found[-1] if found else ""


def wait_port(port: int, child: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + ie.READY_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise ie.Failure(f"{what} exited with {child.returncode}:\n{ie.tail(log)}")
        try:
            with ie.socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ie.Failure(f"{what} did not listen on 127.0.0.1:{port}:\n{ie.tail(log)}")


def kinesis(endpoint: str):
    import boto3  # installed with moto

    return boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def read_stream(client) -> list[dict]:
    events = []
    for shard in client.list_shards(StreamName=STREAM)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10000)
            if not page["Records"]:
                break
            events.extend(json.loads(r["Data"]) for r in page["Records"])
            iterator = page.get("NextShardIterator")
    return events


def function_env(moto_endpoint: str, overrides: list[str]) -> dict[str, str]:
    inherited = ("AWS_", "KINESIS_", "FLAGS_", "EVENTS_", "CACHE_", "MANIFEST_", "FRESHNESS_", "BIND_ADDR", "RUST_LOG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(
        FLAGS_FILE=str(ROOT / "examples" / "flags.json"),
        KINESIS_STREAM_NAME=STREAM,
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        RUST_LOG="info",
    )
    for item in overrides:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def invoke(port: int, name: str):
    data = (ROOT / "events" / name).read_bytes()
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT) as answer:
            text = answer.read()
    except OSError as e:
        raise ie.Failure(f"{name}: the emulator gave no answer: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ie.Failure(f"{name}: the answer is not JSON ({e}): {text[:300]!r}") from e


def evaluations(output) -> int | None:
    """How many evaluations an answer reports, where its shape says; None where it does not."""
    body = output
    if isinstance(output, dict) and "statusCode" in output:
        text = output.get("body") or ""
        body = json.loads(text) if text else None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("results"), dict):
        return len(body["results"])
    if isinstance(body.get("flags"), list):
        return len(body["flags"])
    if "flag_key" in body or ("key" in body and ("reason" in body or "errorCode" in body)):
        return 1
    if body.get("status") == "ok":
        return 0
    return None


def parse_log(text: str) -> dict:
    init = re.findall(r"INIT REPORT\(durationMs: ([0-9.]+)\)", text)
    reports = re.findall(r"REPORT RequestId: (\S+)\s+(?:Init Duration: [0-9.]+ ms\s+)?Duration: ([0-9.]+) ms", text)
    starts = re.findall(r"START RequestId: (\S+)", text)
    registered = re.findall(r"Internal agent (\S+) \(\S+\) registered, subscribed to \[([A-Z, ]*)\]", text)
    account = None
    for line in text.splitlines():
        if "events at shutdown" in line and line.lstrip().startswith("{"):
            account = json.loads(line)
    return {"init": [float(x) for x in init], "durations": [(r, float(d)) for r, d in reports],
            "starts": starts, "registered": registered, "account": account}


def run(args, logs: Path) -> list[str]:
    problems: list[str] = []
    expected = json.loads((ROOT / "tests" / "fixtures" / "events_expected.json").read_text())
    files = sorted(p.name for p in (ROOT / "events").glob("*.json"))
    missing = [f for f in files if f not in expected]
    if missing:
        return [f"{name}: no expectation in tests/fixtures/events_expected.json" for name in missing]

    moto_port, rie_port, api_port = ie.free_port(), ie.free_port(), ie.free_port()
    moto_log, rie_log = logs / "moto.log", logs / "rie.log"
    moto = ie.start([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], moto_log)
    wait_port(moto_port, moto, moto_log, "moto_server")
    endpoint = f"http://127.0.0.1:{moto_port}"
    client = kinesis(endpoint)
    client.create_stream(StreamName=STREAM, ShardCount=2)

    rie = ie.start([args.rie, "--log-level", "info", "--runtime-interface-emulator-address", f"127.0.0.1:{rie_port}",
                    "--runtime-api-address", f"127.0.0.1:{api_port}", str(args.binary)], rie_log,
                   env=function_env(endpoint, args.env))
    wait_port(rie_port, rie, rie_log, "aws-lambda-rie")
    print(f"aws-lambda-rie on 127.0.0.1:{rie_port} (pid {rie.pid}), moto on {endpoint} (pid {moto.pid})")

    invoked: list[tuple[str, int | None]] = []
    for round_ in range(args.rounds):
        for name in files:
            try:
                output = invoke(rie_port, name)
                summary, checked = ie.check(name, output, expected[name])
                invoked.append((name, evaluations(output)))
                if round_ == 0:
                    print(f"ok   {name:36} {summary}, {checked} field(s) as expected")
            except ie.Failure as failure:
                problems.append(str(failure))
                invoked.append((name, None))
                print(f"FAIL {failure}")

    rie.send_signal(signal.SIGTERM)
    try:
        rie.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        problems.append(f"aws-lambda-rie did not exit within {EXIT_TIMEOUT:.0f} s of SIGTERM")
    time.sleep(0.2)  # the emulator logs the runtime's last lines as it goes
    log = parse_log(rie_log.read_text(errors="replace"))
    problems += check_run(log, invoked, read_stream(client))
    report(log)
    return problems


def check_run(log: dict, invoked: list[tuple[str, int | None]], events: list[dict]) -> list[str]:
    problems = []
    if ("flagfn-events", "INVOKE") not in log["registered"]:
        problems.append(f"the internal extension did not register for INVOKE: {log['registered']}")
    if len(log["starts"]) != len(invoked):
        problems.append(f"{len(invoked)} invocations but {len(log['starts'])} START lines")
    account = log["account"]
    if account is None:
        return problems + ["no shutdown account in the function's log (was SIGTERM passed on?)"]
    recorded, delivered, dropped = account["recorded"], account["delivered"], account["dropped"]
    print(f"events: recorded {recorded}, delivered {delivered}, dropped {dropped}, in the stream {len(events)}")
    if (delivered, dropped) != (recorded, 0) or len(events) != recorded:
        problems.append(f"not every event reached Kinesis: {account}, {len(events)} in the stream")
    per_request: dict[str, int] = {}
    for event in events:
        per_request[event.get("request_id", "")] = per_request.get(event.get("request_id", ""), 0) + 1
    unknown = set(per_request) - set(log["starts"])
    if unknown:
        problems.append(f"events of requests never invoked: {sorted(unknown)[:5]}")
    for request_id, (name, count) in zip(log["starts"], invoked):
        if count is not None and per_request.get(request_id, 0) != count:
            problems.append(f"{name}: {count} evaluation(s) answered, {per_request.get(request_id, 0)} event(s) stored")
    return problems


def report(log: dict) -> None:
    durations = [d for _, d in log["durations"]]
    if log["init"]:
        print(f"INIT REPORT: {log['init'][0]:.1f} ms")
    if len(durations) > 1:
        warm = durations[1:]  # the first also carries the init phase
        print(f"invocations: {len(durations)}; median Duration {statistics.median(warm):.2f} ms "
              f"(warm, p90 {sorted(warm)[int(0.9 * (len(warm) - 1))]:.2f} ms, max {max(warm):.2f} ms); "
              f"first {durations[0]:.2f} ms")


def missing_inputs(args, tool: str, build_hint: str) -> bool:
    """Resolves args.binary against the repository; says what is missing (and how to get
    it) when the function or aws-lambda-rie is not there."""
    binary = Path(args.binary)
    args.binary = binary if binary.is_absolute() else (ROOT / binary)
    if not args.binary.is_file() or not os.access(args.binary, os.X_OK):
        print(f"{tool}: no executable {binary}; run {build_hint} first", file=sys.stderr)
        return True
    if not args.rie or not Path(args.rie).is_file():
        print(f"{tool}: no aws-lambda-rie; run `make venv` to install the SAM CLI", file=sys.stderr)
        return True
    return False


def run_and_finish(run, args, log_prefix: str, success: str) -> int:
    """`run(args, logs)` with a fresh log directory, every child stopped however it ends
    (signals included); the exit code and report of `invoke_events.finish`."""
    signal.signal(signal.SIGTERM, ie.on_signal)
    signal.signal(signal.SIGINT, ie.on_signal)
    logs = Path(tempfile.mkdtemp(prefix=log_prefix))
    try:
        problems = run(args, logs)
    except ie.Failure as failure:
        problems = [str(failure)]
    finally:
        ie.stop_children()
    return ie.finish(problems, logs, success)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/debug/flagfn", help="the built function (default: %(default)s)")
    parser.add_argument("--rie", default=default_rie(), help="aws-lambda-rie (default: the SAM CLI's, in .venv)")
    parser.add_argument("--rounds", type=int, default=3, help="invocations of each event (default: %(default)s)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for the function, e.g. EVENTS_FLUSH_MAX_AGE_MS=0")
    args = parser.parse_args()
    if missing_inputs(args, "rie_events", "`cargo build` (or `cargo test`)"):
        return 2
    return run_and_finish(
        run,
        args,
        "rie-events-",
        "every sample event answered as expected under aws-lambda-rie; every recorded event reached Kinesis",
    )


if __name__ == "__main__":
    sys.exit(main())
