"""`channel: wechat_mp`: the WeChat Official Account (公众号) dialect of the callback core.

wechatpy checks the signature, decrypts safe-mode (`encrypt_type=aes`) bodies, parses the XML and
renders passive replies; the customer-service message API sends the rest. See callback.py for
the 5-second rule and intake.py for the checks every POST passes.

With an EncodingAESKey configured, plaintext POSTs are refused (`require_encryption`): WeChat's
compatible and safe modes both send `encrypt_type=aes`, and a plaintext body is signed only
through the query, so it could be anyone's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Mapping
from xml.parsers.expat import ExpatError

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import WeChatException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.channels.callback import CallbackChannel, Forbidden, Parsed
from bot.channels.wechat_api import WeChatAPI
from bot.config import Settings, WechatMpSettings
from bot.domain import InboundMessage
from bot.errors import ConfigError
from bot.text import whole_number

log = logging.getLogger(__name__)

# what a bad request can raise inside wechatpy: a wrong signature or appid, bad base64 or padding, bad XML
BAD_REQUEST = (WeChatException, KeyError, ValueError, TypeError, ExpatError, UnicodeError, AttributeError)

KINDS = {"text": "text", "image": "image", "voice": "voice", "video": "video", "shortvideo": "video",
         "location": "other", "link": "link", "file": "file"}
# CreateTime between 2000 and 2100: anything else is not a time WeChat sent
EARLIEST, LATEST = 946_684_800, 4_102_444_800


def _field(msg: Any, name: str) -> Any:
    # wechatpy keeps the parsed XML as a dict; an unknown message type has no attribute for its MsgType
    return msg._data.get(name)


def _text(msg: Any, name: str, required: bool = True) -> str:
    """A field that must be plain text: a nested element (a dict) or, when required, nothing is refused."""
    value = _field(msg, name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise Forbidden(f"{name} is missing or not text")
    return value


def _created(msg: Any) -> int:
    value = whole_number(_text(msg, "CreateTime"))
    if value is None or not EARLIEST <= value <= LATEST:
        raise Forbidden("CreateTime is not a time")
    return value


def to_inbound(msg: Any, message_id: str) -> InboundMessage:
    """A wechatpy message (Official Account or WeCom) as the bot's own type; malformed fields are Forbidden."""
    source = _text(msg, "FromUserName")
    kind = KINDS.get(msg.type, "other")
    return InboundMessage(
        message_id=message_id,
        chat_id=source,  # an openid (or WeCom user id): every conversation is one-to-one
        sender_id=source,
        sender_name=source,  # no nickname in the callback; the id is what admins configure
        text=_text(msg, "Content", required=False) if kind == "text" else "",
        sent_at=datetime.fromtimestamp(_created(msg), timezone.utc),  # CreateTime, in seconds
        kind=kind,
    )


def parse(raw: bytes | str, parser: Any = parse_message) -> Parsed:
    msg = parser(raw)
    if msg is None:
        raise Forbidden("empty body")
    source = _text(msg, "FromUserName")
    _text(msg, "ToUserName")  # it becomes the passive reply's FromUserName, so it must be text too
    # decided on the raw MsgType: an event wechatpy does not know comes back as an "unknown" message,
    # and must not be taken for something a person wrote
    if _text(msg, "MsgType").lower() == "event":
        # wechatpy renames a follow through a QR code to subscribe_scan(_product) in the same dict
        event = _text(msg, "Event", required=False).lower() or "unknown"
        return Parsed(key=f"{source}:{_created(msg)}:{event}", sender_id=source, event=event, context=msg)
    msg_id = _text(msg, "MsgId", required=False)
    if msg_id and whole_number(msg_id, 20) is None:  # a 64-bit id has up to 20 digits
        raise Forbidden("MsgId is not a number")
    key = msg_id or f"{source}:{_created(msg)}"
    return Parsed(key=key, sender_id=source, inbound=to_inbound(msg, key), context=msg)


