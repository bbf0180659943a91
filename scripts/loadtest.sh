#!/usr/bin/env bash
# Load test of the local server: GET /evaluate?user_id=...&flag_key=... with wrk.
#
#   scripts/loadtest.sh            (make loadtest)
#
# Builds the release binary, starts it over examples/flags.json with events ON (to a
# temp file, flushed by the server's background task, as in production), warms up, runs
# wrk with a Lua script that cycles through user ids (and flag keys), prints req/s,
# p50/p90/p99/p99.9 latency, non-2xx count, the CPU used by the server, by wrk and by
# everything else on the machine (a busy machine explains a bad run), the server's peak
# RSS and the events written, then stops the server. Exit status 1 if any run misses the
# target (see TARGET_*; dropped events count as a miss), 2 on set-up errors.
#
# Settings (environment):
#   DURATION=15s WARMUP=5s       measured run / warm-up length (wrk syntax)
#   CONNECTIONS=32 THREADS=1     wrk connections and threads
#   FLAG_KEYS=new-checkout,dark-mode,search-ranking   flags cycled through, comma-separated
#   USERS=10000                  distinct user ids cycled through (user-0 .. user-N-1)
#   PIN=auto                     auto: on ≥ 2 cores, server on core 0 and wrk on core 1
#                                (taskset); off: no pinning; or "SERVER_CPUS:WRK_CPUS", e.g. 0:1
#   RUNS=3                       measured runs (same server, one warm-up)
#   TARGET_RPS=50000 TARGET_P99_MS=2   the bar; ENFORCE=0 reports without failing
#   BINARY=...                   use this binary instead of building target/release/flagfn
#   KEEP=1                       keep the temp dir (server log, events file)
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
FLAG_KEYS=${FLAG_KEYS:-new-checkout,dark-mode,search-ranking}
USERS=${USERS:-10000}
PIN=${PIN:-auto}
RUNS=${RUNS:-3}
TARGET_RPS=${TARGET_RPS:-50000}
TARGET_P99_MS=${TARGET_P99_MS:-2}
ENFORCE=${ENFORCE:-1}
FLAGS_FILE_PATH=${FLAGS_FILE_PATH:-examples/flags.json}

die() { echo "loadtest: $*" >&2; exit 2; }

# --- the load generator --------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "== installing wrk (apt-get install -y wrk)"
        apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
    fi
    command -v wrk >/dev/null || die "wrk not found: install it (Debian: apt-get install -y wrk)"
fi
command -v curl >/dev/null || die "curl not found"

# --- the server binary -----------------------------------------------------------------
if [[ -z ${BINARY:-} ]]; then
    echo "== cargo build --release --bin flagfn"
    cargo build --release --bin flagfn
    BINARY=target/release/flagfn
fi
[[ -x $BINARY ]] || die "no executable at $BINARY"

# --- CPU pinning -----------------------------------------------------------------------
NCPU=$(nproc)
SERVER_CPUS="" WRK_CPUS=""
case $PIN in
    auto) if (( NCPU >= 2 )) && command -v taskset >/dev/null; then SERVER_CPUS=0 WRK_CPUS=1; fi ;;
    off | no | 0) ;;
    *:*) SERVER_CPUS=${PIN%%:*} WRK_CPUS=${PIN#*:} ;;
    *) die "PIN must be auto, off or SERVER_CPUS:WRK_CPUS" ;;
esac
# Command prefixes (taskset execs the command, so $! is the server itself).
SERVER_PREFIX=() WRK_PREFIX=()
[[ -n $SERVER_CPUS ]] && SERVER_PREFIX=(taskset -c "$SERVER_CPUS")
[[ -n $WRK_CPUS ]] && WRK_PREFIX=(taskset -c "$WRK_CPUS")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/flagfn-loadtest.XXXXXX")
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "(kept $TMP)"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- start the server ------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
EVENTS_FILE="$TMP/events.jsonl"
# Production-like: default log level, events on and flushed by the background task.
NO_COLOR=1 FLAGS_FILE=$FLAGS_FILE_PATH BIND_ADDR=127.0.0.1:$PORT EVENTS_FILE=$EVENTS_FILE \
    "${SERVER_PREFIX[@]}" "$BINARY" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null "$BASE/health" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "server exited at start-up"; }
    sleep 0.05
done
curl -sf -o /dev/null "$BASE/health" || die "server not healthy after 15 s"

