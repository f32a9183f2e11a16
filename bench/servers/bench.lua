-- bench/servers/bench.lua — wrk script for bench/servers/run.sh.
--
-- BENCH_MODE (environment) picks the request:
--   rumor_put   PUT /v1/kv/bench/<tag>/<thread>/<n>, body 64 bytes
--   etcd_put    POST /v3/kv/put {"key": b64("bench/<tag>/<thread>/<n>"), "value": b64(64 bytes)}
--   rumor_read  GET /v1/kv/bench/read?consistent
--   etcd_range  POST /v3/kv/range {"key": b64("bench/read")} (linearizable by default)
-- Every write goes to a new key (n counts per thread; BENCH_TAG names the
-- run, so run.sh can count afterwards the keys each run wrote). done() prints one line that run.sh parses:
--   RESULT requests=N duration_us=D p50_us=A p99_us=B non2xx=E sockerr=F

local mode = os.getenv("BENCH_MODE") or "rumor_put"
local tag = os.getenv("BENCH_TAG") or "run"
local value = string.rep("v", 64)

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
	local out = {}
	for i = 1, #s, 3 do
		local a, b, c = s:byte(i, i + 2)
		local n = a * 65536 + (b or 0) * 256 + (c or 0)
		local c1 = math.floor(n / 262144) % 64
		local c2 = math.floor(n / 4096) % 64
		local c3 = math.floor(n / 64) % 64
		local c4 = n % 64
		out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1) ..
			(b and alphabet:sub(c3 + 1, c3 + 1) or "=") .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
	end
	return table.concat(out)
end

local value64 = b64(value)
local counter = 1

function setup(thread)
	thread:set("tid", counter)
	counter = counter + 1
end

function init(args)
	n = 0
	if mode == "rumor_read" then
		fixed = wrk.format("GET", "/v1/kv/bench/read?consistent")
	elseif mode == "etcd_range" then
		fixed = wrk.format("POST", "/v3/kv/range", nil, '{"key":"' .. b64("bench/read") .. '"}')
	end
end

function request()
	if fixed then
		return fixed
	end
	n = n + 1
	local key = "bench/" .. tag .. "/" .. tid .. "/" .. n
	if mode == "etcd_put" then
		return wrk.format("POST", "/v3/kv/put", nil,
			'{"key":"' .. b64(key) .. '","value":"' .. value64 .. '"}')
	end
	return wrk.format("PUT", "/v1/kv/" .. key, nil, value)
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d sockerr=%d\n",
		summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
