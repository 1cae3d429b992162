"""wechatpy as WeChat: encrypts pushes and decrypts replies with a second, independent
implementation, so the worker is checked against code it shares nothing with.

    wechatpy_peer.py encrypt TOKEN AES_KEY APPID < plain.xml   -> JSON {body, msg_signature, timestamp, nonce}
    wechatpy_peer.py decrypt TOKEN AES_KEY APPID < envelope.xml -> the plain reply XML
"""
import json
import sys
import time

from wechatpy.crypto import WeChatCrypto


def main():
    cmd, token, key, appid = sys.argv[1:5]
    crypto = WeChatCrypto(token, key, appid)
    data = sys.stdin.read()
    if cmd == "encrypt":
        nonce, timestamp = "424242", str(int(time.time()))
        envelope = crypto.encrypt_message(data, nonce, timestamp)
        from wechatpy.utils import to_text
        import xml.etree.ElementTree as ET
        root = ET.fromstring(envelope)
        encrypt = root.find("Encrypt").text
        body = "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt></xml>" % encrypt
        print(json.dumps({"body": body, "msg_signature": root.find("MsgSignature").text, "timestamp": timestamp, "nonce": nonce, "encrypt": to_text(encrypt)}))
    elif cmd == "decrypt":
        import xml.etree.ElementTree as ET
        root = ET.fromstring(data)
        print(crypto.decrypt_message(data, root.find("MsgSignature").text, root.find("TimeStamp").text, root.find("Nonce").text))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