# One request of each kind, checked, so the run measures real answers.
IFS=, read -r -a KEYS <<<"$FLAG_KEYS"
for key in "${KEYS[@]}"; do
    body=$(curl -s -w '\n%{http_code}' "$BASE/evaluate?user_id=user-1&flag_key=$key")
    code=${body##*$'\n'}
    [[ $code == 200 ]] || die "GET /evaluate?user_id=user-1&flag_key=$key answered $code: ${body%$'\n'*}"
    echo "   sample: ${body%$'\n'*}"
done

# --- the wrk script: cycle through user ids (and flags); report from `done` -----------
cat >"$TMP/evaluate.lua" <<'LUA'
-- Each thread precomputes a ring of distinct requests (no string building per request):
-- USERS user ids, starting at a different offset per thread, flags cycled alongside.
local users = tonumber(os.getenv("LT_USERS"))
local flags = {}
for f in string.gmatch(os.getenv("LT_FLAGS"), "[^,]+") do flags[#flags + 1] = f end
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
local ring, i = {}, 0
function init(args)
    local offset = ((tid or 1) - 1) * 7919
    for k = 0, users - 1 do
        local u = (offset + k) % users
        ring[#ring + 1] = wrk.format("GET", "/evaluate?user_id=user-" .. u .. "&flag_key=" .. flags[(k % #flags) + 1])
    end
end
function request()
    i = i % #ring + 1
    return ring[i]
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "LT_RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
        "p50=%d p90=%d p99=%d p999=%d max=%d mean=%.0f\n",
        summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
        latency.max, latency.mean))
end
LUA

run_wrk() { # run_wrk DURATION OUT
    LT_USERS=$USERS LT_FLAGS=$FLAG_KEYS "${WRK_PREFIX[@]}" \
        wrk -t "$THREADS" -c "$CONNECTIONS" -d "$1" --latency -s "$TMP/evaluate.lua" "$BASE" >"$2" 2>&1
}
# CPU accounting, in clock ticks: the server process, wrk (this shell's reaped children)
# and the whole machine, so a run on a busy machine is visible as such.
HZ=$(getconf CLK_TCK)
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
children_ticks() { # from bash's `times` (second line: children user and system time)
    times >"$TMP/times" # a builtin with a redirection runs in this shell, not a subshell
    awk -v hz="$HZ" 'NR == 2 { gsub(/[ms]/, " "); print int(($1 * 60 + $2 + $3 * 60 + $4) * hz) }' "$TMP/times"
}
field() { sed -n "s/.*[[:space:]]$1=\([0-9.]*\).*/\1/p" "$2" | head -1; }
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }

echo "== flagfn $BINARY on $BASE, $NCPU CPUs; server CPUs: ${SERVER_CPUS:-any}, wrk CPUs: ${WRK_CPUS:-any}"
echo "== wrk: $THREADS thread(s), $CONNECTIONS connections, $DURATION per run, warm-up $WARMUP"
echo "== GET /evaluate?user_id=user-<0..$((USERS - 1))>&flag_key=<$FLAG_KEYS>, events ON ($EVENTS_FILE)"
run_wrk "$WARMUP" "$TMP/warmup.txt" || { cat "$TMP/warmup.txt" >&2; die "wrk failed during warm-up"; }

status=0
total_requests=0
for run in $(seq "$RUNS"); do
    out="$TMP/run-$run.txt"
    children_ticks >"$TMP/w0"
    s0=$(server_ticks) m0=$(machine_busy_ticks) t0=$(date +%s.%N)
    run_wrk "$DURATION" "$out" || { cat "$out" >&2; die "wrk failed"; }
    s1=$(server_ticks) m1=$(machine_busy_ticks) t1=$(date +%s.%N)
    children_ticks >"$TMP/w1"
    w0=$(cat "$TMP/w0") w1=$(cat "$TMP/w1")
    grep -q '^LT_RESULT' "$out" || { cat "$out" >&2; die "no result line from wrk"; }
    requests=$(field requests "$out")
    duration_us=$(field duration_us "$out")
    rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    non2xx=$(field non2xx "$out")
    sockerr=$(( $(field connect "$out") + $(field read "$out") + $(field write "$out") + $(field timeout "$out") ))
    p99=$(field p99 "$out")
    total_requests=$((total_requests + requests))
    printf 'run %d: %s req/s (%s requests)  latency p50 %s ms  p90 %s ms  p99 %s ms  p99.9 %s ms  max %s ms  non-2xx %s  socket errors %s\n' \
        "$run" "$rps" "$requests" "$(ms "$(field p50 "$out")")" "$(ms "$(field p90 "$out")")" "$(ms "$p99")" \
        "$(ms "$(field p999 "$out")")" "$(ms "$(field max "$out")")" "$non2xx" "$sockerr"
    awk -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v m=$((m1 - m0)) -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v n="$NCPU" 'BEGIN {
        wall = (t1 - t0) * hz; if (wall <= 0) wall = 1
        o = m - s - w; if (o < 0) o = 0
        printf "       CPU (%% of one core): server %.0f%%, wrk %.0f%%, everything else %.0f%% (machine: %d cores)\n",
            100 * s / wall, 100 * w / wall, 100 * o / wall, n }'
    verdict=ok
    if (( rps < TARGET_RPS )) || awk -v p="$p99" -v t="$TARGET_P99_MS" 'BEGIN { exit !(p / 1000 >= t) }' \
        || (( non2xx > 0 || sockerr > 0 )); then
        verdict=MISSED
        status=1
    fi
    echo "       target ≥ $TARGET_RPS req/s, p99 < $TARGET_P99_MS ms, no errors: $verdict"
done

# --- server figures ----------------------------------------------------------------------
hwm=$(awk '/^VmHWM/ { print $2 " " $3 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
threads=$(awk '/^Threads/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
kill -TERM "$SERVER_PID"
for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SERVER_PID" 2>/dev/null && die "server did not stop within 10 s of SIGTERM"
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
events=$(wc -l <"$EVENTS_FILE")
drained=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/server.log" | grep -o 'events drained.*' | tail -1 || true)
echo "server: peak RSS (VmHWM) $hwm, $threads threads; events written $events (requests incl. warm-up ≥ $total_requests); ${drained:-no drain line}"
if sed 's/\x1b\[[0-9;]*m//g' "$TMP/server.log" | grep -v 'dropped=0 ' | grep -qiE 'dropped|overflow'; then
    echo "server log mentions dropped events:"; grep -iE 'dropped|overflow' "$TMP/server.log" | tail -3
    status=1
fi

if (( status != 0 )); then
    if [[ $ENFORCE == 1 ]]; then echo "loadtest: target MISSED"; exit 1; fi
    echo "loadtest: target missed (ENFORCE=0: not failing)"
fi
