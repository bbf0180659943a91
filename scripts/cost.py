#!/usr/bin/env python3
"""`make cost`: what flagfn costs per million evaluations at 1, 100 and 10,000 requests/s.

Every figure comes from scripts/cost_inputs.json (prices and measured sizes and
durations) and template.yaml (the function's memory size), so the table can be
re-derived after any of them changes. The table in docs/cost.md is this script's
output verbatim; scripts/test_cost.py (run by `make test`) fails if they differ.

Model (one line per component; docs/cost.md explains each):
- environments = max(1, ceil(rate x billed duration)): the fewest warm environments
  that can carry the rate (Lambda keeps at least that many; more only adds the
  per-environment terms below).
- Lambda: one request per `evaluations_per_request` evaluations; Duration billed per
  started millisecond of the median (it includes the after-response flush).
- Kinesis on-demand (the template's mode): each record billed in whole KiB; with KPL
  aggregation (the template's default) a record holds as many events as one flush has,
  up to the measured `kpl_events_per_record`; summary mode sends one record per hot flag
  per flush per environment; the stream hour is a fixed cost, shared by whatever flows
  through it.
- Kinesis provisioned (the alternative for steady high traffic): shard hours for the
  shards the ingest needs (1 MiB/s and 1,000 records/s each, at least one) and PUT
  payload units of 25 KB (an aggregated record is at most one).
- DynamoDB: one eventually consistent read per hot flag per TTL per environment, and at
  most one manifest read per 5 s per environment (the change manifest).
- CloudWatch Logs: one EMF emit per environment per METRICS_INTERVAL_MS, plus Lambda's
  own per-invocation platform lines (an estimate), which the template's default
  PlatformLogLevel (WARN) does not write.

And, per web client per month: polling the bulk route, against holding a change stream
open on a streaming Lambda function (billed Duration for every second it is open, one
invocation per `stream_function_timeout_s`, one manifest read per second).
"""

import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
MILLION = 1_000_000


def memory_mb(template: Path) -> int:
    match = re.search(r"^\s+MemorySize:\s*(\d+)\s*$", template.read_text(), re.M)
    if not match:
        sys.exit(f"no MemorySize in {template}")
    return int(match.group(1))


def components(i: dict, rate: float, memory_gb: float) -> dict:
    """Dollars per million evaluations at `rate` requests/s, by component."""
    requests = MILLION / i["evaluations_per_request"]
    seconds = requests / rate  # how long a million evaluations take at this rate
    billed_ms = math.ceil(i["handler_duration_ms_median"])
    envs = max(1, math.ceil(rate * billed_ms / 1000))
    per_env_rate = rate * i["evaluations_per_request"] / envs
    flushes_per_s = max(per_env_rate / i["events_flush_min"], min(per_env_rate, 1 / i["events_flush_max_age_s"]))
    events_per_flush = per_env_rate / flushes_per_s
    summary_records = envs * flushes_per_s * seconds * min(i["hot_flags"], events_per_flush)
    unit = i["kinesis_on_demand_billing_unit_bytes"]
    kib = lambda size: math.ceil(size / unit) * unit  # noqa: E731 - billed size of one record
    # Full events: one per record, or packed — as many per record as a flush holds.
    per_record = 1
    record_bytes = i["kinesis_record_bytes_full"]
    if i["events_kpl_aggregation"]:
        per_record = max(1, min(math.floor(events_per_flush), i["kpl_events_per_record"]))
        record_bytes = per_record * i["kpl_record_bytes"] / i["kpl_events_per_record"]
    full_records = MILLION / per_record
    ingest = full_records * record_bytes / seconds  # bytes/s while a million evaluations flow
    shards = max(1, math.ceil(ingest / i["kinesis_shard_ingest_bytes_per_s"]),
                 math.ceil(full_records / seconds / i["kinesis_shard_records_per_s"]))
    put_units = full_records * math.ceil(record_bytes / i["kinesis_put_payload_unit_bytes"])
    platform = i["platform_log_bytes_per_invocation"] if i["platform_log_level"] in ("DEBUG", "INFO") else 0
    reads = envs * seconds * (i["hot_flags"] / i["cache_ttl_s"] + 1 / i["manifest_check_interval_s"])
    emf_bytes = envs * seconds / i["metrics_interval_s"] * i["emf_bytes_per_emit"]
    return {
        "envs": envs,
        "Lambda requests": requests / MILLION * i["lambda_price_per_million_requests"],
        "Lambda duration": requests * billed_ms / 1000 * memory_gb * i["lambda_price_per_gb_second_arm64"],
        "Kinesis, full events": full_records * kib(record_bytes) / GIB
        * i["kinesis_on_demand_price_per_gb_ingested"],
        "Kinesis, summary events": summary_records * kib(i["kinesis_record_bytes_summary"]) / GIB
        * i["kinesis_on_demand_price_per_gb_ingested"],
        "Kinesis stream hours": seconds / 3600 * i["kinesis_on_demand_price_per_stream_hour"],
        "provisioned: shard hours": seconds / 3600 * shards * i["kinesis_provisioned_price_per_shard_hour"],
        "provisioned: PUT units": put_units / MILLION * i["kinesis_provisioned_price_per_million_put_units"],
        "DynamoDB reads": reads * i["dynamodb_read_request_units_per_read"] / MILLION
        * i["dynamodb_price_per_million_read_request_units"],
        "CloudWatch Logs, EMF": emf_bytes / GIB * i["cloudwatch_logs_price_per_gb_ingested"],
        "CloudWatch Logs, platform lines*": requests * platform / GIB
        * i["cloudwatch_logs_price_per_gb_ingested"],
    }


