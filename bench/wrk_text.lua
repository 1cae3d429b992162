-- Distinct text messages under one fresh plain-mode signature: WeChat's plain mode signs only
-- token, timestamp and nonce, so every request can carry a new message (a new MsgId, one of
-- 5,000 followers) and no server can answer from a retry cache.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
end

request = function()
  counter = counter + 1
  local n = tid * 100000000 + counter
  local body = string.format(
    "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[oBench%05d]]></FromUserName>" ..
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content>" ..
    "<MsgId>%d</MsgId></xml>", n % 5000, n)
  return wrk.format("POST", wrk.path, { ["Content-Type"] = "text/xml" }, body)
end
