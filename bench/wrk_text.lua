-- Distinct text messages, each under its own signed query, as WeChat sends them: a fresh nonce
-- per push (its retries would repeat the query with the same body). The queries are signed in
-- advance by http_bench.mjs (wrk's Lua has no SHA-1) and read from the file named after `--`.
-- Every request carries a new message (a new MsgId, one of 5,000 followers), so no server can
-- answer from a retry cache, and none is refused as a replay.
local threads = {}
local counter = 0
local queries = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  for line in io.lines(args[1]) do
    table.insert(queries, line)
  end
end

request = function()
  counter = counter + 1
  local n = tid * 100000000 + counter
  -- Each thread takes its own half of the queries, so no two requests share one.
  local q = queries[(tid * 100000 + counter - 1) % #queries + 1]
  local body = string.format(
    "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBench%05d]]></FromUserName>" ..
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content>" ..
    "<MsgId>%d</MsgId></xml>", n % 5000, n)
  return wrk.format("POST", wrk.path .. "?" .. q, { ["Content-Type"] = "text/xml" }, body)
end