def table(i: dict, memory: int) -> str:
    rates = i["rates_per_second"]
    columns = [components(i, rate, memory / 1024) for rate in rates]
    rows = [k for k in columns[0] if k != "envs"]
    width = max(len(r) for r in rows + ["Total, summary events"]) + 2
    head = "".ljust(width) + "".join(f"{f'{r:,} req/s':>14}" for r in rates)
    lines = [
        f"flagfn: US dollars per million evaluations ({memory} MB arm64, "
        f"{i['handler_duration_ms_median']} ms median Duration, {i['hot_flags']} hot flags)",
        "",
        head,
        "".ljust(width) + "".join(f"{str(c['envs']) + ' env':>14}" for c in columns),
    ]
    for row in rows:
        lines.append(row.ljust(width) + "".join(f"{c[row]:>14.4f}" for c in columns))
    provisioned = ("provisioned: shard hours", "provisioned: PUT units")
    on_demand = ("Kinesis, full events", "Kinesis, summary events", "Kinesis stream hours")
    common = [sum(v for k, v in c.items() if k != "envs" and k not in provisioned + on_demand) for c in columns]
    full = [x + c["Kinesis, full events"] + c["Kinesis stream hours"] for x, c in zip(common, columns)]
    summary = [x + c["Kinesis, summary events"] + c["Kinesis stream hours"] for x, c in zip(common, columns)]
    prov = [x + c[provisioned[0]] + c[provisioned[1]] for x, c in zip(common, columns)]
    lines.append("Total, full events".ljust(width) + "".join(f"{v:>14.4f}" for v in full))
    lines.append("Total, summary events".ljust(width) + "".join(f"{v:>14.4f}" for v in summary))
    lines.append("Total, full, provisioned".ljust(width) + "".join(f"{v:>14.4f}" for v in prov))
    packing = (f"KPL aggregation on: up to {i['kpl_events_per_record']} full events "
               f"({i['kinesis_record_bytes_full']} B each) per record"
               if i["events_kpl_aggregation"] else "one full event per record")
    lines += [
        "",
        f"{packing}. Totals count the on-demand stream (the template's mode) or, last line,",
        "a provisioned stream instead (its shard hours and PUT units, not the on-demand rows).",
        f"* estimate, not measured: Lambda's own START/REPORT lines; not written at the "
        f"template's PlatformLogLevel ({i['platform_log_level']}).",
    ]
    return "\n".join(lines)


def client_month(i: dict, memory: int) -> dict:
    """Dollars per web client per month kept up to date: polling the bulk route every
    `poll_intervals_s`, or holding a change stream open on a streaming Lambda function
    (one invocation per connection, billed for as long as it is open)."""
    month = i["seconds_per_month"]
    logs_per_request = i["platform_log_bytes_per_invocation"] / GIB * i["cloudwatch_logs_price_per_gb_ingested"]
    per_poll = (
        i["lambda_price_per_million_requests"] / MILLION
        + math.ceil(i["handler_duration_ms_median"]) / 1000 * memory / 1024 * i["lambda_price_per_gb_second_arm64"]
        + logs_per_request
    )
    rows = {f"polling every {s} s": month / s * per_poll for s in i["poll_intervals_s"]}
    connections = month / i["stream_function_timeout_s"]
    reads = month / i["stream_manifest_read_interval_s"] * i["dynamodb_read_request_units_per_read"]
    stream = {
        "stream: Lambda duration": month * i["stream_function_memory_mb"] / 1024 * i["lambda_price_per_gb_second_arm64"],
        "stream: Lambda requests (reconnects)": connections / MILLION * i["lambda_price_per_million_requests"],
        "stream: manifest reads": reads / MILLION * i["dynamodb_price_per_million_read_request_units"],
        "stream: platform log lines*": connections * logs_per_request,
    }
    rows.update(stream)
    rows["stream: total"] = sum(stream.values())
    rows["_break_even_s"] = month / (rows["stream: total"] / per_poll)
    return rows


def client_table(i: dict, memory: int) -> str:
    rows = client_month(i, memory)
    width = max(len(k) for k in rows) + 2
    lines = [
        "A web client kept up to date: US dollars per client per month "
        f"(polling at {memory} MB; the stream on its own {i['stream_function_memory_mb']} MB function)",
        "",
    ]
    lines += [k.ljust(width) + f"{v:>10.4f}" for k, v in rows.items() if not k.startswith("_")]
    lines += [
        "",
        f"Polling is cheaper than a stream on Lambda unless it polls more often than every "
        f"{rows['_break_even_s']:.2f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    inputs = json.loads((ROOT / "scripts" / "cost_inputs.json").read_text())
    memory = memory_mb(ROOT / "template.yaml")
    print(table(inputs, memory))
    print()
    print(client_table(inputs, memory))


if __name__ == "__main__":
    main()
