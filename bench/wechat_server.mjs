// node-webot's `wechat` behind node's http server (it is connect middleware), for `make bench`.
// Usage: node wechat_server.mjs PORT TOKEN APPID
import http from "node:http";
import wechat from "wechat";

const [port, token, appid] = process.argv.slice(2);
const handle = wechat({ token, appid }, (req, res) => res.reply("hello back"));
http.createServer((req, res) => {
  req.query = Object.fromEntries(new URL(req.url, "http://localhost").searchParams);
  handle(req, res, () => { res.statusCode = 404; res.end(); });
}).listen(Number(port), "127.0.0.1");
