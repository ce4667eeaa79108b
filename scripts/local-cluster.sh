#!/usr/bin/env bash
# Starts and stops a three-node multi-raft cluster on this machine, and
# grows it by joining more nodes.
#
#   scripts/local-cluster.sh start [DIR]    build, start 3 nodes (and any joined before), wait until every region has a leader
#   scripts/local-cluster.sh join [DIR]     start node N+1 with --join; wait until it holds its share of the replicas
#   scripts/local-cluster.sh status [DIR]   print each node's GET /status
#   scripts/local-cluster.sh stop [DIR]     SIGTERM every node, wait for a graceful stop
#   scripts/local-cluster.sh clean [DIR]    stop, then remove DIR
#
# DIR (default: target/local-cluster) holds each node's data (DIR/N), log
# (DIR/N.log) and pid (DIR/N.pid). Nodes listen on 127.0.0.1:2016N (gRPC) and
# 127.0.0.1:2018N (status). Environment: PROFILE=release|debug (default
# release), REGIONS (default 16), BASE_PORT (default 20160; status ports are
# BASE_PORT+20+N).
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=${1:-}
dir=${2:-target/local-cluster}
profile=${PROFILE:-release}
regions=${REGIONS:-16}
base=${BASE_PORT:-20160}
initial=(1 2 3)
# The initial nodes, and every node that joined (has a data dir) since.
nodes=("${initial[@]}")
for d in "$dir"/*/; do
    n=$(basename "$d")
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 3 ] && nodes+=("$n")
done

grpc_addr() { echo "127.0.0.1:$((base + $1))"; }
status_addr() { echo "127.0.0.1:$((base + 20 + $1))"; }
initial_cluster() {
    local list=()
    for n in "${initial[@]}"; do list+=("$n=$(grpc_addr "$n")"); done
    (IFS=,; echo "${list[*]}")
}
endpoints() {
    local list=()
    for n in "${nodes[@]}"; do list+=("$(grpc_addr "$n")"); done
    (IFS=,; echo "${list[*]}")
}
bin_dir() { if [ "$profile" = release ]; then echo target/release; else echo target/debug; fi; }
running() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

build() {
    local flag=()
    [ "$profile" = release ] && flag=(--release)
    cargo build "${flag[@]}" -p node --bins
}

# Starts node $1: an initial node bootstraps from the initial cluster, a
# later one joins through node 1 (a restart of either reads its data dir).
start_node() {
    local n=$1 how=()
    if running "$n"; then echo "node $n already running (pid $(cat "$dir/$n.pid"))"; return; fi
    if [ "$n" -le 3 ]; then
        how=(--initial-cluster "$(initial_cluster)" --regions "$regions")
    else
        how=(--join "$(grpc_addr 1)")
    fi
    "$(bin_dir)/node" --store-id "$n" --listen "$(grpc_addr "$n")" --status "$(status_addr "$n")" \
        --data-dir "$dir/$n" "${how[@]}" >>"$dir/$n.log" 2>&1 &
    echo $! >"$dir/$n.pid"
    echo "node $n: pid $!, gRPC $(grpc_addr "$n"), status http://$(status_addr "$n")/status, log $dir/$n.log"
}

start() {
    build
    mkdir -p "$dir"
    for n in "${nodes[@]}"; do start_node "$n"; done
    # Ready when every node answers /status and each region has a leader.
    for _ in $(seq 1 300); do
        local leaders=0 up=0
        for n in "${nodes[@]}"; do
            if s=$(curl -sf "http://$(status_addr "$n")/status" 2>/dev/null); then
                up=$((up + 1))
                leaders=$((leaders + $(sed -n 's/.*"leaders":\([0-9]*\).*/\1/p' <<<"$s")))
            fi
        done
        if [ "$up" = "${#nodes[@]}" ] && [ "$leaders" -ge "$regions" ]; then
            echo "cluster ready: $regions regions, every one with a leader"
            echo "try: $(bin_dir)/kvctl --endpoints $(endpoints) put hello world"
            return 0
        fi
        for n in "${nodes[@]}"; do
            running "$n" || { echo "node $n exited; see $dir/$n.log:" >&2; tail -5 "$dir/$n.log" >&2; exit 1; }
        done
        sleep 0.1
    done
    echo "the cluster did not become ready in 30 s; see the logs in $dir" >&2
    exit 1
}

join() {
    build
    local n=$(( ${nodes[-1]} + 1 ))
    mkdir -p "$dir"
    start_node "$n"
    # Each store's fair share is floor(regions * 3 / stores).
    local share=$(( regions * 3 / (${#nodes[@]} + 1) ))
    for _ in $(seq 1 600); do
        if s=$(curl -sf "http://$(status_addr "$n")/status" 2>/dev/null); then
            local held
            held=$(sed -n 's/.*"regions":\([0-9]*\).*/\1/p' <<<"$s")
            if [ "${held:-0}" -ge "$share" ]; then
                echo "node $n joined and holds $held replicas (its fair share: $share)"
                nodes+=("$n")
                echo "try: $(bin_dir)/kvctl --endpoints $(endpoints) stores"
                return 0
            fi
        fi
        running "$n" || { echo "node $n exited; see $dir/$n.log:" >&2; tail -5 "$dir/$n.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "node $n did not take its share in 60 s; see $dir/$n.log" >&2
    exit 1
}

status() {
    for n in "${nodes[@]}"; do
        printf 'node %s: ' "$n"
        curl -sf "http://$(status_addr "$n")/status" || echo "not answering"
    done
}

stop() {
    for n in "${nodes[@]}"; do
        running "$n" && kill -TERM "$(cat "$dir/$n.pid")"
    done
    for n in "${nodes[@]}"; do
        for _ in $(seq 1 100); do running "$n" || break; sleep 0.1; done
        if running "$n"; then
            echo "node $n did not stop in 10 s; killing it" >&2
            kill -KILL "$(cat "$dir/$n.pid")" || true
        fi
        rm -f "$dir/$n.pid"
    done
    echo "stopped"
}

case "$cmd" in
    start) start ;;
    join) join ;;
    status) status ;;
    stop) stop ;;
    clean) stop; rm -rf "$dir" ;;
    *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
