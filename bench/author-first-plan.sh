#!/usr/bin/env bash
# A plugin author's first steps, timed on a fresh clone of this repository:
# build the lean `steward` (no control plane, API or registry server), then
# `plugin new`, `plugin build`, `plugin test` and `plugin run --plan` of a
# new Rust plugin outside the repository. With `--full`, also times the
# full `steward` (the server's build) from clean, for comparison.
#
#   bench/author-first-plan.sh [--full]
#
# Every build starts from an empty target directory; crates already in
# cargo's download cache are not downloaded again.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
t0=$(now)
git clone -q "$repo" "$work/steward"
(cd "$work/steward" && CARGO_TARGET_DIR="$work/lean" cargo build --quiet --release -p steward-host --no-default-features)
t1=$(now)
steward="$work/lean/release/steward"
cd "$work"
"$steward" plugin new locked-watch --capability accounts --capability tickets >/dev/null
t2=$(now)
"$steward" plugin build locked-watch >/dev/null
t3=$(now)
"$steward" plugin test locked-watch
"$steward" plugin run locked-watch/target/wasm32-wasip2/release/locked_watch.wasm \
  --device locked-watch/device.toml --grant accounts --grant tickets --plan >/dev/null
t4=$(now)
crates=$(cd "$work/steward" && cargo tree -p steward-host --no-default-features -e normal,build --prefix none 2>/dev/null | sort -u | wc -l)
echo "lean steward from clean:        $(secs "$t0" "$t1") s ($crates crates; $(du -m "$steward" | cut -f1) MB)"
echo "plugin new:                     $(secs "$t1" "$t2") s"
echo "plugin build (first):           $(secs "$t2" "$t3") s"
echo "plugin test + run --plan:       $(secs "$t3" "$t4") s"
echo "fresh clone to first plan:      $(secs "$t0" "$t4") s"
if [[ "${1:-}" == "--full" ]]; then
  f0=$(now)
  (cd "$work/steward" && CARGO_TARGET_DIR="$work/full" cargo build --quiet --release -p steward-host)
  f1=$(now)
  crates=$(cd "$work/steward" && cargo tree -p steward-host -e normal,build --prefix none 2>/dev/null | sort -u | wc -l)
  echo "full steward from clean:        $(secs "$f0" "$f1") s ($crates crates; $(du -m "$work/full/release/steward" | cut -f1) MB)"
fi
