#!/usr/bin/env bash
# CI sweep of the simulator: a fixed set of seeds of every scenario (with the determinism
# check on VOPR), then fresh random VOPR seeds until the time budget (seconds, default 120)
# is spent. A failure prints the seed and the one-line command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-120}
start=$(date +%s)
cargo build --release --locked -p swarm-sim
sim=target/release/swarm-sim

# Fixed seeds: every run of CI checks these.
"$sim" --scenario vopr --seed 0 --seeds 500 --check-determinism
for s in crossed dead-refused dead-blackhole mute rejoin reset; do
  "$sim" --scenario "$s" --seed 0 --seeds 5
done
"$sim" --scenario chaos --seed 0 --seeds 50
"$sim" --scenario chaos-max --seed 0 --seeds 50 --strict-total
"$sim" --scenario lan-lossy --seed 0 --seeds 2
"$sim" --scenario vopr --seed 0 --seeds 300 --vopr-utp
"$sim" --scenario utp --seed 0 --seeds 10
for s in dns-nat dns-nat-symmetric dns-restart; do
  "$sim" --scenario "$s" --seed 0 --seeds 5
done
"$sim" --scenario dns-server --seed 0

# Fresh seeds for the rest of the budget.
left=$((budget - ($(date +%s) - start)))
if [ "$left" -gt 0 ]; then
  fresh=$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')
  echo "fresh VOPR seeds from $fresh for ${left}s"
  "$sim" --scenario vopr --seed "$fresh" --seeds 100000000 --budget "$left"
fi
