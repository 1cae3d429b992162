"""wechatpy behind a minimal Python HTTP server, for `make bench`: verify the signature, parse,
reply with a text message. Usage: wechatpy_server.py PORT TOKEN"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from wechatpy import create_reply, parse_message
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

PORT, TOKEN = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            check_signature(TOKEN, q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
        except InvalidSignatureException:
            return self.answer(403)
        msg = parse_message(body)
        self.answer(200, create_reply("hello back", msg).render().encode())


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
