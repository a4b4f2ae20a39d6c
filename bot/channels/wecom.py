"""`channel: wecom`: the WeCom (企业微信) self-built app dialect of the callback core.

Callbacks are always encrypted and are answered at once; replies go through `message/send` with
the app's agent id. Events (change_contact from "sys", taskcard_click, ...) are never answered.
"""

from __future__ import annotations

from typing import Mapping

from wechatpy.enterprise import parse_message
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.channels.callback import CallbackChannel, Forbidden, Parsed
from bot.channels.wechat_api import WeChatAPI
from bot.channels.wechat_mp import BAD_REQUEST, parse
from bot.config import Settings, WecomSettings
from bot.errors import ConfigError


class WecomDialect:
    name = "wecom"

    def __init__(self, settings: WecomSettings) -> None:
        missing = [key for key in ("corp_id", "agent_id", "secret", "token", "encoding_aes_key") if getattr(settings, key) is None]
        if missing:
            raise ConfigError("channel wecom needs " + ", ".join(f"wecom.{key}" for key in missing)
                              + " (secrets better as MOODBOT__WECOM__SECRET etc.)")
        assert settings.token and settings.encoding_aes_key and settings.secret and settings.corp_id
        self.agent_id = settings.agent_id
        self.crypto = WeChatCrypto(settings.token.get_secret_value(), settings.encoding_aes_key.get_secret_value(),
                                   settings.corp_id)
        self.api = WeChatAPI(
            settings.api_base, "/cgi-bin/gettoken",
            {"corpid": settings.corp_id, "corpsecret": settings.secret.get_secret_value()},
            settings.api_timeout_s, settings.rate_limit_retries, settings.rate_limit_wait_s,
        )

    def verify(self, query: Mapping[str, str]) -> str:
        try:
            return str(self.crypto.check_signature(query["msg_signature"], query["timestamp"], query["nonce"],
                                                   query["echostr"]))
        except BAD_REQUEST as exc:
            raise Forbidden(f"bad signature or echostr ({exc.__class__.__name__})") from None

    def precheck(self, query: Mapping[str, str]) -> None:
        # WeCom signs only with msg_signature, over the ciphertext: parse() checks it once the body is read
        if not all(query.get(key) for key in ("msg_signature", "timestamp", "nonce")):
            raise Forbidden("msg_signature, timestamp or nonce missing")

    def parse(self, query: Mapping[str, str], body: bytes) -> Parsed:
        try:
            raw = self.crypto.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"])
            return parse(raw, parse_message)
        except BAD_REQUEST as exc:
            raise Forbidden(f"cannot verify or read the message ({exc.__class__.__name__})") from None

    def render(self, parsed: Parsed, text: str) -> str:
        raise NotImplementedError("WeCom callbacks are answered at once; replies go through message/send")

    async def send_text(self, to: str, text: str) -> None:
        await self.api.post("/cgi-bin/message/send",
                            {"touser": to, "msgtype": "text", "agentid": self.agent_id, "text": {"content": text}})

    async def close(self) -> None:
        await self.api.close()


def build_channel(settings: Settings) -> CallbackChannel:
    return CallbackChannel(settings.wecom, WecomDialect(settings.wecom), "none")
