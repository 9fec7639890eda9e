#!/bin/sh
# agent-steady.sh: the rotation agent's steady-state cost. Starts
# `phigate server --dev` on loopback, a token with a 6 s rotation period,
# and `phigate agent` on it; after a 10 s warm-up, samples the agent's
# VmRSS and utime+stime (from /proc) over 60 s of rotations.
# Usage: bench/agent-steady.sh [path/to/phigate [path/to/phigate-agent]]
# (the agent is `phigate agent` unless a phigate-agent binary is given)
set -eu
bin=${1:-./phigate}
agent="$bin agent"
[ $# -ge 2 ] && agent=$2
work=$(mktemp -d)
trap 'kill $apid $spid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$bin" server --dev --data "$work/data" --admin-listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
spid=$!
for _ in $(seq 100); do grep -q 'SPKI pin' "$work/server.out" && grep -q '^ *phi_' "$work/server.out" && break; sleep 0.1; done
addr=$(sed -n 's/.*admin API: *https:\/\/\([^ ]*\).*/\1/p' "$work/server.out" | head -1)
pin=$(sed -n 's/.*SPKI pin: *\([^ ]*\).*/\1/p' "$work/server.out" | head -1)
adm=$(sed -n 's/^ *\(phi_[0-9A-Za-z]*\) *$/\1/p' "$work/server.out" | head -1)
export PHIGATE_ADDR=https://$addr PHIGATE_PIN=$pin
PHIGATE_TOKEN=$adm "$bin" token create --subject bench --scope billing:read --ttl 6s --grace 3s --json |
	sed -n 's/.*"token": *"\(phi_[^"]*\)".*/\1/p' >"$work/token"
$agent --token-file "$work/token" --sink "$work/sink" --health 127.0.0.1:0 -v 2>"$work/agent.err" &
apid=$!
sleep 10
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$apid/stat"; }
c0=$(cpu); r0=$(grep -c 'token rotated' "$work/agent.err" || true)
max=0
for _ in $(seq 60); do
	rss=$(awk '/VmRSS/ {print $2}' "/proc/$apid/status")
	[ "$rss" -gt "$max" ] && max=$rss
	sleep 1
done
c1=$(cpu); r1=$(grep -c 'token rotated' "$work/agent.err" || true)
echo "agent: $((r1 - r0)) rotations in 60 s; VmRSS max ${max} kB, last ${rss} kB; CPU $(( (c1 - c0) * 1000 / ticks )) ms in 60 s"
