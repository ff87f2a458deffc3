#!/bin/bash
# `make bench`: the gateway's cost against a plain proxy_pass, in one run.
#
# Everything runs on 127.0.0.1 from a temp dir that is removed on exit:
#
#   wrk (CPU 1) -> gateway nginx, 1 worker (CPU 0) -> upstream nginx (CPU 1)
#                  :plain    location /v3/ { proxy_pass ...; }
#                  :guard    location /v3/ { taurus_guard on; proxy_pass ...; }
#                  :nofsync  the same, its audit log with fsync=off
#
# Every gateway port serves the same route and forwards to the same
# upstream, so the URLs differ only by port.
#
# 1. Instructions.  Two more nginx run in one process each under
#    valgrind's callgrind: one without the module ("plain"), one with it
#    loaded, serving a guarded location ("module") and one where the guard
#    is off ("off").  t/bench/client.pl sends a counted number of requests
#    on one keepalive connection between a zeroing and a dump of the
#    counters (callgrind_control), so the user-space instructions per
#    request divide exactly and do not depend on the machine's load.
#
# 2. CPU under load.  The gateway worker's CPU time per request
#    (utime+stime of the whole process from /proc, divided by the requests
#    wrk counted) under wrk's connections, with the durable audit log and
#    with fsync=off, and apart the part of it the process's threads other
#    than the main one spent (the audit's thread pool, its fdatasync()
#    calls); req/s is printed too, but the durable log's
#    fdatasync() makes the guarded worker wait on the disk, and waiting is
#    not CPU.  Cases that are compared run in alternating rounds, so a
#    neighbour's load drifting during the run hits every side.
#
# 3. A million allow-list entries: `nginx -t` time, start, the worker's
#    resident memory, and the 1-instance CPU against a 51-entry list.
#
# The targets (README, Performance): instructions module/plain at most
# 3x (1 instance) and 15x (50 instances), guard off at most 1.02x; CPU
# module/plain at most 1.5x and 3x durable, 1.3x and 2x with fsync=off;
# a million-entry allow-list under 1 s for `nginx -t` and 100 MB per
# worker, looked up in constant time.  The bench reports, it never fails
# on a ratio; it fails when it cannot measure (a tool missing, a non-2xx
# response, a stall, a worker crash, an [alert] in a log).
#
# Environment: TG_NGINX (nginx binary, default /usr/sbin/nginx), TG_MODULE
# (the .so, default build/ngx_http_taurus_guard_module.so), TG_BENCH_SECONDS
# (per case, default 10), TG_BENCH_ROUNDS (default 5), TG_BENCH_CONNECTIONS
# (wrk's, default 50), TG_BENCH_REQUESTS (per callgrind case, default 200;
# 0 skips callgrind), TG_BENCH_AUDIT (parameters appended to the durable
# taurus_guard_audit_log, e.g. "thread_pool=off"), TG_BENCH_KEEP=1 (keep
# the temp dir), TG_BENCH_ONLY=instructions (only the callgrind cases, and
# a per-function profile of the guarded ones: callgrind_annotate's top
# functions, for finding where the instructions go), TG_BENCH_ONLY=allow
# (only the million-entry allow-list: `nginx -t`, start, the worker's
# memory, and the instructions of one lookup, from build/bench/allow-lookup
# under callgrind).

set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
bench="$top/t/bench"
nginx=${TG_NGINX:-/usr/sbin/nginx}
module=${TG_MODULE:-$top/build/ngx_http_taurus_guard_module.so}
seconds=${TG_BENCH_SECONDS:-10}
rounds=${TG_BENCH_ROUNDS:-5}
conns=${TG_BENCH_CONNECTIONS:-50}
cg_requests=${TG_BENCH_REQUESTS:-200}
audit_opts=${TG_BENCH_AUDIT:+ $TG_BENCH_AUDIT}
worker_user=nobody

project=0123456789abcdef0123456789abcdef
route="/v3/$project/instances/database-version/upgrade"

tmp=""
pids=()

# per nginx (gw: 51 allow-list entries, gw1m: a million more; up)
declare -A gw_master gw_worker

# per case: where it goes, and what it measured (summed over rounds)
declare -A c_gw c_port c_body c_path c_log
declare -A a_req a_us a_usr a_sys a_p50 a_p99 a_rss0 a_rss1 a_audit0 a_audit
declare -A a_round     # CPU us per request of each round, in order
declare -A a_flt       # the worker's minor page faults
declare -A a_pool      # CPU us of the worker's other threads (the pool)

# per callgrind case: instructions per request
declare -A ir


