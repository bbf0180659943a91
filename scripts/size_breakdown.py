#!/usr/bin/env python3
"""Where a binary's code goes, by crate: what `cargo bloat --crates` prints, from `nm`.

The shipped bootstrap has no symbols (the release profile strips it); the same code with
symbols is the `bench` or `profiling` profile's build of the function:

    cargo build --profile profiling --bin flagfn
    python3 scripts/size_breakdown.py target/profiling/flagfn [--top 20]

Every function and static symbol's size, attributed to the crate that names it: a
generic instantiated elsewhere counts for the crate of its path (`<T as x::Trait>` for
x's trait methods' implementations goes to T's crate, as cargo-bloat does); C and
assembly symbols (ring's) go under their prefix. Prints each crate's share of `.text`.
"""

import argparse
import re
import subprocess
import sys
from collections import Counter

C_PREFIXES = {"ring_core_": "ring (C/asm)", "aws_lc_": "aws-lc (C)", "GFp_": "ring (C/asm)"}


def crate_of(name: str) -> str:
    for prefix, crate in C_PREFIXES.items():
        if name.startswith(prefix):
            return crate
    path = name.lstrip("<&*( ").removeprefix("mut ").removeprefix("dyn ").removeprefix("const ")
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", path)
    if match:
        return match.group(1)
    if name.startswith("_ZN") or name.startswith("_R"):
        return "(mangled)"
    return "(C, std and other)"


def section_size(binary: str, name: str) -> int:
    out = subprocess.run(["size", "-A", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return int(parts[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    out = subprocess.run(["nm", "-C", "--size-sort", "--print-size", args.binary],
                         capture_output=True, text=True, check=True).stdout
    sizes = Counter()
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[2] not in "tTwWrRdD":
            continue
        sizes[crate_of(parts[3])] += int(parts[1], 16)
    text = section_size(args.binary, ".text")
    total = sum(sizes.values())
    print(f".text {text:,} bytes; symbols with a size {total:,} bytes (code and read-only data)")
    print(f"{'crate':32} {'bytes':>12} {'share':>7}")
    for crate, size in sizes.most_common(args.top):
        print(f"{crate:32} {size:12,} {100 * size / total:6.1f}%")
    rest = sum(size for _, size in sizes.most_common()[args.top:])
    print(f"{'(the rest)':32} {rest:12,} {100 * rest / total:6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
