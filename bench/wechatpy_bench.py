"""wechatpy doing the worker's work per message: check the signature, (decrypt,) parse, route,
build the reply, render it (and encrypt + sign in safe mode). Prints ns per message as JSON."""
import json
import sys
import time

from wechatpy import parse_message, create_reply
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature


def main():
    inputs = json.load(open(sys.argv[1]))
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    crypto = WeChatCrypto(inputs["token"], inputs["aes_key"], inputs["appid"])
    out = {}
    for case in inputs["cases"]:
        q, body, safe = case["query"], case["body"], case["safe"]

        def once():
            check_signature(inputs["token"], q["signature"], q["timestamp"], q["nonce"])
            xml = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"]) if safe else body
            msg = parse_message(xml)
            if msg.type == "text" and msg.content.strip().lower() == "help":
                reply = create_reply(inputs["help"], msg)
            elif msg.type == "event" and msg.event in ("subscribe", "subscribe_scan"):
                reply = create_reply(inputs["welcome"], msg)
            else:
                reply = None
            rendered = reply.render() if reply else "success"
            return crypto.encrypt_message(rendered, q["nonce"], q["timestamp"]) if safe else rendered

        sample = once()
        assert ("<Encrypt>" in sample) if safe else ("<Content>" in sample), sample
        # The fastest slice of 64 calls within the time budget (as every implementation here is
        # timed): on a shared machine noise only adds time.
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            for _ in range(64):
                once()
            best = min(best, (time.perf_counter() - t) * 1e9 / 64)
        out[case["name"]] = best
    print(json.dumps(out))


if __name__ == "__main__":
    main()
