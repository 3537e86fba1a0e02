#!/usr/bin/env bash
# The ambassador's proxy benchmark (issue 7's bar). It starts a trivial Go
# backend, distkit's reverse proxy, httputil.ReverseProxy with default
# settings, and nginx from Debian with upstream keepalive, all on
# 127.0.0.1; loads each with wrk at 1 and 32 connections for DURATION
# seconds (default 5); and prints one line per path and connection count:
#
#	path=<direct|distkit|httputil|nginx> conns=<c> rps=<r> p50_us=<x> p99_us=<y>
#
# Each proxy gets one core (taskset -c 1, GOMAXPROCS=1, one nginx worker);
# wrk and the backend share the other. It installs nginx and wrk if they
# are missing (apt-get, as root), and stops what it started by PID.
#
# ROUNDS=n (default 1) measures every path n times, in turn, and prints
# the medians, with the lower quartile of p50 as p50_q1_us: this VM's
# speed drifts by tens of percent within a minute, and interleaved rounds
# let the paths share the drift. PATHS picks the paths (the default is the
# four above; the floor modes of floor.go, min-nethttp, min-poller and
# min-blocking, may be added) and CONNS the connection counts ("1 32").
set -euo pipefail
cd "$(dirname "$0")"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-1}
PATHS=${PATHS:-direct distkit httputil nginx}
CONNS=${CONNS:-1 32}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/proxy" .

# start NAME CPU ARGS...: runs the proxy binary in the background on CPU,
# and sets ADDR to the address it prints.
start() {
	local name=$1 cpu=$2
	shift 2
	GOMAXPROCS=1 taskset -c "$cpu" "$tmp/proxy" "$@" >"$tmp/$name.addr" 2>"$tmp/$name.err" &
	pids+=($!)
	for _ in $(seq 100); do
		[ -s "$tmp/$name.addr" ] && break
		sleep 0.05
	done
	ADDR=$(head -1 "$tmp/$name.addr")
	[ -n "$ADDR" ] || { echo "$name did not start:" >&2; cat "$tmp/$name.err" >&2; exit 1; }
}

start backend 0 backend
backend=$ADDR
declare -A addr=([direct]=$backend)
for path in $PATHS; do
	case $path in
	direct | nginx) ;;
	distkit | httputil)
		start "$path" 1 "$path" -backend "http://$backend"
		addr[$path]=$ADDR
		;;
	min-nethttp | min-poller | min-blocking)
		start "$path" 1 "$path" -backend "$backend"
		addr[$path]=$ADDR
		;;
	*)
		echo "unknown path $path" >&2
		exit 2
		;;
	esac
done

nginx_port=$("$tmp/proxy" freeport)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 10;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	upstream backend {
		server $backend;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:$nginx_port;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
CONF
taskset -c 1 nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" 2>"$tmp/nginx.err" &
pids+=($!)
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$nginx_port/" >/dev/null 2>&1 && break
	sleep 0.05
done
addr[nginx]=127.0.0.1:$nginx_port

# us converts wrk's "57.00us", "1.23ms" or "2.00s" to microseconds.
us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
	}'
}

for path in $PATHS; do
	taskset -c 0 wrk -t1 -c8 -d1s "http://${addr[$path]}/" >/dev/null # warm up
done
for round in $(seq "$ROUNDS"); do
	for path in $PATHS; do
		for conns in $CONNS; do
			out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "http://${addr[$path]}/")
			if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
				echo "$path: errors under load:" >&2
				echo "$out" >&2
				exit 1
			fi
			rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' <<<"$out")
			p50=$(us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
			p99=$(us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
			echo "$path $conns $rps $p50 $p99" >>"$tmp/rounds"
			[ "$ROUNDS" -gt 1 ] || echo "path=$path conns=$conns rps=$rps p50_us=$p50 p99_us=$p99"
		done
	done
done
[ "$ROUNDS" -gt 1 ] || exit 0

# median COLUMN PATH CONNS, and q1 likewise: over the rounds.
quantile() {
	awk -v c="$2" -v p="$3" -v n="$4" '$1 == p && $2 == n {print $c}' "$tmp/rounds" | sort -n |
		awk -v q="$1" '{v[NR] = $1} END {i = int((NR - 1) * q + 1); print v[i]}'
}
for path in $PATHS; do
	for conns in $CONNS; do
		echo "path=$path conns=$conns rps=$(quantile 0.5 3 "$path" "$conns") p50_us=$(quantile 0.5 4 "$path" "$conns") p99_us=$(quantile 0.5 5 "$path" "$conns") rounds=$ROUNDS p50_q1_us=$(quantile 0.25 4 "$path" "$conns")"
	done
done
