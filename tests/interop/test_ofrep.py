#!/usr/bin/env python3
"""OFREP interop: the real OpenFeature Python SDK and its OFREP provider against flagfn.

Starts the built binary as a local server over tests/interop/flags.json, points
`openfeature-provider-ofrep` at it and checks, through the SDK's public API only, the
values, reasons, variants, metadata and error codes an application would see.

    .venv/bin/python tests/interop/test_ofrep.py [--binary target/debug/flagfn]

One line per check; exit status 1 if any check fails (2 if the server does not start).
Expected split outcomes are computed here from the bucketing formulas (docs/flag-format.md), independently of
the Rust code.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FLAGS_FILE = HERE / "flags.json"
STARTUP_TIMEOUT_S = 30.0


# --- the bucketing formulas, re-implemented -------------------------------------------------


def h(s: str) -> int:
    return struct.unpack("<I", hashlib.md5(s.encode("utf-8")).digest()[:4])[0]


def in_rollout(user: str, key: str, pct: float) -> bool:
    if pct <= 0:
        return False
    if pct >= 100:
        return True
    return h(f"{user}:{key}") % 100 < pct


def split(user: str, key: str, variants: list[tuple[str, float]]) -> str:
    v = h(f"{user}:{key}_variant") / 4294967295.0
    cumulative = 0.0
    for name, allocation in variants:
        cumulative += allocation
        if v < cumulative:
            return name
    return variants[-1][0]


# --- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The flagfn binary as a local server; always stopped by `stop()`."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.base_url = ""

    def start(self) -> None:
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = free_port()
            self.base_url = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "FLAGS_FILE": str(FLAGS_FILE),
                "BIND_ADDR": f"127.0.0.1:{port}",
                "EVENTS_FILE": str(self.workdir / "events.jsonl"),
                "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
            }
            for var in ("AWS_LAMBDA_RUNTIME_API", "FLAGS_TABLE", "KINESIS_STREAM_NAME"):
                env.pop(var, None)
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [str(self.binary)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
                )
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = f"server exited with status {self.proc.returncode}"
                    break
                try:
                    with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as r:
                        if r.status == 200:
                            return
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                last_error = f"/health not 200 within {STARTUP_TIMEOUT_S:.0f} s"
            self.stop()
        raise RuntimeError(f"{last_error}; server log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- checks ------------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def expect(details: FlagEvaluationDetails, **want: object) -> None:
    """Compares fields of the SDK's evaluation details (value, reason, variant,
    error_code, and `metadata` as a subset of flag_metadata)."""
    problems = []
    for field, expected in want.items():
        if field == "metadata":
            actual = dict(details.flag_metadata or {})
            for k, v in expected.items():  # type: ignore[union-attr]
                if k not in actual or actual[k] != v or type(actual[k]) is not type(v):
                    problems.append(f"flag_metadata[{k!r}] = {actual.get(k, '<absent>')!r}, want {v!r}")
            continue
        actual = getattr(details, field)
        if field == "value":
            same = actual == expected and type(actual) is type(expected)
        else:
            same = actual == expected
        if not same:
            problems.append(f"{field} = {actual!r}, want {expected!r}")
    if problems:
        raise CheckFailed("; ".join(problems) + f"  [details: {details}]")


def ctx(targeting_key: str | None = None, **attributes: object) -> EvaluationContext:
    return EvaluationContext(targeting_key=targeting_key, attributes=attributes)


USERS = [f"user-{i}" for i in range(40)]


def checks(client: OpenFeatureClient, base_url: str):
    """Yields (name, callable) pairs."""

    # Boolean flag, targeting through context attributes (Python targeting_rules).
    def bool_context_targeted():
        d = client.get_boolean_details("premium-feature", False, ctx("dave", plan="premium"))
        expect(d, value=True, reason=Reason.TARGETING_MATCH, variant="on", error_code=None,
               metadata={"flag_id": "premium-feature-2026", "version": 4})
        assert_value(client.get_boolean_value("premium-feature", False, ctx("dave", plan="premium")), True)

    def bool_context_not_targeted():
        d = client.get_boolean_details("premium-feature", True, ctx("dave", plan="free"))
        expect(d, value=False, reason=Reason.DEFAULT, variant="off", error_code=None,
               metadata={"flag_id": "premium-feature-2026", "version": 4})
        d = client.get_boolean_details("premium-feature", True, ctx("dave"))  # attribute absent
        expect(d, value=False, reason=Reason.DEFAULT, variant="off")

    # Boolean flag, targeting through the targetingKey (individual `targets`).
    def bool_targeting_key_targeted():
        for user in ("alice", "carol"):
            d = client.get_boolean_details("early-access", False, ctx(user))
            expect(d, value=True, reason=Reason.TARGETING_MATCH, variant="on",
                   metadata={"flag_id": "early-access-program", "version": 2, "rule_id": "target"})

    def bool_targeting_key_not_targeted():
        d = client.get_boolean_details("early-access", True, ctx("dave"))
        expect(d, value=False, reason=Reason.SPLIT, variant="off", error_code=None,
               metadata={"flag_id": "early-access-program", "version": 2})
        if "rule_id" in (d.flag_metadata or {}):
            raise CheckFailed(f"unexpected rule_id in {d.flag_metadata}")

    # Ordered `rules` on a list attribute sent by the SDK.
    def bool_rule_on_list_attribute():
        d = client.get_boolean_details("early-access", False, ctx("dave", groups=["staff", "beta"]))
        expect(d, value=True, reason=Reason.TARGETING_MATCH, variant="on",
               metadata={"flag_id": "early-access-program", "rule_id": "beta-testers"})
        d = client.get_boolean_details("early-access", True, ctx("dave", groups=["staff"]))
        expect(d, value=False, reason=Reason.SPLIT)

    def bool_static_without_context():
        d = client.get_boolean_details("always-on", False)  # SDK sends {"context": {}}
        expect(d, value=True, reason=Reason.STATIC, variant="on", error_code=None,
               metadata={"flag_id": "always-on", "version": 1})

    def bool_rollout_split():
        seen = set()
        for user in USERS:
            want = in_rollout(user, "half-rollout", 50)
            seen.add(want)
            d = client.get_boolean_details("half-rollout", not want, ctx(user))
            expect(d, value=want, reason=Reason.SPLIT, variant="on" if want else "off")
        if seen != {True, False}:
            raise CheckFailed(f"test users do not cover both sides of the rollout: {seen}")

    # String flag: variant `value` strings.
    banner = [("plain", 0.5), ("bold", 0.5), ("gold", 0.0)]
    banner_values = {"plain": "Welcome back", "bold": "WELCOME BACK!", "gold": "Welcome back, valued customer"}

    def string_split():
        seen = set()
        for user in USERS:
            variant = split(user, "banner-text", banner)
            seen.add(variant)
            d = client.get_string_details("banner-text", "code-default", ctx(user, plan="free"))
            expect(d, value=banner_values[variant], reason=Reason.SPLIT, variant=variant, error_code=None,
                   metadata={"flag_id": "exp-banner-text", "version": 3})
        if seen != {"plain", "bold"}:
            raise CheckFailed(f"test users do not cover both variants: {seen}")

    def string_targeting_key():
        d = client.get_string_details("banner-text", "code-default", ctx("bob", plan="free"))
        expect(d, value="Welcome back", reason=Reason.TARGETING_MATCH, variant="plain",
               metadata={"rule_id": "target"})

    def string_context_rule():
        for user in USERS[:5]:
            d = client.get_string_details("banner-text", "code-default", ctx(user, plan="enterprise"))
            expect(d, value="Welcome back, valued customer", reason=Reason.TARGETING_MATCH, variant="gold",
                   metadata={"flag_id": "exp-banner-text", "version": 3, "rule_id": "enterprise-plan"})

    def string_value_api():
        user = USERS[0]
        want = banner_values[split(user, "banner-text", banner)]
        assert_value(client.get_string_value("banner-text", "code-default", ctx(user)), want)

    # Object flag: variant `payload` objects.
    classic = {"steps": 3, "express": False, "theme": "light"}
    express = {"steps": 1, "express": True, "theme": "dark", "wallets": ["apple", "google"]}

    def object_split():
        seen = set()
        for user in USERS:
            variant = split(user, "checkout-config", [("classic", 0.5), ("express", 0.5)])
            seen.add(variant)
            d = client.get_object_details("checkout-config", {"code": "default"}, ctx(user))
            expect(d, value=classic if variant == "classic" else express, reason=Reason.SPLIT, variant=variant,
                   error_code=None, metadata={"flag_id": "exp-checkout-config", "version": 6})
        if seen != {"classic", "express"}:
            raise CheckFailed(f"test users do not cover both variants: {seen}")

    def object_targeting_key():
        d = client.get_object_details("checkout-config", {"code": "default"}, ctx("alice"))
        expect(d, value=express, reason=Reason.TARGETING_MATCH, variant="express",
               metadata={"flag_id": "exp-checkout-config", "version": 6, "rule_id": "target"})

    # Integer and float flags.
    def integer_flag():
        d = client.get_integer_details("page-size", -1, ctx("alice"))
        expect(d, value=50, reason=Reason.TARGETING_MATCH, variant="large")
        for user in USERS[:10]:
            variant = split(user, "page-size", [("small", 0.5), ("large", 0.5)])
            d = client.get_integer_details("page-size", -1, ctx(user))
            expect(d, value={"small": 10, "large": 50}[variant], reason=Reason.SPLIT, variant=variant)
        assert_value(client.get_integer_value("page-size", -1, ctx("alice")), 50)

    def float_flag():
        d = client.get_float_details("discount-rate", -1.0, ctx("alice"))
        expect(d, value=0.15, reason=Reason.TARGETING_MATCH, variant="generous")
        for user in USERS[:10]:
            variant = split(user, "discount-rate", [("modest", 0.5), ("generous", 0.5), ("staff", 0.0)])
            d = client.get_float_details("discount-rate", -1.0, ctx(user))
            expect(d, value={"modest": 0.05, "generous": 0.15}[variant], reason=Reason.SPLIT, variant=variant)
        # A whole-number float (1.0 in the flag) must reach the SDK as a float, or the
        # SDK's type check turns it into TYPE_MISMATCH.
        d = client.get_float_details("discount-rate", -1.0, ctx("dave", plan="staff"))
        expect(d, value=1.0, reason=Reason.TARGETING_MATCH, variant="staff", error_code=None,
               metadata={"rule_id": "staff"})

    # Errors and disabled flags.
    def flag_not_found():
        d = client.get_boolean_details("no-such-flag", True, ctx("alice"))
        expect(d, value=True, reason=Reason.ERROR, error_code=ErrorCode.FLAG_NOT_FOUND)
        d = client.get_string_details("no-such-flag", "code-default", ctx("alice"))
        expect(d, value="code-default", error_code=ErrorCode.FLAG_NOT_FOUND)
        d = client.get_object_details("no-such-flag", {"a": 1}, ctx("alice"))
        expect(d, value={"a": 1}, error_code=ErrorCode.FLAG_NOT_FOUND)
        assert_value(client.get_boolean_value("no-such-flag", True, ctx("alice")), True)

    def disabled_boolean():
        for c in (ctx("alice", plan="premium"), ctx()):  # a disabled flag needs no user
            d = client.get_boolean_details("kill-switch", True, c)
            expect(d, value=False, reason=Reason.DISABLED, variant="off", error_code=None,
                   metadata={"flag_id": "ops-kill-switch", "version": 9})

    def disabled_multivariate():
        d = client.get_string_details("retired-experiment", "code-default", ctx("alice"))
        expect(d, value="code-default", reason=Reason.DISABLED, variant=None, error_code=None,
               metadata={"flag_id": "exp-retired", "version": 5})

    def targeting_key_missing():
        d = client.get_boolean_details("half-rollout", True, ctx(plan="free"))
        expect(d, value=True, reason=Reason.ERROR, error_code=ErrorCode.TARGETING_KEY_MISSING)

    def malformed_flag():
        d = client.get_boolean_details("broken-flag", True, ctx("alice", plan="premium"))
        expect(d, value=True, reason=Reason.ERROR, error_code=ErrorCode.PARSE_ERROR)
        if "unknown operator" not in (d.error_message or ""):
            raise CheckFailed(f"error_message {d.error_message!r} does not say what is wrong")

    def type_mismatch():
        d = client.get_boolean_details("banner-text", True, ctx("alice"))
        expect(d, value=True, reason=Reason.ERROR, error_code=ErrorCode.TYPE_MISMATCH)

    def encoded_key():
        d = client.get_boolean_details("spring sale ü", False, ctx("alice"))
        expect(d, value=True, reason=Reason.STATIC, error_code=None, metadata={"flag_id": "spring sale ü"})

    def context_merging():
        # API-level and client-level contexts merge with the invocation's (SDK behaviour);
        # the server must see the merged attributes and targeting key.
        api.set_evaluation_context(ctx(plan="premium"))
        try:
            scoped = api.get_client("interop-scoped")
            scoped.context = ctx("carol")
            d = scoped.get_boolean_details("premium-feature", False)
            expect(d, value=True, reason=Reason.TARGETING_MATCH)
            d = scoped.get_boolean_details("early-access", False)
            expect(d, value=True, reason=Reason.TARGETING_MATCH, metadata={"rule_id": "target"})
            d = scoped.get_boolean_details("premium-feature", True, ctx(plan="free"))  # invocation wins
            expect(d, value=False, reason=Reason.DEFAULT)
        finally:
            api.clear_evaluation_context()

    return [
        ("boolean: targeted via context attribute (plan=premium) -> true", bool_context_targeted),
        ("boolean: not targeted via context attribute (plan=free / absent) -> false", bool_context_not_targeted),
        ("boolean: targeted via targetingKey (targets) -> true", bool_targeting_key_targeted),
        ("boolean: not targeted via targetingKey (rollout 0) -> false", bool_targeting_key_not_targeted),
        ("boolean: ordered rule on a list attribute (groups contains beta)", bool_rule_on_list_attribute),
        ("boolean: STATIC flag with an empty context", bool_static_without_context),
        ("boolean: 50% rollout matches the MD5 formula for 40 users", bool_rollout_split),
        ("string: variant values match the MD5 split for 40 users", string_split),
        ("string: targetingKey pinned to a variant", string_targeting_key),
        ("string: context rule (plan=enterprise) serves its variant, rule_id in metadata", string_context_rule),
        ("string: get_string_value", string_value_api),
        ("object: payload objects match the MD5 split for 40 users", object_split),
        ("object: targetingKey pinned to a payload", object_targeting_key),
        ("integer: values and get_integer_value", integer_flag),
        ("float: values, including a whole-number float (1.0)", float_flag),
        ("missing flag -> code default, FLAG_NOT_FOUND", flag_not_found),
        ("disabled boolean -> false, DISABLED, variant off", disabled_boolean),
        ("disabled multivariate -> code default (no value), DISABLED", disabled_multivariate),
        ("rollout flag without targetingKey -> code default, TARGETING_KEY_MISSING", targeting_key_missing),
        ("malformed flag -> code default, PARSE_ERROR", malformed_flag),
        ("string flag read as boolean -> code default, TYPE_MISMATCH", type_mismatch),
        ("flag key with a space and non-ASCII", encoded_key),
        ("API + client + invocation contexts merge", context_merging),
    ]


def assert_value(actual: object, expected: object) -> None:
    if actual != expected or type(actual) is not type(expected):
        raise CheckFailed(f"value = {actual!r}, want {expected!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/debug/flagfn", help="flagfn binary (default: %(default)s)")
    args = parser.parse_args()
    binary = Path(args.binary)
    if not binary.is_absolute():
        binary = (Path.cwd() / binary).resolve()
    if not binary.is_file():
        print(f"FAIL: binary {binary} not found (build it: cargo build --bin flagfn)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="flagfn-interop-") as tmp:
        server = Server(binary, Path(tmp))

        # Ctrl-C / SIGTERM (make interrupted): stop the server and leave at once. Raising
        # from the handler is not enough: the SDK's `finally` blocks turn a
        # KeyboardInterrupt/SystemExit raised mid-evaluation into an ordinary error.
        def interrupted(signum: int, _frame: object) -> None:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"\ninterrupted by signal {signum}: server stopped", file=sys.stderr)
            os._exit(128 + signum)

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, interrupted)
        try:
            try:
                server.start()
            except RuntimeError as error:
                print(f"FAIL: cannot start {binary}: {error}", file=sys.stderr)
                return 2
            print(f"server {binary.name} at {server.base_url} (flags: {FLAGS_FILE.relative_to(ROOT)})")
            api.set_provider(OFREPProvider(server.base_url, timeout=5.0))
            client = api.get_client("flagfn-interop")

            failed = []
            for name, check in checks(client, server.base_url):
                try:
                    check()
                except CheckFailed as error:
                    failed.append(name)
                    print(f"FAIL  {name}: {error}")
                except Exception:  # noqa: BLE001 - a crash in a check is a failed check
                    failed.append(name)
                    print(f"FAIL  {name}: unexpected exception\n{traceback.format_exc()}")
                else:
                    print(f"ok    {name}")
            if server.proc is not None and server.proc.poll() is not None:
                print(f"FAIL  server exited during the run (status {server.proc.returncode}):\n{server.log_tail()}")
                return 1
        finally:
            api.shutdown()
            server.stop()

    if failed:
        print(f"\n{len(failed)} OFREP interop check(s) FAILED:", *failed, sep="\n  - ")
        return 1
    print("\nall OFREP interop checks passed (openfeature-sdk + openfeature-provider-ofrep)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
