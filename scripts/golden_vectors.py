#!/usr/bin/env python3
"""Golden vectors for flagfn's bucketing, computed independently of the Rust code.

This script restates the Python evaluator's formulas (docs/flag-format.md, "Bucketing")
with nothing but `hashlib` and `struct`, and its decision order (docs/flag-format.md,
"Evaluation order", the Python part) in plain Python, then writes
tests/fixtures/golden.json, which the Rust tests replay.

    python3 scripts/golden_vectors.py           # rewrite the fixture
    python3 scripts/golden_vectors.py --check   # fail if the fixture is stale
"""

import hashlib
import json
import pathlib
import struct
import sys

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "golden.json"
MAX_HASH_VALUE = 0xFFFFFFFF


def h(s):
    """First 4 bytes of MD5(utf8(s)) as a little-endian u32."""
    return struct.unpack("<I", hashlib.md5(s.encode("utf-8")).digest()[:4])[0]


def in_rollout(user, flag_key, pct):
    if pct <= 0:
        return False
    if pct >= 100:
        return True
    return h(f"{user}:{flag_key}") % 100 < pct


def assign_variant(user, flag_key, variants):
    value = h(f"{user}:{flag_key}_variant") / MAX_HASH_VALUE
    cumulative = 0.0
    for v in variants:
        cumulative += v["allocation"]
        if value < cumulative:
            return v["key"]
    return variants[-1]["key"]


def rules_match(rules, context):
    """The Python evaluator's targeting_rules: AND of equals / in / greater_than / less_than."""
    if not rules:
        return True
    if not context:
        return False
    for rule in rules:
        user_value = context.get(rule.get("attribute"))
        if user_value is None:
            return False
        op, value = rule.get("operator"), rule.get("value")
        if op == "equals":
            if user_value != value:
                return False
        elif op == "in":
            if user_value not in value:
                return False
        elif op == "greater_than":
            if user_value <= value:
                return False
        elif op == "less_than":
            if user_value >= value:
                return False
        else:
            return False
    return True


def evaluate(flag, user, context):
    """The Python evaluator's `evaluate`, restated."""
    if not flag.get("enabled", False):
        return {"enabled": False, "reason": "flag_disabled", "variant": None}
    if flag.get("targeting_rules") and not rules_match(flag["targeting_rules"], context):
        return {"enabled": False, "reason": "targeting_rules_not_met", "variant": None}
    if not in_rollout(user, flag["key"], flag.get("rollout_percentage", 0.0)):
        return {"enabled": False, "reason": "not_in_rollout", "variant": None}
    variant = None
    if flag.get("variants"):
        variant = assign_variant(user, flag["key"], flag["variants"]) or flag.get("default_variant")
    return {"enabled": True, "reason": "enabled", "variant": variant}


USERS = [
    "user-123", "user-1", "user-2", "alice", "bob@example.com", "42", "",
    "Zoë", "用户-7", "🦀-crab", "  padded  ", "x" * 200,
]
FLAGS = ["my-flag", "new-checkout", "dark_mode", "beta.search", "ünïcode-flag"]
PERCENTAGES = [0, 1, 10, 25, 50, 50.5, 59, 59.5, 60, 75, 99, 99.9, 100]
SPLITS = [
    [("control", 0.5), ("treatment", 0.5)],
    [("a", 0.34), ("b", 0.33), ("c", 0.33)],
    [("red", 0.1), ("green", 0.2), ("blue", 0.3), ("gold", 0.4)],
    [("small", 0.995), ("tiny", 0.0)],  # sums to 0.995: the walk can fall off the end
]


def buckets():
    out = []
    for user in USERS:
        for flag in FLAGS:
            s = f"{user}:{flag}"
            out.append({"user": user, "flag": flag, "hash": h(s), "bucket": h(s) % 100})
    return out


def rollouts():
    out = []
    for i, user in enumerate(USERS):
        for j, flag in enumerate(FLAGS):
            pct = PERCENTAGES[(i * 7 + j * 3) % len(PERCENTAGES)]
            out.append({"user": user, "flag": flag, "percentage": pct, "in": in_rollout(user, flag, pct)})
    # The fractional edge on the spec's own vector: bucket 59.
    for pct in [59, 59.5, 60]:
        out.append({"user": "user-123", "flag": "my-flag", "percentage": pct, "in": in_rollout("user-123", "my-flag", pct)})
    return out


