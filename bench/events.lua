-- wrk script: POST CloudEvents with a unique id each (the bridge dedupes on source + id,
-- so a repeated id would measure the duplicate path), one per request or a batch per request.
--
--   wrk -s bench/events.lua URL -- TEMPLATE BATCH NONCE
--
-- TEMPLATE: file with one compact event whose id is __ID__. BATCH: events per request
-- (1 = one structured event, Content-Type application/json as Altinn sends; more = a JSON
-- array, application/cloudevents-batch+json). NONCE: 8 hex digits, unique per run.
-- Ids look like UUIDs: NONCE-0bec-4TTT-b898-CCCCCCCCCCCC (T = wrk thread, C = counter).
-- At the end one line "BENCH_JSON {...}" carries the counts and latency percentiles, in the
-- keys bench/load.py prints (unanswered = wrk's timeouts).

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_no", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local template = file:read("*a")
  file:close()
  local first, last = string.find(template, "__ID__", 1, true)
  assert(first, "template has no __ID__")
  prefix = string.sub(template, 1, first - 1)
  suffix = string.sub(template, last + 1)
  batch = tonumber(args[2])
  nonce = args[3]
  counter = 0
  if batch == 1 then
    wrk.headers["Content-Type"] = "application/json; charset=utf-8"
  else
    wrk.headers["Content-Type"] = "application/cloudevents-batch+json"
  end
end

local function next_event()
  counter = counter + 1
  return prefix .. string.format("%s-0bec-4%03x-b898-%012x", nonce, thread_no, counter) .. suffix
end

function request()
  local body
  if batch == 1 then
    body = next_event()
  else
    local events = {}
    for i = 1, batch do
      events[i] = next_event()
    end
    body = "[" .. table.concat(events, ",") .. "]"
  end
  return wrk.format("POST", nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.6f,"non_2xx":%d,"errors":%d,"unanswered":%d,'
      .. '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"bytes":%d,"mean_ms":%.4f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.bytes, latency.mean / 1000))
end
