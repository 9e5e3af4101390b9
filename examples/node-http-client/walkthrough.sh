#!/usr/bin/env bash
# Runs the walkthrough of README.md end to end and prints what each step
# printed. Usage: walkthrough.sh [SECONDS] (default 120). Needs a release
# build: cargo build --release --workspace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lt="$root/target/release/leaktrail"
secs=${1:-120}
work=$(mktemp -d /tmp/leaktrail-walkthrough-XXXXXX)
cd "$work"
port=18321

: > server.log
node "$here/server.js" $port > server.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until grep -q listening server.log; do sleep 0.1; done

echo "## 1. Is it growing? (watch the untraced client)"
node "$here/client.js" --port $port --duration "$secs" --report 30 > client-watch.log &
client=$!
"$lt" watch -p $client --interval 1s --out watch-rec | tail -n 20
wait $client || true
tail -n 3 client-watch.log

echo "## 2. Restart it under the tracer, snapshots every 20 s"
"$lt" run --every 20s --out rec -- node "$here/client.js" --port $port --duration "$secs" --report 30
ls rec/snapshots

snaps=(rec/snapshots/0*.core)
first=${snaps[0]}
last_periodic=$(ls rec/snapshots/0*.core | grep -v exit | tail -n 1)

echo "## 3. Which size class grows?"
"$lt" caches "$first" "$last_periodic" | head -n 25

echo "## 4. Which stacks grow, JS frames named?"
"$lt" growth rec --top 3 --depth 16

echo "## 5. What is unreachable?"
"$lt" leaks "$last_periodic" | head -n 30

echo "## 6. Who points at a buffer? (V8 tags pointers: --invmask 0x7)"
addr=$("$lt" bufs "$last_periodic" --class 4096 --json | python3 -c 'import json,sys; b=json.load(sys.stdin)["buffers"]; print(hex(b[0]["addr"]) if b else "")')
if [ -n "$addr" ]; then
  "$lt" refs "$last_periodic" "$addr" --invmask 0x7 --chain | head -n 30
  "$lt" whatis "$last_periodic" "$addr"
fi

echo "## 7. Node's split by owner, and the report"
"$lt" trend rec | tail -n 8
"$lt" report rec -o report.html && ls -la report.html
echo "work dir: $work"
