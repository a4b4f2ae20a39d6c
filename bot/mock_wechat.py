"""WeChat without WeChat, on loopback: a fake of WeChat's API server and a player of WeChat's callbacks.

`FakeWeChatAPI` issues access tokens and records customer-service (`message/custom/send`) and
WeCom (`message/send`) sends; it can expire its tokens (40001), answer chosen error codes or an
HTTP 5xx (sends and token requests), and close a user's 48-hour window (45015). `WeChatPlayer` plays WeChat's servers: it
signs and encrypts callbacks exactly as WeChat does (SHA1 signatures, AES-256-CBC with the
EncodingAESKey, PKCS#7 to 32 bytes, the appid or corp id inside) without wechatpy, so the bot's
use of wechatpy is checked against an independent implementation, and it decrypts the passive
replies. Used by the tests and by `python -m bot demo --channel wechat_mp|wecom`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import secrets
import socket
import struct
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DEMO_TOKEN = "moodbotdemotoken"
DEMO_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as the admin console makes them
DEMO_APPID = "wx0123456789abcdef"
DEMO_SECRET = "demo-app-secret"
DEMO_CORP_ID = "ww0123456789abcdef"
DEMO_AGENT_ID = 1000002


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (demos and tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeWeChatAPI:
    """A real HTTP server on 127.0.0.1 that answers like api.weixin.qq.com / qyapi.weixin.qq.com."""

    def __init__(self, appid: str = DEMO_APPID, secret: str = DEMO_SECRET, corp_id: str = DEMO_CORP_ID) -> None:
        self.credentials = {("appid", appid): secret, ("corpid", corp_id): secret}
        self.sends: list[dict[str, Any]] = []  # every accepted send: {"path", "touser", "content", "agentid"}
        self.errors: list[dict[str, Any]] = []  # every refused call, with its errcode or status
        self.token_requests = 0
        self.valid_tokens: set[str] = set()
        self.closed_windows: set[str] = set()
        self._inject: list[int] = []  # errcodes (or HTTP statuses 500..599) for the next sends, in order
        self._inject_token: list[int] = []  # HTTP statuses for the next token requests
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner._get(self)

            def do_POST(self) -> None:  # noqa: N802
                owner._post(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # --- what tests and the demo control --------------------------------------------------

    def fail_next(self, *codes: int) -> None:
        """The next sends answer these errcodes (or, for 500..599, that HTTP status) in turn."""
        with self._lock:
            self._inject.extend(codes)

    def fail_token_next(self, *statuses: int) -> None:
        """The next token requests answer these HTTP statuses (5xx) in turn."""
        with self._lock:
            self._inject_token.extend(statuses)

    def expire_tokens(self) -> None:
        with self._lock:
            self.valid_tokens.clear()

    def close_window(self, user: str) -> None:
        self.closed_windows.add(user)

    def open_window(self, user: str) -> None:
        self.closed_windows.discard(user)

    def sent_to(self, user: str) -> list[str]:
        return [s["content"] for s in list(self.sends) if s["touser"] == user]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the server side --------------------------------------------------------------------

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, data: dict[str, Any], status: int = 200) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path in ("/cgi-bin/token", "/cgi-bin/gettoken"):
            self.token_requests += 1
            with self._lock:
                status = self._inject_token.pop(0) if self._inject_token else None
            if status is not None:
                self.errors.append({"path": url.path, "status": status})
                self._answer(handler, {"errmsg": "server error"}, status)
                return
            who, secret = ("appid", query.get("secret")) if url.path == "/cgi-bin/token" else ("corpid", query.get("corpsecret"))
            if self.credentials.get((who, query.get(who, ""))) != secret:
                self._answer(handler, {"errcode": 40013 if who == "appid" else 40001, "errmsg": "invalid credential"})
                return
            token = f"token-{next(self._numbers)}-{secrets.token_hex(4)}"
            with self._lock:
                self.valid_tokens.add(token)
            self._answer(handler, {"access_token": token, "expires_in": 7200, "errcode": 0, "errmsg": "ok"})
            return
        self._answer(handler, {"errcode": 404, "errmsg": "no such api"}, 404)

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        payload = json.loads(handler.rfile.read(int(handler.headers.get("content-length", 0))).decode("utf-8"))
        if url.path not in ("/cgi-bin/message/custom/send", "/cgi-bin/message/send"):
            self._answer(handler, {"errcode": 404, "errmsg": "no such api"}, 404)
            return
        touser = str(payload.get("touser", ""))
        with self._lock:
            injected = self._inject.pop(0) if self._inject else None
            token_ok = query.get("access_token") in self.valid_tokens
        record = {"path": url.path, "touser": touser, "content": payload.get("text", {}).get("content", ""),
                  "agentid": payload.get("agentid")}
        if injected is not None and 500 <= injected < 600:  # an HTTP status; anything else is an errcode
            self.errors.append({**record, "status": injected})
            self._answer(handler, {"errmsg": "server error"}, injected)
            return
        errcode = injected or (0 if token_ok else 40001)
        if not errcode and touser in self.closed_windows:
            errcode = 45015
        if errcode:
            self.errors.append({**record, "errcode": errcode})
            self._answer(handler, {"errcode": errcode, "errmsg": f"injected or refused ({errcode})"})
            return
        self.sends.append(record)
        self._answer(handler, {"errcode": 0, "errmsg": "ok"})


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _cdata(tag: str, value: str | int) -> str:
    if isinstance(value, int):
        return f"<{tag}>{value}</{tag}>"
    # "]]>" would end the section early: close it there and open another, as an XML writer must
    return f"<{tag}><![CDATA[{value.replace(']]>', ']]]]><![CDATA[>')}]]></{tag}>"


@dataclass
class Answer:
    status: int
    body: str
    text: str | None  # the passive reply's Content, decrypted where it was encrypted; None for no reply


class WeChatPlayer:
    """Plays WeChat's servers calling the bot: `dialect` is "wechat_mp" or "wecom"."""

    def __init__(self, url: str, dialect: str = "wechat_mp", token: str = DEMO_TOKEN, aes_key: str = DEMO_AES_KEY,
                 appid: str = DEMO_APPID, account: str = "gh_moodbot_demo", agent_id: int = DEMO_AGENT_ID) -> None:
        self.url = url
        self.dialect = dialect
        self.token = token
        self.key = base64.b64decode(aes_key + "=")
        self.appid = appid  # the corp id for WeCom
        self.account = account
        self.agent_id = agent_id
        self._ids = itertools.count(int(time.time() * 1000))
        self.client = httpx.AsyncClient(timeout=30)

    async def close(self) -> None:
        await self.client.aclose()

    # --- WeChat's crypto, written from the published rules ------------------------------------

    def encrypt(self, plain: str) -> str:
        body = plain.encode()
        data = os.urandom(16) + struct.pack(">I", len(body)) + body + self.appid.encode()
        pad = 32 - len(data) % 32
        data += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()

    def decrypt(self, ciphertext: str) -> str:
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        data = decryptor.update(base64.b64decode(ciphertext)) + decryptor.finalize()
        data = data[: -data[-1]]
        length = struct.unpack(">I", data[16:20])[0]
        if data[20 + length:].decode() != self.appid:
            raise ValueError("the reply was encrypted for another appid")
        return data[20: 20 + length].decode()

    # --- requests -----------------------------------------------------------------------------

    def message_xml(self, user: str, msg_type: str, msg_id: int | None = None, created: int | None = None,
                    **fields: str | int) -> str:
        parts = [_cdata("ToUserName", self.account if self.dialect == "wechat_mp" else self.appid),
                 _cdata("FromUserName", user), _cdata("CreateTime", int(time.time()) if created is None else created),
                 _cdata("MsgType", msg_type)]
        parts += [_cdata(k, v) for k, v in fields.items()]
        if msg_id is not None:
            parts.append(_cdata("MsgId", msg_id))
        if self.dialect == "wecom":
            parts.append(_cdata("AgentID", self.agent_id))
        return "<xml>" + "".join(parts) + "</xml>"

    def next_id(self) -> int:
        return next(self._ids)

    async def handshake(self, bad_signature: bool = False) -> httpx.Response:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        if self.dialect == "wecom":  # WeCom encrypts the echo string and signs the ciphertext
            echostr = self.encrypt("echo-" + nonce)
            signature = sha1_signature(self.token, timestamp, nonce, echostr)
            query = {"msg_signature": "0" * 40 if bad_signature else signature, "timestamp": timestamp,
                     "nonce": nonce, "echostr": echostr}
        else:
            signature = sha1_signature(self.token, timestamp, nonce)
            query = {"signature": "0" * 40 if bad_signature else signature, "timestamp": timestamp,
                     "nonce": nonce, "echostr": "echo-" + nonce}
        return await self.client.get(self.url, params=query)

    def sign(self, xml: str, encrypted: bool = True, bad_signature: bool = False, bad_ciphertext: bool = False,
             timestamp: int | None = None, nonce: str | None = None) -> tuple[dict[str, str], str]:
        """The query and body WeChat would POST for `xml`: a current timestamp and a fresh nonce unless given."""
        stamp, nonce = str(int(time.time()) if timestamp is None else timestamp), nonce or secrets.token_hex(5)
        query: dict[str, str] = {"timestamp": stamp, "nonce": nonce}
        body = xml
        if self.dialect == "wechat_mp":
            query["signature"] = "0" * 40 if bad_signature and not encrypted else sha1_signature(self.token, stamp, nonce)
            query["openid"] = ET.fromstring(xml).findtext("FromUserName") or ""
        if encrypted or self.dialect == "wecom":
            ciphertext = self.encrypt(xml)
            if bad_ciphertext:  # correctly signed, but not a ciphertext of this key
                ciphertext = base64.b64encode(os.urandom(len(base64.b64decode(ciphertext)))).decode()
            signature = sha1_signature(self.token, stamp, nonce, ciphertext)
            query["msg_signature"] = "0" * 40 if bad_signature else signature
            if self.dialect == "wechat_mp":
                query["encrypt_type"] = "aes"
            to_user = self.account if self.dialect == "wechat_mp" else self.appid
            body = f"<xml>{_cdata('ToUserName', to_user)}{_cdata('Encrypt', ciphertext)}</xml>"
        return query, body

    async def send(self, query: dict[str, str], body: str | bytes) -> Answer:
        content = body.encode() if isinstance(body, str) else body
        response = await self.client.post(self.url, params=query, content=content, headers={"content-type": "text/xml"})
        return Answer(response.status_code, response.text, self._read_reply(response))

    async def post(self, xml: str, encrypted: bool = True, bad_signature: bool = False,
                   bad_ciphertext: bool = False, timestamp: int | None = None) -> Answer:
        return await self.send(*self.sign(xml, encrypted, bad_signature, bad_ciphertext, timestamp))

    def _read_reply(self, response: httpx.Response) -> str | None:
        if response.status_code != 200 or not response.text.startswith("<xml"):
            return None
        root = ET.fromstring(response.text)
        ciphertext = root.findtext("Encrypt")
        if ciphertext is not None:
            expected = sha1_signature(self.token, root.findtext("TimeStamp") or "", root.findtext("Nonce") or "", ciphertext)
            if expected != root.findtext("MsgSignature"):
                raise ValueError("the bot's reply carries a bad MsgSignature")
            root = ET.fromstring(self.decrypt(ciphertext))
        return root.findtext("Content")

    async def text(self, user: str, text: str, msg_id: int | None = None, encrypted: bool = True,
                   created: int | None = None) -> Answer:
        return await self.post(self.message_xml(user, "text", msg_id or self.next_id(), created, Content=text), encrypted)

    async def image(self, user: str, encrypted: bool = True) -> Answer:
        xml = self.message_xml(user, "image", self.next_id(), PicUrl="http://127.0.0.1/cat.jpg", MediaId="media1")
        return await self.post(xml, encrypted)

    async def event(self, user: str, event: str = "subscribe", encrypted: bool = True, **fields: str) -> Answer:
        return await self.post(self.message_xml(user, "event", None, None, Event=event, **fields), encrypted)
