// co-wechat behind Koa, for `make bench`. Usage: node co_wechat_server.mjs PORT TOKEN APPID
import Koa from "koa";
import wechat from "co-wechat";

const [port, token, appid] = process.argv.slice(2);
const app = new Koa();
app.use(wechat({ token, appid }).middleware(async () => "hello back"));
app.listen(Number(port), "127.0.0.1");