# On any failure, what nginx said about it (a crash, a failed flush) is
# worth more than our message: show the logs' alerts first.
die() {
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        grep -h -E '\[(alert|crit|emerg)\]' "$tmp"/*/logs/error.log \
            2>/dev/null | tail -5 >&2 || true
    fi
    echo "bench: error: $*" >&2
    exit 1
}


# --- setup ---------------------------------------------------------------

need_tools() {
    local sudo=""

    [ "$(id -u)" = 0 ] || sudo=sudo
    if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
        echo "bench: installing wrk and curl with apt"
        $sudo apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
            --no-install-recommends wrk curl >/dev/null
    fi
    [ -x "$nginx" ] || die "no nginx binary at $nginx"
    [ -f "$module" ] || die "no module at $module (run make)"
}


# A port the kernel just handed out and nobody holds (closed at once: a
# small race, harmless on a bench machine).
free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:0",
            Listen => 1, ReuseAddr => 1) or die "no free port: $!\n";
        print $s->sockport, "\n";'
}


# Pin the gateway workers to CPU 0 and wrk plus the upstream to CPU 1, so
# the client and the upstream never steal the measured worker's CPU.  On a
# single CPU there is nothing to pin.
setup_cpus() {
    if [ "$(nproc)" -ge 2 ]; then
        gw_affinity="worker_cpu_affinity 01;"
        up_affinity="worker_cpu_affinity 10;"
        wrk_cmd=(taskset -c 1 wrk)
    else
        gw_affinity=""
        up_affinity=""
        wrk_cmd=(wrk)
    fi
}


setup_dir() {
    local d

    tmp=$(mktemp -d "${TMPDIR:-/tmp}/tg-bench.XXXXXXXX")
    mkdir -p "$tmp/up/logs" "$tmp/gw/logs" "$tmp/gw1m/logs" "$tmp/conf" \
        "$tmp/cgplain/logs" "$tmp/cgmod/logs" \
        "$tmp/body" "$tmp/temp/body" "$tmp/temp/proxy" "$tmp/temp/fastcgi" \
        "$tmp/temp/uwsgi" "$tmp/temp/scgi"

    # nginx maps the .so: a `make` elsewhere in the tree rewrites it in
    # place (cp), and a worker running the old mapping then crashes.  The
    # bench loads its own copy.
    cp "$module" "$tmp/conf/ngx_http_taurus_guard_module.so"

    cat > "$tmp/conf/credentials" <<'INI'
# fake credentials for `make bench`: the upstream checks nothing
[basic]
ak = BENCHAKEXAMPLE000000
sk = bench-secret-key-not-a-real-one-000000000
INI

    # Workers run as nobody when nginx starts as root: the credentials
    # file must be theirs alone (nginx -t refuses it otherwise), the temp
    # dirs writable by them, every directory on the way traversable.
    chmod -R go+rX "$tmp"
    chmod 0600 "$tmp/conf/credentials"
    if [ "$(id -u)" = 0 ]; then
        chown "$worker_user" "$tmp/conf/credentials"
        chown -R "$worker_user" "$tmp/temp"
    fi
    d=$tmp
    while [ "$d" != / ]; do
        chmod o+x "$d" 2>/dev/null || true
        d=$(dirname "$d")
    done
}


# Stops exactly the nginx masters this script started (their workers
# follow), then removes the temp dir.
cleanup() {
    local pid

    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$tmp" ]; then
        if [ "${TG_BENCH_KEEP:-}" = 1 ]; then
            echo "bench: kept $tmp"
        else
            rm -rf "$tmp"
        fi
    fi
}


# --- request bodies --------------------------------------------------------

# instance_id N: 32 hex digits and "in07", as TaurusDB's are
instance_id() {
    printf '6754902da1f447269c6979b0%08xin07' "$1"
}


# make_body FILE ID...: a valid batch naming every ID
make_body() {
    local file=$1 sep="" id
    shift

    {
        printf '{"databases_instance_infos":['
        for id in "$@"; do
            printf '%s{"current_version":"2.0.48.231200","instance_id":"%s"}' \
                "$sep" "$id"
            sep=,
        done
        printf '],"delay":"false"}'
    } > "$file"
}


# --- nginx instances -------------------------------------------------------

temp_paths() {
    cat <<CONF
    client_body_temp_path $tmp/temp/body;
    proxy_temp_path $tmp/temp/proxy;
    fastcgi_temp_path $tmp/temp/fastcgi;
    uwsgi_temp_path $tmp/temp/uwsgi;
    scgi_temp_path $tmp/temp/scgi;
CONF
}


# The upstream: nginx answering every POST itself (`return` reads and
# discards the body), on its own instance and CPU, so that it never
# shares the measured worker.
write_upstream_conf() {
    cat > "$tmp/up/nginx.conf" <<CONF
worker_processes 1;
$up_affinity
error_log $tmp/up/logs/error.log warn;
pid $tmp/up/logs/nginx.pid;
events { worker_connections 1024; }
http {
$(temp_paths)
    access_log off;
    keepalive_requests 1000000;
    default_type application/json;
    server {
        listen 127.0.0.1:$up_port;
        location / { return 200 '{"resp":"success"}'; }
    }
}
CONF
}


# write_gateway_conf NAME PLAIN_PORT GUARD_PORT [ALLOW_INCLUDE [NOFSYNC]]: a
# gateway in $tmp/NAME, one worker, servers that differ only in
# `taurus_guard on` (and, on NOFSYNC, an audit log with fsync=off).
# Upstream keepalive sized to wrk's connections, as a gateway sized for
# its load runs, keeps connection setup out of both sides: with fewer
# idle connections than requests in flight, a burst (a group flush
# releasing twenty batches at once) opens new upstream connections, and
# the bench would time TCP handshakes instead of the module.  access_log
# is off and error_log at warn (the module logs each forwarded batch at
# info) so that neither side pays for logging the other skips.  Each
# gateway has its own audit file: two nginx instances must not share one
# hash chain.
write_gateway_conf() {
    local name=$1 plain=$2 guard=$3 include=${4:-} nofsync=${5:-}
    local dir="$tmp/$name" extra=""

    if [ -n "$nofsync" ]; then
        extra="
    server {
        listen 127.0.0.1:$nofsync;
        location /v3/ {
            taurus_guard on;
            taurus_guard_audit_log $dir/logs/taurus-audit-nofsync.log
                fsync=off;
            proxy_pass http://backend;
        }
    }"
    fi

    cat > "$dir/nginx.conf" <<CONF
load_module $tmp/conf/ngx_http_taurus_guard_module.so;
worker_processes 1;
$gw_affinity
error_log $dir/logs/error.log warn;
pid $dir/logs/nginx.pid;
events { worker_connections 1024; }
http {
$(temp_paths)
    access_log off;
    keepalive_requests 1000000;

    upstream backend {
        server 127.0.0.1:$up_port;
        keepalive $conns;
        keepalive_requests 1000000;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    taurus_guard_credentials $tmp/conf/credentials;
    taurus_guard_audit_log $dir/logs/taurus-audit.log$audit_opts;
    taurus_guard_allow {
        $project ${instances[*]};
        ${include:+include $include;}
    }

    server {
        listen 127.0.0.1:$plain;
        location /v3/ {
            proxy_pass http://backend;
        }
    }
    server {
        listen 127.0.0.1:$guard;
        location /v3/ {
            taurus_guard on;
            proxy_pass http://backend;
        }
    }$extra
$(metrics_server "$name")
}
CONF
}


# write_cg_conf NAME PLAIN_PORT [GUARD_PORT]: an nginx for callgrind, in
# one process (no master, no worker): without GUARD_PORT the module is
# not even loaded; with it, PLAIN_PORT is a location where it is off.
write_cg_conf() {
    local name=$1 plain=$2 guard=${3:-}
    local dir="$tmp/$name" load="" guard_conf=""

    if [ -n "$guard" ]; then
        load="load_module $tmp/conf/ngx_http_taurus_guard_module.so;"
        guard_conf="
    taurus_guard_credentials $tmp/conf/credentials;
    taurus_guard_audit_log $dir/logs/taurus-audit.log$audit_opts;
    taurus_guard_allow {
        $project ${instances[*]};
    }
    server {
        listen 127.0.0.1:$guard;
        location /v3/ {
            taurus_guard on;
            proxy_pass http://backend;
        }
    }"
    fi

    cat > "$dir/nginx.conf" <<CONF
$load
master_process off;
daemon off;
error_log $dir/logs/error.log warn;
pid $dir/logs/nginx.pid;
events { worker_connections 1024; }
http {
$(temp_paths)
    access_log off;
    keepalive_requests 1000000;

    upstream backend {
        server 127.0.0.1:$up_port;
        keepalive 8;
        keepalive_requests 1000000;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
$guard_conf
    server {
        listen 127.0.0.1:$plain;
        location /v3/ {
            proxy_pass http://backend;
        }
    }
$(metrics_server "$name")
}
CONF
}


# nginx_t NAME: `nginx -t` on a gateway's configuration
nginx_t() {
    "$nginx" -t -q -p "$tmp/$1/" -e "$tmp/$1/logs/error.log" \
        -c "$tmp/$1/nginx.conf"
}


# nginx_t_cpu NAME: the same, printing the CPU time it took (user and
# system, in ms): on a shared machine the wall clock measures the
# neighbours too
nginx_t_cpu() {
    perl -e 'system(@ARGV) == 0 or exit 1; my @t = times;
        printf "%d\n", ($t[2] + $t[3]) * 1000' -- \
        "$nginx" -t -q -p "$tmp/$1/" -e "$tmp/$1/logs/error.log" \
        -c "$tmp/$1/nginx.conf"
}


wait_port() {
    local port=$1 i

    for i in $(seq 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$port after 30 s"
}


# start_nginx NAME PORT...: the nginx in $tmp/NAME in the foreground of a
# background job, so $! is the master and the trap stops exactly what was
# started; returns once it listens on every PORT.
start_nginx() {
    local name=$1 port w
    shift

    "$nginx" -p "$tmp/$name/" -e "$tmp/$name/logs/error.log" \
        -c "$tmp/$name/nginx.conf" -g 'daemon off;' &
    pids+=($!)
    gw_master[$name]=$!
    for port in "$@"; do
        wait_port "$port"
    done

    # its only worker (there is no cache manager in these confs)
    w=$(pgrep -P "${gw_master[$name]}" | head -1)
    [ -n "$w" ] || die "no worker under the $name nginx"
    gw_worker[$name]=$w
}


# --- measuring -------------------------------------------------------------

# Called in the main shell (die in a $(...) would only end the subshell):
# a worker that died and was respawned would make every number wrong.
check_worker() {
    [ -r "/proc/$1/stat" ] || die "the gateway worker $1 is gone (a crash?)"
}


# cpu_us PID: CPU time of a process (all its threads, so the thread
# pool's flushes count too) in microseconds, its minor page faults, and
# the CPU time of its threads other than the main one (the audit's
# thread pool): "user system faults pool".  Fields are counted after the
# ")" that ends the command name.
cpu_us() {
    local pid=$1 stat rest main

    stat=$(cat "/proc/$pid/task/$pid/stat")
    rest=${stat##*) }
    set -- $rest
    main=$(( (${12} + ${13}) * 1000000 / clk_tck ))

    stat=$(cat "/proc/$pid/stat")
    rest=${stat##*) }
    set -- $rest
    # after "pid (comm) ": $1 is state (field 3); minflt is 10, utime 14,
    # stime 15
    echo $(( ${12} * 1000000 / clk_tck )) $(( ${13} * 1000000 / clk_tck )) \
        "$8" $(( (${12} + ${13}) * 1000000 / clk_tck - main ))
}


rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}


# allow_records FILE
allow_records() {
    grep -c -F '"decision":"allow"' "$1" 2>/dev/null || true
}


# check_once URL BODY STATUS [GREP]: one request with curl, outside wrk,
# to be sure a case measures what it claims (the module answered, the
# upstream's body came back) before spending seconds on it.
check_once() {
    local url=$1 body=$2 want=$3 grep=${4:-} got

    got=$(curl -sS -o "$tmp/resp" -D "$tmp/resp.h" -w '%{http_code}' \
        -H 'Content-Type: application/json' --data-binary "@$body" "$url")
    if [ "$got" != "$want" ] \
        || { [ -n "$grep" ] && ! grep -q -- "$grep" "$tmp/resp"; }
    then
        echo "bench: expected $want${grep:+ with $grep} from $url, got $got:" \
            >&2
        cat "$tmp/resp.h" "$tmp/resp" >&2
        echo >&2
        die "the bench cannot measure this"
    fi
}


# define_case NAME GATEWAY PORT BODY [PATH [AUDIT_FILE]]
define_case() {
    c_gw[$1]=$2
    c_port[$1]=$3
    c_body[$1]=$4
    c_path[$1]=${5:-$route}
    c_log[$1]=${6:-$tmp/$2/logs/taurus-audit.log}
    a_req[$1]=0 a_us[$1]=0 a_usr[$1]=0 a_sys[$1]=0 a_p50[$1]=0 a_p99[$1]=0
    a_flt[$1]=0 a_pool[$1]=0 a_round[$1]=
}


url_of() {
    echo "http://127.0.0.1:${c_port[$1]}${c_path[$1]}"
}


# prepare NAME: one checked request, then a short unmeasured run
# (keepalive connections up, caches warm)
prepare() {
    local name=$1 gw=${c_gw[$1]} url

    url=$(url_of "$name")
    check_once "$url" "${c_body[$name]}" 200 '"resp":"success"'
    if [ "$name" != "${name#plain}" ]; then
        ! grep -qi '^X-Taurus-Guard-Id:' "$tmp/resp.h" \
            || die "$name: X-Taurus-Guard-Id on the plain port"
    else
        grep -qi '^X-Taurus-Guard-Id:' "$tmp/resp.h" \
            || die "$name: no X-Taurus-Guard-Id, the module did not run"
    fi

    "${wrk_cmd[@]}" -t1 -c"$conns" -d1s -s "$bench/post.lua" "$url" \
        -- "${c_body[$name]}" > /dev/null

    check_worker "${gw_worker[$gw]}"
    a_rss0[$name]=$(rss_kb "${gw_worker[$gw]}")
    a_audit0[$name]=$(allow_records "${c_log[$name]}")
}


# field LINE KEY: a number from post.lua's result line
field() {
    sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<< "$1"
}


# round NAME SECONDS: one measured wrk run, summed into the a_* maps
round() {
    local name=$1 secs=$2 w=${gw_worker[${c_gw[$1]}]}
    local out line n bad k u0 s0 f0 p0 u1 s1 f1 p1

    check_worker "$w"
    read -r u0 s0 f0 p0 <<< "$(cpu_us "$w")"
    out=$("${wrk_cmd[@]}" -t1 -c"$conns" -d"${secs}s" -s "$bench/post.lua" \
        "$(url_of "$name")" -- "${c_body[$name]}")
    # the last requests in flight when wrk stopped are the worker's too
    sleep 0.1
    check_worker "$w"
    read -r u1 s1 f1 p1 <<< "$(cpu_us "$w")"

    line=$(grep '^TG_BENCH ' <<< "$out") \
        || die "$name: no result line from wrk:"$'\n'"$out"
    n=$(field "$line" requests)
    bad=""
    for k in non2xx connect read write timeout; do
        [ "$(field "$line" $k)" = 0 ] || bad="$bad $k=$(field "$line" $k)"
    done
    if [ -n "$bad" ]; then
        echo "$out" >&2
        die "$name: $n requests, errors:$bad"
    fi
    # a loopback proxy does thousands a second: a handful means requests
    # hang (wrk counts a timeout only after 2 s, and not at the very end)
    if [ "$n" -lt $(( secs * 20 )) ]; then
        echo "$out" >&2
        die "$name: only $n requests in $secs s: the gateway stalls"
    fi

    a_req[$name]=$(( a_req[$name] + n ))
    a_us[$name]=$(( a_us[$name] + $(field "$line" duration_us) ))
    a_usr[$name]=$(( a_usr[$name] + u1 - u0 ))
    a_sys[$name]=$(( a_sys[$name] + s1 - s0 ))
    a_flt[$name]=$(( a_flt[$name] + f1 - f0 ))
    a_pool[$name]=$(( a_pool[$name] + p1 - p0 ))
    a_round[$name]="${a_round[$name]} $(awk -v c=$(( u1 - u0 + s1 - s0 )) \
        -v n="$n" 'BEGIN { printf "%.2f", c / n }')"
    a_p50[$name]=$(( a_p50[$name] + $(field "$line" p50_us) ))
    if [ "$(field "$line" p99_us)" -gt "${a_p99[$name]}" ]; then
        a_p99[$name]=$(field "$line" p99_us)
    fi
}


# finish NAME: memory after, and the audit file's word that every request
# wrk counted on a guarded port was written as allowed (a few more may
# have completed after wrk stopped counting)
finish() {
    local name=$1 gw=${c_gw[$1]}

    check_worker "${gw_worker[$gw]}"
    a_rss1[$name]=$(rss_kb "${gw_worker[$gw]}")
    a_audit[$name]=$(( $(allow_records "${c_log[$name]}") - a_audit0[$name] ))
    if [ "$name" = "${name#plain}" ] \
        && [ "${a_audit[$name]}" -lt "${a_req[$name]}" ]; then
        die "$name: ${a_req[$name]} requests but ${a_audit[$name]} allow" \
            "records"
    fi
}


# compare CASE...: the cases in alternating rounds
compare() {
    local i c secs=$(( seconds / rounds ))

    [ "$secs" -ge 1 ] || secs=1
    for c in "$@"; do
        prepare "$c"
    done
    for i in $(seq "$rounds"); do
        for c in "$@"; do
            flush_mark "$c" 0
            round "$c" "$secs"
            flush_mark "$c" 1
        done
    done
    for c in "$@"; do
        finish "$c"
    done
    for i in "$@"; do
        printf 'bench: %-10s %8d requests, %6d req/s, %7s us CPU/request\n' \
            "$i" "${a_req[$i]}" "$(rps "$i")" "$(per_req "$i" cpu)"
    done
}


# --- records per flush (group commit) ---------------------------------------

# flush_mark NAME 0|1: the gateway's audit counters before (0) and after
# (1) one of NAME's rounds, from its metrics location; the differences
# add up over the rounds, so the cases of a compare, which share a
# gateway, each count their own: flushes, records flushed, records
# written and the writes that put them there.
declare -A m_port f_mark f_flush f_rec f_wrec f_writes

flush_mark() {
    local name=$1 port=${m_port[${c_gw[$1]}]:-} m now

    [ -n "$port" ] || return 0
    m=$(curl -sS "http://127.0.0.1:$port/metrics") \
        || die "no metrics from 127.0.0.1:$port"
    now=$(awk '
        $1 == "taurus_guard_audit_flush_seconds_count" { f = $2 }
        $1 == "taurus_guard_audit_flushed_records_total" { r = $2 }
        $1 == "taurus_guard_audit_records_total" { w = $2 }
        $1 == "taurus_guard_audit_writes_total" { n = $2 }
        END { printf "%d %d %d %d", f, r, w, n }' <<< "$m")
    if [ "$2" = 0 ]; then
        f_mark[$name]=$now
        return 0
    fi
    set -- ${f_mark[$name]} $now
    f_flush[$name]=$(( ${f_flush[$name]:-0} + $5 - $1 ))
    f_rec[$name]=$(( ${f_rec[$name]:-0} + $6 - $2 ))
    f_wrec[$name]=$(( ${f_wrec[$name]:-0} + $7 - $3 ))
    f_writes[$name]=$(( ${f_writes[$name]:-0} + $8 - $4 ))
}


# metrics_server NAME: a server for the gateway's metrics, if it has a port
metrics_server() {
    local port=${m_port[$1]:-}

    [ -z "$port" ] || echo "    server { listen 127.0.0.1:$port;" \
        "location = /metrics { taurus_guard_metrics; } }"
}


flush_report() {
    local c

    echo "Audit records per fdatasync (group commit; the metrics'"
    echo "flushed_records_total / flush_seconds_count over the rounds):"
    for c in module-1 module-50; do
        [ -n "${f_flush[$c]:-}" ] || continue
        printf '  %-10s %7d records, %6d flushes, %6s records/flush\n' \
            "$c" "${f_rec[$c]}" "${f_flush[$c]}" "$(awk -v r="${f_rec[$c]}" \
            -v f="${f_flush[$c]}" 'BEGIN { printf "%.1f", f ? r / f : 0 }')"
    done
    echo "Audit records per write (one writev() a turn of the event loop;"
    echo "records_total / writes_total over the rounds):"
    for c in module-1 module-50 nofsync-1 nofsync-50; do
        [ -n "${f_writes[$c]:-}" ] || continue
        printf '  %-10s %7d records, %6d writes, %6s records/write\n' \
            "$c" "${f_wrec[$c]}" "${f_writes[$c]}" \
            "$(awk -v r="${f_wrec[$c]}" -v f="${f_writes[$c]}" \
            'BEGIN { printf "%.1f", f ? r / f : 0 }')"
    done
}


# --- instructions (callgrind) ---------------------------------------------

# start_cg NAME PORT...: the nginx in $tmp/NAME under callgrind; sets
# cg_pid to valgrind's pid (the nginx process itself: valgrind runs it in
# place), returns once it listens on every PORT.
start_cg() {
    local name=$1 port
    shift

    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name/cg.out" \
        --log-file="$tmp/$name/logs/valgrind.log" \
        "$nginx" -p "$tmp/$name/" -e "$tmp/$name/logs/error.log" \
        -c "$tmp/$name/nginx.conf" &
    pids+=($!)
    cg_pid=$!
    for port in "$@"; do
        wait_port "$port"
    done
}


# cg_case NAME PID PORT BODY: instructions per request of one case, from
# a zeroing to a dump of PID's counters around a counted run
cg_case() {
    local name=$1 pid=$2 port=$3 body=$4 before after file total

    perl "$bench/client.pl" "$port" "$route" "$body" 20 \
        || die "$name: the warm-up requests failed"
    callgrind_control -z "$pid" > /dev/null 2>&1 || die "callgrind_control -z"
    perl "$bench/client.pl" "$port" "$route" "$body" "$cg_requests" \
        || die "$name: the counted requests failed"
    before=$(ls "$(dirname "$cg_file")" | grep -c '^cg\.out\.' || true)
    callgrind_control -d "$pid" > /dev/null 2>&1 || die "callgrind_control -d"
    after=$(ls "$(dirname "$cg_file")" | grep -c '^cg\.out\.' || true)
    [ "$after" -gt "$before" ] || die "$name: callgrind wrote no dump"
    file="$cg_file.$after"
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
    [ -n "$total" ] || die "$name: no totals in $file"
    ir[$name]=$(( total / cg_requests ))
    printf 'bench: %-10s %9d instructions/request (callgrind, %d requests)\n' \
        "$name" "${ir[$name]}" "$cg_requests"
}


# Runs the six callgrind cases; a machine without valgrind gets a note.
instructions() {
    local cg_plain_port cg_off_port cg_guard_port pid_plain pid_mod

    if [ "$cg_requests" = 0 ]; then
        echo "bench: callgrind skipped (TG_BENCH_REQUESTS=0)"
        return
    fi
    if ! command -v valgrind > /dev/null \
        || ! command -v callgrind_control > /dev/null; then
        echo "bench: no valgrind: instructions per request not measured"
        cg_requests=0
        return
    fi

    cg_plain_port=$(free_port)
    cg_off_port=$(free_port)
    cg_guard_port=$(free_port)
    write_cg_conf cgplain "$cg_plain_port"
    write_cg_conf cgmod "$cg_off_port" "$cg_guard_port"

    start_cg cgplain "$cg_plain_port"
    pid_plain=$cg_pid
    start_cg cgmod "$cg_off_port" "$cg_guard_port"
    pid_mod=$cg_pid

    cg_file="$tmp/cgplain/cg.out"
    cg_case plain-1 "$pid_plain" "$cg_plain_port" "$tmp/body/1.json"
    cg_case plain-50 "$pid_plain" "$cg_plain_port" "$tmp/body/50.json"
    cg_file="$tmp/cgmod/cg.out"
    cg_case off-1 "$pid_mod" "$cg_off_port" "$tmp/body/1.json"
    cg_case off-50 "$pid_mod" "$cg_off_port" "$tmp/body/50.json"
    cg_case module-1 "$pid_mod" "$cg_guard_port" "$tmp/body/1.json"
    cg_case module-50 "$pid_mod" "$cg_guard_port" "$tmp/body/50.json"

    # valgrind is slow to stop and nothing more is measured on them
    kill -TERM "$pid_plain" "$pid_mod" 2>/dev/null || true
}


# TG_BENCH_ONLY=instructions: the ratios, then where the guarded cases'
# instructions go (inclusive of what each function calls, top 25).
instructions_only() {
    local c f

    [ "$cg_requests" != 0 ] || return 0
    echo
    printf '  %-10s %9s %9s\n' '' '1 inst.' '50 inst.'
    for c in plain off module; do
        printf '  %-10s %9d %9d\n' "$c" "${ir[$c-1]}" "${ir[$c-50]}"
    done
    printf '  module/plain: %sx (target 3x), %sx (target 15x)\n' \
        "$(ir_ratio module-1 plain-1)" "$(ir_ratio module-50 plain-50)"
    printf '  off/plain:    %sx, %sx (target 1.02x)\n' \
        "$(ir_ratio off-1 plain-1)" "$(ir_ratio off-50 plain-50)"
    command -v callgrind_annotate > /dev/null || return 0
    # the dumps of cgmod: off-1, off-50, module-1, module-50 in turn
    for c in module-1:3 module-50:4; do
        f="$tmp/cgmod/cg.out.${c#*:}"
        [ -f "$f" ] || continue
        echo
        echo "${c%:*}: instructions per request by function (self):"
        callgrind_annotate --threshold=100 "$f" 2>/dev/null \
            | perl -ne 'BEGIN { $n = shift } next unless
                  /^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S+)/;
                  my ($v, $pct, $f) = ($1, $2, $3);
                  next if $pct > 90;        # main() and its callers
                  $v =~ tr/,//d; $f =~ s{^.*/(src|ngx_module)/}{};
                  printf "  %8d  %s\n", $v / $n, substr($f, 0, 70)
                  if $shown++ < 20' "$cg_requests"
    done
}