def cdata_safe(text: str) -> str:
    # wechatpy writes text into <![CDATA[...]]> as it is: a "]]>" inside would end the section and let
    # the rest be read as XML elements. Closing the section there and opening another keeps it text.
    return text.replace("]]>", "]]]]><![CDATA[>")


class MpDialect:
    name = "wechat_mp"

    def __init__(self, settings: WechatMpSettings) -> None:
        if settings.token is None or not settings.appid:
            raise ConfigError("channel wechat_mp needs wechat_mp.token and wechat_mp.appid (the values in the admin console)")
        if settings.account_type == "service" and settings.secret is None:
            raise ConfigError("a service account needs wechat_mp.secret (better as MOODBOT__WECHAT_MP__SECRET) "
                              "to send through the customer-service API")
        if settings.require_encryption and settings.encoding_aes_key is None:
            raise ConfigError("wechat_mp.require_encryption needs wechat_mp.encoding_aes_key (the admin console's "
                              "EncodingAESKey)")
        self.token = settings.token.get_secret_value()
        aes_key = settings.encoding_aes_key.get_secret_value() if settings.encoding_aes_key else None
        self.crypto = WeChatCrypto(self.token, aes_key, settings.appid) if aes_key else None
        self.require_encryption = settings.require_encryption is not False and self.crypto is not None
        self.api = WeChatAPI(
            settings.api_base, "/cgi-bin/token",
            {"grant_type": "client_credential", "appid": settings.appid,
             "secret": settings.secret.get_secret_value() if settings.secret else ""},
            settings.api_timeout_s, settings.rate_limit_retries, settings.rate_limit_wait_s,
        )

    def _check(self, query: Mapping[str, str]) -> None:
        try:
            check_signature(self.token, query["signature"], query["timestamp"], query["nonce"])
        except BAD_REQUEST as exc:
            raise Forbidden(f"bad signature ({exc.__class__.__name__})") from None

    def verify(self, query: Mapping[str, str]) -> str:
        self._check(query)
        return query.get("echostr", "")

    def precheck(self, query: Mapping[str, str]) -> None:
        self._check(query)  # both modes carry the query signature; safe mode signs the ciphertext as well
        if self.require_encryption and query.get("encrypt_type") != "aes":
            raise Forbidden("a plaintext message, but wechat_mp.encoding_aes_key is set and require_encryption "
                            "is on: set the admin console to compatible or safe mode")

    def parse(self, query: Mapping[str, str], body: bytes) -> Parsed:
        encrypted = query.get("encrypt_type") == "aes"
        try:
            if encrypted:
                if self.crypto is None:
                    raise Forbidden("safe mode needs wechat_mp.encoding_aes_key")
                raw: bytes | str = self.crypto.decrypt_message(
                    body, query["msg_signature"], query["timestamp"], query["nonce"])
            else:
                raw = body
            parsed = parse(raw)
        except BAD_REQUEST as exc:
            raise Forbidden(f"cannot verify or read the message ({exc.__class__.__name__})") from None
        parsed.context = (parsed.context, encrypted, query)
        return parsed

    def render(self, parsed: Parsed, text: str) -> str:
        msg, encrypted, query = parsed.context
        xml: str = TextReply(content=cdata_safe(text), message=msg).render()
        if encrypted and self.crypto is not None:
            return str(self.crypto.encrypt_message(xml, query["nonce"], query.get("timestamp")))
        return xml

    async def send_text(self, to: str, text: str) -> None:
        await self.api.post("/cgi-bin/message/custom/send", {"touser": to, "msgtype": "text", "text": {"content": text}})

    async def close(self) -> None:
        await self.api.close()


def build_channel(settings: Settings) -> CallbackChannel:
    mp = settings.wechat_mp
    return CallbackChannel(mp, MpDialect(mp), mp.account_type, mp.reply_timeout_s, mp.retry_hold_s, mp.slow_reply)
