#!/usr/bin/env python3
"""Cold starts of the built function under AWS's Runtime Interface Emulator, with the
flags in DynamoDB and events to Kinesis (both moto), as deployed: INIT, and the first
invocation with an empty cache.

Usage (`make cold-start` runs it on the release build):

    .venv/bin/python scripts/cold_start.py [--binary target/release/flagfn] [--starts 7]
                                           [--event url-evaluate-get.json]

Each of --starts rounds starts a fresh `aws-lambda-rie` with the binary as `bootstrap`
(FLAGS_TABLE and KINESIS_STREAM_NAME set, nothing cached), sends one event, checks the
answer against tests/fixtures/events_expected.json, stops the emulator with SIGTERM and
reads its INIT REPORT and the invocation's REPORT Duration. The table holds
examples/flags.json, written item by item as boto3 writes native attributes (what the
Python service did). Prints every round and the medians; exits 1 naming any problem.
Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import invoke_events as ie  # noqa: E402
import rie_events as rie  # noqa: E402

ROOT = ie.ROOT
TABLE = "flagfn-cold-start"


def seed(endpoint: str) -> None:
    """The flags table (partition key `key`) holding examples/flags.json, and the stream."""
    import boto3  # installed with moto

    args = dict(endpoint_url=endpoint, region_name=rie.REGION, aws_access_key_id="test", aws_secret_access_key="test")
    dynamodb = boto3.resource("dynamodb", **args)
    table = dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}])
    flags = json.loads((ROOT / "examples" / "flags.json").read_text(), parse_float=Decimal)["flags"]
    for flag in flags:
        table.put_item(Item=flag)
    rie.kinesis(endpoint).create_stream(StreamName=rie.STREAM, ShardCount=1)


def function_env(endpoint: str) -> dict[str, str]:
    env = rie.function_env(endpoint, [f"FLAGS_TABLE={TABLE}"])
    del env["FLAGS_FILE"]
    return env


def one_start(args, endpoint: str, logs: Path, round_: int, want: dict) -> tuple[float, float]:
    """(INIT REPORT ms, first invocation's Duration ms) of one fresh environment."""
    rie_port, api_port = ie.free_port(), ie.free_port()
    log_path = logs / f"rie-{round_}.log"
    emulator = ie.start([args.rie, "--log-level", "info", "--runtime-interface-emulator-address",
                         f"127.0.0.1:{rie_port}", "--runtime-api-address", f"127.0.0.1:{api_port}",
                         str(args.binary)], log_path, env=function_env(endpoint))
    rie.wait_port(rie_port, emulator, log_path, "aws-lambda-rie")
    output = rie.invoke(rie_port, args.event)
    ie.check(args.event, output, want)
    emulator.send_signal(signal.SIGTERM)
    try:
        emulator.wait(timeout=rie.EXIT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise ie.Failure(f"aws-lambda-rie did not exit within {rie.EXIT_TIMEOUT:.0f} s of SIGTERM") from e
    time.sleep(0.2)
    log = rie.parse_log(log_path.read_text(errors="replace"))
    if not log["init"] or not log["durations"]:
        raise ie.Failure(f"round {round_}: no INIT REPORT or REPORT line:\n{ie.tail(log_path)}")
    return log["init"][0], log["durations"][0][1]


def run(args, logs: Path) -> list[str]:
    want = json.loads((ROOT / "tests" / "fixtures" / "events_expected.json").read_text())[args.event]
    moto_port = ie.free_port()
    moto_log = logs / "moto.log"
    moto = ie.start([str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], moto_log)
    rie.wait_port(moto_port, moto, moto_log, "moto_server")
    endpoint = f"http://127.0.0.1:{moto_port}"
    seed(endpoint)
    inits, firsts = [], []
    for round_ in range(args.starts):
        init, first = one_start(args, endpoint, logs, round_, want)
        inits.append(init)
        firsts.append(first)
        print(f"start {round_ + 1}: INIT {init:.1f} ms, first invocation (cold cache, GetItem) {first:.2f} ms")
    print(f"median of {args.starts}: INIT {statistics.median(inits):.1f} ms "
          f"(range {min(inits):.1f}-{max(inits):.1f}), first invocation {statistics.median(firsts):.2f} ms "
          f"(range {min(firsts):.2f}-{max(firsts):.2f})")
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/flagfn", help="the built function (default: %(default)s)")
    parser.add_argument("--rie", default=rie.default_rie(), help="aws-lambda-rie (default: the SAM CLI's, in .venv)")
    parser.add_argument("--starts", type=int, default=7, help="cold starts to measure (default: %(default)s)")
    parser.add_argument("--event", default="url-evaluate-get.json", help="the event of each first invocation")
    args = parser.parse_args()
    if rie.missing_inputs(args, "cold_start", "`cargo build --release --bin flagfn`"):
        return 2
    return rie.run_and_finish(run, args, "cold-start-", "every cold start answered as expected")


if __name__ == "__main__":
    sys.exit(main())