# --- a million allow-list entries ----------------------------------------

# Generates the list and the gw1m gateway including it; sets big_project,
# big_instance and big_route to a listed pair in the middle of the file.
allow_1m_setup() {
    local plain=$1 guard=$2 pick

    echo "bench: generating 1000 projects x 1000 instances"
    pick=$(perl "$bench/gen-allow.pl" "$tmp/conf/allow-1m.conf" 1000 1000)
    big_project=${pick% *}
    big_instance=${pick#* }
    big_route="/v3/$big_project/instances/database-version/upgrade"
    write_gateway_conf gw1m "$plain" "$guard" "$tmp/conf/allow-1m.conf"
}


# `nginx -t` twice (the first also reads the 37 MB include from disk),
# then the gateway started; sets c_load*, t_load* and t_start.
allow_1m_load() {
    local t0

    t0=$(now_ms)
    c_load1=$(nginx_t_cpu gw1m) || die "nginx -t failed on the 1M list"
    t_load1=$(( $(now_ms) - t0 ))
    t0=$(now_ms)
    c_load2=$(nginx_t_cpu gw1m) || die "nginx -t failed on the 1M list"
    t_load2=$(( $(now_ms) - t0 ))
    t0=$(now_ms)
    start_nginx gw1m "$@"
    t_start=$(( $(now_ms) - t0 ))
}


# A listed pair is let through, an absent one refused.
allow_1m_check() {
    local port=$1 absent=deadbeefdeadbeefdeadbeefdeadbeefin07

    make_body "$tmp/body/big-allowed.json" "$big_instance"
    make_body "$tmp/body/big-denied.json" "$absent"
    check_once "http://127.0.0.1:$port$big_route" \
        "$tmp/body/big-allowed.json" 200 '"resp":"success"'
    echo "bench: 1M list: listed $big_project $big_instance -> 200"
    check_once "http://127.0.0.1:$port$big_route" \
        "$tmp/body/big-denied.json" 403 "$absent"
    echo "bench: 1M list: absent $big_project $absent -> 403"
}


# Instructions of one tg_allow_contains() on the 1M list, half of the
# lookups found, half not (build/bench/allow-lookup under callgrind,
# counting inside that function only); empty without valgrind or the
# tool.
allow_lookup_ir() {
    local tool=$top/build/bench/allow-lookup n=100000 out total

    [ -x "$tool" ] && command -v valgrind > /dev/null || return 0
    out="$tmp/conf/lookup.cg"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        --collect-atstart=no --toggle-collect=tg_allow_contains \
        --log-file="$tmp/conf/lookup.log" \
        "$tool" "$tmp/conf/allow-1m.conf" "$n" > /dev/null \
        || die "allow-lookup failed under valgrind"
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
    [ -n "$total" ] && echo $(( total / n ))
}


# The million-entry list's first lines of report: `nginx -t` and start.
allow_1m_head() {
    echo "Allow-list of 1,000,050 entries (1000 x 1000 generated + 50):"
    printf '  nginx -t:     CPU %s s, %s s  (target 1 s: %s);' \
        "$(seconds_of_ms "$c_load1")" "$(seconds_of_ms "$c_load2")" \
        "$(verdict "$(( c_load1 < c_load2 ? c_load1 : c_load2 ))" 1000)"
    printf ' wall clock %s s, %s s\n' \
        "$(seconds_of_ms "$t_load1")" "$(seconds_of_ms "$t_load2")"
    printf '  start:        %s s  (until it listens)\n' \
        "$(seconds_of_ms "$t_start")"
}


# TG_BENCH_ONLY=allow: the million-entry list alone.
allow_only() {
    local plain=$1 guard=$2 w ir1

    allow_1m_setup "$plain" "$guard"
    allow_1m_load "$guard" "$plain"
    allow_1m_check "$guard"
    w=${gw_worker[gw1m]}
    check_worker "$w"
    ir1=$(allow_lookup_ir)
    check_logs

    echo
    allow_1m_head
    printf '  worker RSS:   %s kB with 1M entries (target 100 MB: %s)\n' \
        "$(rss_kb "$w")" "$(verdict "$(rss_kb "$w")" 102400)"
    printf '  lookup:       %s instructions (callgrind, %s)\n' \
        "${ir1:-?}" "half found, half not"
}


# Any [alert], [crit] or [emerg] means something broke under load: the
# numbers would not mean what they say.
check_logs() {
    if grep -h -E '\[(alert|crit|emerg)\]' "$tmp"/*/logs/error.log; then
        die "alerts in the error logs (above)"
    fi
}


# --- results ---------------------------------------------------------------

rps() {
    echo $(( a_req[$1] * 1000000 / a_us[$1] ))
}


# per_req NAME usr|sys|cpu|pool|faults: microseconds of CPU, or minor page
# faults, per request
per_req() {
    local c f=%.1f

    case $2 in
    usr) c=${a_usr[$1]} ;;
    sys) c=${a_sys[$1]} ;;
    cpu) c=$(( a_usr[$1] + a_sys[$1] )) ;;
    # the process's and its main thread's times are rounded to clock
    # ticks apart: a pool that did nothing can come out a tick below zero
    pool) c=$(( a_pool[$1] > 0 ? a_pool[$1] : 0 )) ;;
    faults) c=${a_flt[$1]} f=%.2f ;;
    esac
    awk -v c="$c" -v n="${a_req[$1]}" -v f="$f" \
        'BEGIN { printf f, c / n }'
}


# ratio A B: A's CPU per request over B's, the median of the rounds'
# ratios (A and B ran one after the other in each round, so a neighbour's
# load that comes and goes touches both sides of one ratio); ratio_range
# A B: the lowest and highest of them
ratio() {
    round_ratios "$1" "$2" | awk '{ r[NR] = $1 } END {
        m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
        printf "%.2f", m }'
}


ratio_range() {
    round_ratios "$1" "$2" | awk 'NR == 1 { lo = $1 } { hi = $1 }
        END { printf "%.2f-%.2f", lo, hi }'
}


round_ratios() {
    awk -v a="${a_round[$1]}" -v b="${a_round[$2]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) printf "%.4f\n", x[i] / y[i] }' | sort -n
}


# three decimals: the guard-off target, 1.02x, is a 2% margin, which a
# ratio rounded to two would pass at 1.0249
ir_ratio() {
    awk -v a="${ir[$1]}" -v b="${ir[$2]}" 'BEGIN { printf "%.3f", a / b }'
}


# verdict VALUE LIMIT
verdict() {
    awk -v v="$1" -v l="$2" 'BEGIN {
        if (v !~ /^[0-9]+(\.[0-9]+)?$/) print "not measured"
        else print (v + 0 <= l + 0) ? "within" : "OVER" }'
}


# cpu_verdict A B LIMIT: A's CPU ratio over B, the verdict against LIMIT,
# and the rounds' range, saying so when the range has rounds on both sides
# of LIMIT
cpu_verdict() {
    local r range lo hi both=""

    r=$(ratio "$1" "$2")
    range=$(ratio_range "$1" "$2")
    lo=${range%-*} hi=${range#*-}
    if [ "$(verdict "$lo" "$3")" = within ] \
        && [ "$(verdict "$hi" "$3")" = OVER ]; then
        both="; rounds on both sides"
    fi
    printf '%5sx (target %sx: %s; %s%s)' \
        "$r" "$3" "$(verdict "$r" "$3")" "$range" "$both"
}


seconds_of_ms() {
    printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 ))
}


report() {
    local c r1 r50 rbig

    echo
    echo "CPU: the gateway worker's per request (usr + sys = total), and"
    echo "the part of it spent by the worker's other threads: the audit's"
    echo "thread pool, in its fdatasync() (pool)."
    echo "Latency: wrk's (p50 averaged over rounds, p99 the worst)."
    echo "Faults: the worker's minor page faults per request (a heap that"
    echo "malloc grows and trims back as batches come and go shows here)."
    printf '%-10s %8s %6s %6s %6s %6s %5s %6s %6s %6s %15s\n' case \
        requests 'req/s' 'usr us' 'sys us' 'CPU us' pool faults 'p50 us' \
        'p99 us' 'worker RSS kB'
    for c in plain-1 module-1 nofsync-1 plain-50 module-50 nofsync-50 \
        list-51 list-1M; do
        printf '%-10s %8d %6d %6s %6s %6s %5s %6s %6d %6d %15s\n' "$c" \
            "${a_req[$c]}" "$(rps "$c")" "$(per_req "$c" usr)" \
            "$(per_req "$c" sys)" "$(per_req "$c" cpu)" \
            "$(per_req "$c" pool)" "$(per_req "$c" faults)" \
            $(( a_p50[$c] / rounds )) "${a_p99[$c]}" \
            "${a_rss0[$c]} -> ${a_rss1[$c]}"
    done

    if [ "$cg_requests" != 0 ]; then
        echo
        echo "Instructions per request (callgrind, user space), in one run:"
        printf '  %-10s %9s %9s\n' '' '1 inst.' '50 inst.'
        for c in plain off module; do
            printf '  %-10s %9d %9d\n' "$c" "${ir[$c-1]}" "${ir[$c-50]}"
        done
        r1=$(ir_ratio module-1 plain-1)
        r50=$(ir_ratio module-50 plain-50)
        printf '  module/plain: %sx (target 3x: %s), %sx (target 15x: %s)\n' \
            "$r1" "$(verdict "$r1" 3)" "$r50" "$(verdict "$r50" 15)"
        r1=$(ir_ratio off-1 plain-1)
        r50=$(ir_ratio off-50 plain-50)
        printf '  off/plain:    %sx, %sx (target 1.02x: %s, %s)\n' \
            "$r1" "$r50" "$(verdict "$r1" 1.02)" "$(verdict "$r50" 1.02)"
    fi

    echo
    echo "CPU per request under wrk -c$conns, module / plain (the median of" \
        "$rounds rounds' ratios; their range):"
    echo "  durable:   $(cpu_verdict module-1 plain-1 1.5)," \
        "$(cpu_verdict module-50 plain-50 3)"
    echo "  fsync=off: $(cpu_verdict nofsync-1 plain-1 1.3)," \
        "$(cpu_verdict nofsync-50 plain-50 2)"
    echo "  (\"rounds on both sides\": some rounds' ratios are above the" \
        "target and some"
    echo "  below: the machine's noise is larger than the distance to it)"
    rbig=$(ratio list-1M list-51)
    allow_1m_head
    printf '  lookup:       %6sx  (1-instance CPU/request, 1M list / 51);' \
        "$rbig"
    printf ' %s instructions (callgrind, half found, half not)\n' \
        "${ir_lookup:-?}"
    printf '  worker RSS:   %s kB with 1M entries (target 100 MB: %s),' \
        "${a_rss1[list-1M]}" "$(verdict "${a_rss1[list-1M]}" 102400)"
    printf ' %s kB with 51\n' "${a_rss1[list-51]}"
    echo "Audit: every counted request has its allow record (module-1:" \
        "${a_audit[module-1]}, module-50: ${a_audit[module-50]}," \
        "nofsync-1: ${a_audit[nofsync-1]}, nofsync-50:" \
        "${a_audit[nofsync-50]}, list-1M: ${a_audit[list-1M]})."
    flushes
    echo "Ratios are reported, not asserted."
}


# Records per flush: the durable log's records carry their time to the
# millisecond, and a group commit writes its batch in one go, so records
# sharing a time stamp approximate what one fdatasync() covered.
flushes() {
    local log="$tmp/gw/logs/taurus-audit.log"

    [ -s "$log" ] || return 0
    perl -ne 'if (/"time":"([^"]+)"/) { $n++; $t{$1} = 1 }
        END { printf "Records per flush (approx., same millisecond): %.1f" .
            " (%d records, %d time stamps)\n", $n / (keys %t || 1), $n,
            scalar keys %t }' "$log"
}


# --- the run ---------------------------------------------------------------

# Milliseconds since the epoch.
now_ms() {
    echo $(( $(date +%s%N) / 1000000 ))
}


main() {
    local i
    local up_port plain_port guard_port plain1m_port guard1m_port
    local nofsync_port

    need_tools
    setup_cpus
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    setup_dir
    clk_tck=$(getconf CLK_TCK)

    # the 50 instances every batch is drawn from, all on the allow-list
    instances=()
    for i in $(seq 50); do
        instances+=("$(instance_id "$i")")
    done
    make_body "$tmp/body/1.json" "${instances[0]}"
    make_body "$tmp/body/50.json" "${instances[@]}"

    up_port=$(free_port)
    plain_port=$(free_port)
    guard_port=$(free_port)
    plain1m_port=$(free_port)
    guard1m_port=$(free_port)
    nofsync_port=$(free_port)
    [ "$(printf '%s\n' "$up_port" "$plain_port" "$guard_port" \
        "$plain1m_port" "$guard1m_port" "$nofsync_port" | sort -u \
        | wc -l)" = 6 ] \
        || die "the kernel handed out one port twice; run again"

    echo "bench: $("$nginx" -v 2>&1), module $module"
    echo "bench: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2;
        exit }' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg)," \
        "audit log on $(stat -f -c %T "$tmp")"
    echo "bench: wrk 1 thread, $conns keepalive connections, $seconds s per" \
        "case in $rounds rounds; taurus_guard_audit_log FILE$audit_opts;"

    write_upstream_conf
    start_nginx up "$up_port"

    if [ "${TG_BENCH_ONLY:-}" = allow ]; then
        allow_only "$plain1m_port" "$guard1m_port"
        return
    fi

    instructions
    if [ "${TG_BENCH_ONLY:-}" = instructions ]; then
        instructions_only
        return
    fi

    # the gateway's metrics: its flushes and the records they carried
    m_port[gw]=$(free_port)
    write_gateway_conf gw "$plain_port" "$guard_port" "" "$nofsync_port"
    nginx_t gw
    start_nginx gw "$plain_port" "$guard_port" "$nofsync_port"

    define_case plain-1 gw "$plain_port" "$tmp/body/1.json"
    define_case module-1 gw "$guard_port" "$tmp/body/1.json"
    define_case nofsync-1 gw "$nofsync_port" "$tmp/body/1.json" "" \
        "$tmp/gw/logs/taurus-audit-nofsync.log"
    define_case plain-50 gw "$plain_port" "$tmp/body/50.json"
    define_case module-50 gw "$guard_port" "$tmp/body/50.json"
    define_case nofsync-50 gw "$nofsync_port" "$tmp/body/50.json" "" \
        "$tmp/gw/logs/taurus-audit-nofsync.log"
    compare plain-1 module-1 nofsync-1
    compare plain-50 module-50 nofsync-50
    check_logs

    # --- one million allow-list entries, in a second gateway ---
    allow_1m_setup "$plain1m_port" "$guard1m_port"
    allow_1m_load "$guard1m_port"
    wait_port "$plain1m_port"
    allow_1m_check "$guard1m_port"

    # the same 1-instance batch shape, against 51 entries and against 1M
    define_case list-51 gw "$guard_port" "$tmp/body/1.json"
    define_case list-1M gw1m "$guard1m_port" "$tmp/body/big-allowed.json" \
        "$big_route"
    compare list-51 list-1M
    check_logs
    ir_lookup=$(allow_lookup_ir)

    report
    flush_report
}


main "$@"
