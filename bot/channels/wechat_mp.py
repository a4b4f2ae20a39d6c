"""`channel: wechat_mp`: the WeChat Official Account (公众号) dialect of the callback core.

wechatpy checks the signature, decrypts safe-mode (`encrypt_type=aes`) bodies, parses the XML and
renders passive replies; the customer-service message API sends the rest. See callback.py for
the 5-second rule.
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

log = logging.getLogger(__name__)

# what a bad request can raise inside wechatpy: a wrong signature or appid, bad base64 or padding, bad XML
BAD_REQUEST = (WeChatException, KeyError, ValueError, TypeError, ExpatError, UnicodeError, AttributeError)

KINDS = {"text": "text", "image": "image", "voice": "voice", "video": "video", "shortvideo": "video",
         "location": "other", "link": "link", "file": "file"}


def to_inbound(msg: Any, message_id: str) -> InboundMessage:
    """A wechatpy message (Official Account or WeCom) as the bot's own type."""
    kind = KINDS.get(msg.type, "other")
    return InboundMessage(
        message_id=message_id,
        chat_id=msg.source,  # an openid (or WeCom user id): every conversation is one-to-one
        sender_id=msg.source,
        sender_name=msg.source,  # no nickname in the callback; the id is what admins configure
        text=(msg.content or "") if kind == "text" else "",
        sent_at=datetime.fromtimestamp(int(msg.time), timezone.utc),  # CreateTime, in seconds
        kind=kind,
    )


def parse(raw: bytes | str, parser: Any = parse_message) -> Parsed:
    msg = parser(raw)
    if msg is None:
        raise Forbidden("empty body")
    if msg.type == "event":
        return Parsed(key=f"{msg.source}:{int(msg.time)}:{msg.event}", sender_id=msg.source,
                      event=msg.event, context=msg)
    key = str(msg.id) if getattr(msg, "id", 0) else f"{msg.source}:{int(msg.time)}"
    return Parsed(key=key, sender_id=msg.source, inbound=to_inbound(msg, key), context=msg)


class MpDialect:
    name = "wechat_mp"

    def __init__(self, settings: WechatMpSettings) -> None:
        if settings.token is None or not settings.appid:
            raise ConfigError("channel wechat_mp needs wechat_mp.token and wechat_mp.appid (the values in the admin console)")
        if settings.account_type == "service" and settings.secret is None:
            raise ConfigError("a service account needs wechat_mp.secret (better as MOODBOT__WECHAT_MP__SECRET) "
                              "to send through the customer-service API")
        self.token = settings.token.get_secret_value()
        aes_key = settings.encoding_aes_key.get_secret_value() if settings.encoding_aes_key else None
        self.crypto = WeChatCrypto(self.token, aes_key, settings.appid) if aes_key else None
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

    def parse(self, query: Mapping[str, str], body: bytes) -> Parsed:
        self._check(query)
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
        xml: str = TextReply(content=text, message=msg).render()
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
