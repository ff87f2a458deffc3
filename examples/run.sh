#!/bin/bash
# `make run`: the example gateway (examples/nginx.conf) in the foreground
# on 127.0.0.1:8080, in front of a local stand-in for the TaurusDB endpoint
# on 127.0.0.1:8081 that checks the signature.  Ctrl-C stops both.

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
run="$top/build/run"
nginx=${TG_NGINX:-/usr/sbin/nginx}
project=0123456789abcdef0123456789abcdef
instance=6754902da1f447269c6979b0590102a5in07
url="http://127.0.0.1:8080/v3/$project/instances/database-version/upgrade"

rm -rf "$run"
mkdir -p "$run/conf" "$run/logs" "$run/temp" "$run/modules"
cp -r "$top/examples/nginx.conf" "$top/examples/taurus" "$run/conf/"
ln -s "$top/build/ngx_http_taurus_guard_module.so" "$run/modules/"

# Workers run as nobody when nginx starts as root: the secret files must
# be theirs alone, and every directory on the way traversable.
chmod -R go+rX "$run"
chmod 0600 "$run/conf/taurus/credentials"
if [ "$(id -u)" = 0 ]; then
    chown nobody "$run/conf/taurus/credentials"
    chown -R nobody "$run/temp"
fi
d="$run"
while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done

for port in 8080 8081; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "make run: port $port is busy on 127.0.0.1; stop what uses it" >&2
        exit 1
    fi
done

perl "$top/t/lib/tg-upstream.pl" --listen 127.0.0.1:8081 \
    --credentials "$run/conf/taurus/credentials" \
    --audit-log "$run/logs/taurus-audit.log" \
    --record "$run/logs/upstream.jsonl" &
upstream=$!

cleanup() {
    kill "$upstream" 2>/dev/null || true
    if [ -f "$run/logs/nginx.pid" ]; then
        kill -QUIT "$(cat "$run/logs/nginx.pid")" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'echo; echo "stopped."; exit 0' INT TERM

"$nginx" -t -q -p "$run/" -c conf/nginx.conf

cat <<MSG

taurus-guard is listening on 127.0.0.1:8080 (stand-in endpoint: 8081).
Audit log: $run/logs/taurus-audit.log   Ctrl-C stops everything.

Allowed (signed, forwarded, {"resp":"success"}):

  curl -i -H 'Content-Type: application/json' $url \\
    -d '{"databases_instance_infos":[{"current_version":"2.0.48.231200","instance_id":"$instance"}],"delay":"false"}'

Denied (403, names the instance, nothing forwarded):

  curl -i -H 'Content-Type: application/json' $url \\
    -d '{"databases_instance_infos":[{"current_version":"2.0.48.231200","instance_id":"99999999999999999999999999999999in07"}],"delay":"false"}'

MSG

"$nginx" -p "$run/" -c conf/nginx.conf -g 'daemon off;' &
wait $!
