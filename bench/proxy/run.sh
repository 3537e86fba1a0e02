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
set -euo pipefail
cd "$(dirname "$0")"
DURATION=${DURATION:-5}

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
start distkit 1 distkit -backend "http://$backend"
distkit=$ADDR
start httputil 1 httputil -backend "http://$backend"
httputil=$ADDR

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
nginx=127.0.0.1:$nginx_port

# us converts wrk's "57.00us", "1.23ms" or "2.00s" to microseconds.
us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
	}'
}

for path in direct distkit httputil nginx; do
	case $path in
	direct) addr=$backend ;;
	distkit) addr=$distkit ;;
	httputil) addr=$httputil ;;
	nginx) addr=$nginx ;;
	esac
	taskset -c 0 wrk -t1 -c8 -d1s "http://$addr/" >/dev/null # warm up
	for conns in 1 32; do
		out=$(taskset -c 0 wrk -t1 -c"$conns" -d"${DURATION}s" --latency "http://$addr/")
		if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
			echo "$path: errors under load:" >&2
			echo "$out" >&2
			exit 1
		fi
		rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' <<<"$out")
		p50=$(us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
		p99=$(us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
		echo "path=$path conns=$conns rps=$rps p50_us=$p50 p99_us=$p99"
	done
done
