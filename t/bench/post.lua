-- wrk script for `make bench`: POSTs the JSON body held in a file.
--
--   wrk -s t/bench/post.lua URL -- body.json
--
-- init() runs in each wrk thread before wrk builds its one request, so the
-- body, method and Content-Type set here are what every request carries
-- (wrk adds Content-Length itself).  done() prints one machine-readable
-- line for t/bench/run.sh, so it never parses wrk's human summary.

function init(args)
    local f = assert(io.open(args[1], "rb"))
    wrk.body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "TG_BENCH requests=%d duration_us=%d non2xx=%d connect=%d " ..
        "read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, e.status, e.connect,
        e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(99)))
end