def variants():
    out = []
    for split in SPLITS:
        vs = [{"key": k, "allocation": a} for k, a in split]
        for user in USERS:
            for flag in FLAGS[:3]:
                point = h(f"{user}:{flag}_variant") / MAX_HASH_VALUE
                out.append({"user": user, "flag": flag, "variants": vs, "point": point,
                            "variant": assign_variant(user, flag, vs)})
    return out


def evaluations():
    flags = [
        {"key": "off", "flag_id": "f-off", "enabled": False, "rollout_percentage": 100},
        {"key": "half", "enabled": True, "rollout_percentage": 50},
        {"key": "fractional", "enabled": True, "rollout_percentage": 33.3},
        {"key": "everyone", "enabled": True, "rollout_percentage": 100},
        {"key": "nobody", "enabled": True, "rollout_percentage": 0},
        {"key": "no-rollout-field", "enabled": True},
        {"key": "targeted", "enabled": True, "rollout_percentage": 100,
         "targeting_rules": [{"attribute": "country", "operator": "in", "value": ["US", "CA"]},
                             {"attribute": "age", "operator": "greater_than", "value": 17}]},
        {"key": "targeted-half", "enabled": True, "rollout_percentage": 50,
         "targeting_rules": [{"attribute": "plan", "operator": "equals", "value": "pro"}]},
        {"key": "substring", "enabled": True, "rollout_percentage": 100,
         "targeting_rules": [{"attribute": "email", "operator": "in", "value": "@example.com"}]},
        {"key": "before-2", "enabled": True, "rollout_percentage": 100,
         "targeting_rules": [{"attribute": "score", "operator": "less_than", "value": 2.5}]},
        {"key": "by-name", "enabled": True, "rollout_percentage": 100,
         "targeting_rules": [{"attribute": "name", "operator": "greater_than", "value": "m"}]},
        {"key": "ab", "enabled": True, "rollout_percentage": 100,
         "variants": [{"key": "control", "allocation": 0.5}, {"key": "treatment", "allocation": 0.5}],
         "default_variant": "control"},
        {"key": "abc-half", "enabled": True, "rollout_percentage": 50,
         "variants": [{"key": "a", "allocation": 0.34}, {"key": "b", "allocation": 0.33},
                      {"key": "c", "allocation": 0.33}]},
        {"key": "four-way", "enabled": True, "rollout_percentage": 100,
         "variants": [{"key": "red", "allocation": 0.1}, {"key": "green", "allocation": 0.2},
                      {"key": "blue", "allocation": 0.3}, {"key": "gold", "allocation": 0.4}]},
    ]
    contexts = [
        None, {},
        {"country": "US", "age": 30, "plan": "pro", "email": "a@example.com", "score": 1, "name": "zed"},
        {"country": "DE", "age": 30, "plan": "free", "email": "a@other.org", "score": 2.5, "name": "amy"},
        {"country": "CA", "age": 17.0, "plan": "pro", "score": 2.4999, "name": "m"},
        {"country": "CA", "age": 18, "plan": None},
    ]
    out = []
    for fi, flag in enumerate(flags):
        for ui, user in enumerate(USERS[:6] + USERS[7:10]):
            context = contexts[(fi + ui) % len(contexts)]
            result = evaluate(flag, user, context)
            out.append({"flag": flag, "user": user, "context": context, **result})
    return out


def build():
    return {
        "comment": "Generated by scripts/golden_vectors.py from the Python formulas; do not edit.",
        "spec_vector": {"input": "user-123:my-flag", "bucket": h("user-123:my-flag") % 100},
        "buckets": buckets(),
        "rollouts": rollouts(),
        "variants": variants(),
        "evaluations": evaluations(),
    }


def main():
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        if not FIXTURE.exists() or FIXTURE.read_text(encoding="utf-8") != text:
            sys.exit(f"{FIXTURE} is stale: run python3 scripts/golden_vectors.py")
        print(f"{FIXTURE.name} is up to date")
        return
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text, encoding="utf-8")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
