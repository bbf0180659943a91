#!/usr/bin/env bash
# The bucketing MD5 kernels (src/bucket/md5.rs, src/bucket/lanes.rs) built for arm64 —
# Lambda's Graviton — and run under qemu, NEON included: tests/arm64/md5.rs, compiled on
# its own by rustc (the kernels need nothing but std). Installs what it needs when
# missing: the Rust target (rustup) and Debian's cross linker and qemu (apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/arm64
mkdir -p "$out"

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    echo "== installing the Rust target aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    echo "== installing Debian's arm64 cross linker and qemu-user-static"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi

# The golden vectors' Python-computed hashes, as hex(user) TAB hex(flag) TAB hash.
python3 - tests/fixtures/golden.json > "$out/golden.tsv" <<'PY'
import json, sys
for case in json.load(open(sys.argv[1]))["buckets"]:
    print(case["user"].encode().hex(), case["flag"].encode().hex(), case["hash"], sep="\t")
PY

rustc --edition 2021 --test -O --target aarch64-unknown-linux-gnu \
    -C linker=aarch64-linux-gnu-gcc -C target-feature=+crt-static \
    tests/arm64/md5.rs -o "$out/md5-tests"
GOLDEN_TSV="$out/golden.tsv" qemu-aarch64-static "$out/md5-tests"
