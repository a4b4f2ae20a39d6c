"""The reply guard: rules every generated reply must pass before it is sent.

A reply is rejected when it restates the message, is in the wrong language, repeats the bot's
previous reply in the chat, or carries a number, time, price, phone number, e-mail or URL that the
message, the memory and the knowledge given to the prompt do not contain. The caller regenerates
once with other settings, then falls back to a curated line. Pure functions: tested with fakes.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterable, Sequence

from bot.knowledge import STOPWORDS
from bot.text import asks_nothing, detect_lang, greets_only, has_chinese, has_words

# how much of a reply may be the message's own words before it counts as an echo
ECHO_OVERLAP = 0.6
RESTATE_OVERLAP = 0.35
NGRAM = 3
# a reply that repeats this much of the message word for word, in one run, restates it wherever the
# run stands and however the reply goes on ("考试没考好，心情很低落，这几天…"); messages shorter than
# QUOTE_MIN units (characters for Chinese, words for English) may be named whole
QUOTE_SHARE = 0.8
QUOTE_MIN = {"zh": 6, "en": 4}
# a reply whose n-grams are mostly the bot's previous reply says it again ("周末可以去郊外徒步…" after
# "可以去郊外徒步…"): the tuned model copies its last turn from the prompt's memory
REPEAT_OVERLAP = 0.5
# from this many n-grams: short replies share stock phrases ("ok, got it", "Aw, that's so sweet!")
REPEAT_MIN_GRAMS = 4
_CORE = re.compile(r"[\W_]+", re.UNICODE)
_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|cn|net|org|io|top)\b", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_NUMBER = re.compile(r"\d+(?:[.:：,，-]\d+)*")
# Chinese numerals that state a fact ("九点", "三天", "五十元", "三个月"), not "一下", "一起" or "一点" / "一点点"
# ("a little"; one o'clock is written with 钟 or 半, or after 上午 / 下午 / 凌晨 / 晚上)
_ZH_FACT = re.compile(r"(?:(?<![零一二两三四五六七八九十百千万])一点(?:半|钟))|(?:(?:上午|下午|凌晨|晚上|中午)一点)"
                      r"|(?:[零二两三四五六七八九十百千万][零一二两三四五六七八九十百千万]*|一(?=[零一二两三四五六七八九十百千万]))"
                      r"[零一二两三四五六七八九十百千万]*(?:点|点半|号|天|个?小时|分钟|元|块|折|个?工作日|周|个?星期|个?礼拜|年|个?月|岁)"
                      r"|一(?:号|天|小时|分钟|元|块|折|个工作日|周|年|月)")
# vague amounts that state no fact: "这两天" (these days), "空了一块" (a piece), "一块儿" (together);
# "一块钱" and "十一块" stay facts
_ZH_VAGUE = re.compile(r"(?:这|过|前|那)两天|(?<![零一二两三四五六七八九十百千万])一块(?!钱)")
_CLAUSE = re.compile(r"[。.!！?？…]")  # sentence ends: the opening sentence
_FIRST_PERSON = re.compile(r"^\s*(?:你好[，,]\s*)?(?:我|i\b|i'm\b|im\b|my\b)", re.IGNORECASE)


def _core(text: str) -> str:
    return _CORE.sub("", text.lower())


def units(text: str, lang: str) -> list[str]:
    """What the rules count: characters for Chinese (punctuation and spaces left out), words otherwise."""
    return list(_core(text)) if lang == "zh" else [w for w in _CORE.split(text.lower()) if w]


def _grams(text: str, lang: str) -> list[str]:
    parts = units(text, lang)
    sep = "" if lang == "zh" else " "
    return [sep.join(parts[i : i + NGRAM]) for i in range(len(parts) - NGRAM + 1)]


def overlap(reply: str, message: str, lang: str) -> float:
    """Share of the reply's n-grams (characters for Chinese, words for English) found in the message."""
    grams = _grams(reply, lang)
    if not grams:
        return 0.0
    source = set(_grams(message, lang))
    return sum(g in source for g in grams) / len(grams)


def quotes(reply: str, message: str, lang: str) -> bool:
    """The reply repeats at least QUOTE_SHARE of the message in one unbroken run.

    Each window of the run's length is looked up as a substring: at most a fifth of the message's
    length in lookups, where a longest-common-substring search costs reply x message steps."""
    said, heard = units(reply, lang), units(message, lang)
    run = math.ceil(QUOTE_SHARE * len(heard) - 1e-9)
    if len(heard) < QUOTE_MIN.get(lang, QUOTE_MIN["en"]) or len(said) < run:
        return False
    sep = "" if lang == "zh" else " "  # words are matched whole
    text = sep + sep.join(said) + sep
    return any(sep + sep.join(heard[i : i + run]) + sep in text for i in range(len(heard) - run + 1))


def near_repeat(reply: str, previous: str, lang: str) -> bool:
    """The reply says the bot's previous reply again, mostly in its words."""
    return len(_grams(reply, lang)) >= REPEAT_MIN_GRAMS and overlap(reply, previous, lang) >= REPEAT_OVERLAP


def echoes(reply: str, message: str, lang: str) -> bool:
    """The reply is the message back, whole or mostly, or restated as if the bot had the problem."""
    a, b = _core(reply), _core(message)
    if not a or not b:
        return False
    if a in b or (b in a and len(b) >= 0.6 * len(a)):
        return True
    share = overlap(reply, message, lang)
    if share >= ECHO_OVERLAP or (bool(_FIRST_PERSON.match(reply)) and share >= RESTATE_OVERLAP):
        return True
    if quotes(reply, message, lang):
        return True
    # a reply that opens by restating the message ("考试没考好，心情很低落。你…") also echoes it
    opening = _CLAUSE.split(reply.strip(), maxsplit=1)[0]
    return len(_grams(opening, lang)) >= 4 and overlap(opening, message, lang) >= ECHO_OVERLAP


def facts(text: str) -> set[str]:
    """The checkable facts in a text: numbers (times, prices, phone numbers), e-mails, URLs."""
    found = {m.group(0).lower() for m in _EMAIL.finditer(text)}
    rest = _EMAIL.sub(" ", text)
    found |= {m.group(0).lower().rstrip(".") for m in _URL.finditer(rest)}
    rest = _URL.sub(" ", rest)
    found |= {re.sub(r"[,，]", "", m.group(0)).replace("：", ":") for m in _NUMBER.finditer(rest)}
    found |= {m.group(0) for m in _ZH_FACT.finditer(_ZH_VAGUE.sub(" ", rest))}
    return found


def invented(reply: str, sources: Iterable[str]) -> set[str]:
    """Facts in the reply that appear in none of the sources (message, memory, knowledge)."""
    known = " ".join(sources)
    allowed = facts(known)
    flat = _core(known)
    return {f for f in facts(reply) if f not in allowed and _core(f) not in flat}


# chat-template markers (Llama 2, Gemma, ChatML, role tags): a reply holding one is the prompt or the
# template leaking, e.g. from a model server that formats chats with another model's template
_TEMPLATE = re.compile(r"\[/?INST\]|<</?SYS>>|<start_of_turn>|<end_of_turn>|<\|im_(start|end)\|>|<\|(system|user|assistant)\|>|</?s>")


# "I'll pass this to a colleague", "我转给同事帮您查": the reply promises that a person will follow up
# ("把票转给别人", "someone who never turns up" are not promises: the alert would page a person for nothing)
HANDOFF_PROMISE = re.compile(
    r"(转给(?!别人|他人|朋友|家人|对方|他|她)|转交|请同事|同事来|同事帮|让同事|通知同事|人工客服|转人工|问一下同事|问问同事)"
    r"|\b(colleague|teammate|our team|someone (will|from|who can|who knows)|connect you with someone"
    r"|(to|ask|with|get) a person|a person (will|who can|to))\b",
    re.IGNORECASE,
)

# A yes-or-no question about the business ("可以指定时间送货吗", "Can I upgrade my plan?"): with no
# knowledge given to the prompt, the bot cannot know the answer, so a reply that opens with one
# ("可以，…", "Yes, you can…") states a policy it invented. Questions about the bot itself ("是人工吗",
# "do you speak chinese?") and everyday ones ("炒饭用隔夜饭更好吗") it may answer.
_ZH_YES_NO = re.compile(r"(?<![什怎那这多要])[吗么嘛](?=[\W_]|$)|能不能|可不可以|可以不|有没有|是不是|会不会|要不要|支不支持|行不行")
_EN_YES_NO = re.compile(r"^\s*(?:\w+[,，]\s*)?(?:can|could|do|does|did|is|are|will|would|have|has|may|should)\b", re.IGNORECASE)
_BUSINESS = re.compile(
    r"送|发货|快递|物流|退|换货|运费|付款|支付|分期|加急|营业|上门|安装|会员|积分|优惠|折扣|发票|保修|库存|尺码|订单|账号|账户|"
    r"充值|余额|价|包邮|门店|预约|预订|取消|订阅|套餐|升级|开通|办理|转让|券|开门|节假日|"
    r"(?<![a-z])(?:orders?|ship|shipping|deliver\w*|refund\w*|return\w*|exchange|discounts?|prices?|cost|pay|paid|payment|"
    r"accounts?|points|member\w*|upgrade|plans?|subscriptions?|cancel\w*|stores?|shops?|open|warranty|install\w*|stock|"
    r"sizes?|coupons?|vouchers?|invoice|receipt|fees?|charge\w*|book\w*|reservations?|transfer|delivery|pick ?up|accept)(?![a-z])",
    re.IGNORECASE,
)
_ABOUT_BOT = re.compile(r"机器人|人工|真人|ai\b|\bbot\b|robot|human|real person|客服|customer service|chinese|english|中文|英文",
                        re.IGNORECASE)
_ZH_VERDICT = re.compile(r"^(?:当然|肯定)?(?:可以|能|会|有|是|对|行|支持|不可以|不能|不会|没有|不是|不行|不支持|没问题)的?$")
_ZH_VERDICT_START = re.compile(r"^(?:可以|能|会|支持|不可以|不能|不会|不支持)")
_ZH_VERDICT_END = re.compile(r"(?:可以|能|支持|没问题|不可以|不能|不行|不支持)的?$")
_EN_VERDICT = re.compile(r"^\s*(?:yes|yeah|yep|yup|sure|of course|absolutely|definitely|no|nope|not really)\b", re.IGNORECASE)
_OPENING = re.compile(r"[，,。.!！?？;；\s]")


def business_question(message: str, lang: str) -> bool:
    """A yes-or-no question about the business's own policy, not about the bot or everyday life."""
    if not _BUSINESS.search(message) or _ABOUT_BOT.search(message):
        return False
    return bool((_ZH_YES_NO if lang == "zh" else _EN_YES_NO).search(message))


def answers_unknown(reply: str, message: str, lang: str) -> bool:
    """The reply answers a yes-or-no question about the business yes or no, or by restating it as a
    statement ("你们周末上门吗" -> "周末上门，…"), when nothing given to the prompt says which."""
    if not business_question(message, lang):
        return False
    if lang == "zh":
        opening = _core(_OPENING.split(reply.strip(), maxsplit=1)[0])
        # "可以，…", "周末上门可以，…", "能上门安装，…" and "周末上门，…": a verdict, the question
        # restated around one, or restated alone
        if _ZH_VERDICT.match(opening) or _ZH_VERDICT_END.search(opening):
            return True
        heard = _core(message)
        said = _ZH_VERDICT_START.sub("", opening)
        return len(said) >= 2 and said.removesuffix("的") in heard
    return bool(_EN_VERDICT.match(reply))


# How to do something with the business or its app ("how do I reset my password?", "怎么修改收货地址"):
# with no FAQ entry in the prompt, any steps are invented ("Reset your password by pressing the reset
# button on the phone."), so the reply must say it does not know or hand the question to a colleague
_HOW_EN = re.compile(r"(?<![a-z])(?:how (?:do|can|should|would|could) (?:i|we)|how to|where (?:do|can) i|"
                     r"what(?:'s| is) the (?:way|process|procedure) to)(?![a-z])", re.IGNORECASE)
_HOW_ZH = re.compile(r"怎么|如何|怎样|咋")
_APP = re.compile(r"密码|登录|登陆|注册|验证码|绑定|解绑|地址|手机号|小程序|设置|"
                  r"(?<![a-z])(?:password|log ?in|sign ?(?:in|up)|verification|address|app|settings|profile|username|e-?mail)(?![a-z])",
                  re.IGNORECASE)
# "I have no information on that": what a reply to such a question may say, and what no reply to a
# greeting should
_NO_ANSWER = re.compile(r"我(?:这边|这里)没有|看不到|查不到|没(?:有)?办法|不清楚|不确定|答不上|没有(?:资料|信息|相关|准确|具体|数据)|"
                        r"don't have|do not have|not sure|no information|no details|can't see|cannot see|don't know|unable to",
                        re.IGNORECASE)


def hands_off(reply: str) -> bool:
    """The reply promises a colleague or says it has no answer ("我这边没有资料", "I don't have the details")."""
    return bool(HANDOFF_PROMISE.search(reply) or _NO_ANSWER.search(reply))


def how_to_question(message: str) -> bool:
    """The message asks how to do something with the business or its app (not with the bot, or in everyday life)."""
    if not (_HOW_EN.search(message) or _HOW_ZH.search(message)) or _ABOUT_BOT.search(message):
        return False
    return bool(_BUSINESS.search(message) or _APP.search(message))


def gives_unknown_steps(reply: str, message: str) -> bool:
    """The reply to a how-to question about the business neither says it does not know nor hands it on."""
    return how_to_question(message) and not (HANDOFF_PROMISE.search(reply) or _NO_ANSWER.search(reply))


def needless_handoff(message: str, lang: str, person: bool | None) -> bool:
    """A colleague promised to this message would have nothing to do: it only thanks, greets, checks
    that someone is there or says goodbye, it has no words ("?", "👍"), or the hand-off head says it needs no person (`person`
    False) and it is not a yes-or-no question about the business, which the head may miss but no
    reply may answer unaided."""
    return (asks_nothing(message) or greets_only(message) or not has_words(message)
            or (person is False and not business_question(message, lang)))


# a sentence and its closing punctuation ("。", "!", "?!", "..."), or a last one without any
_SENTENCE = re.compile(r"[^。！？!?.…]+[。！？!?.…]*")


def _without(reply: str, at_fault: Callable[[str], object]) -> str:
    """The reply less every sentence `at_fault` holds true of."""
    return "".join(s for s in _SENTENCE.findall(reply) if not at_fault(s)).strip()


def without_handoff(reply: str) -> str:
    """The reply less every sentence that promises a colleague: the tuned model often ends a fitting
    comfort line with "我转给同事帮您处理。", and the line alone can still be sent."""
    return _without(reply, HANDOFF_PROMISE.search)


# "积分有效期我这边没有资料", "Riverside Mall is not listed in the info I have": the reply says it has no
# information on something that the knowledge given to the prompt names. Either the knowledge answers
# the question and the reply withholds it, or the reply speaks of the entry's topic rather than the
# question's (asked about gift wrapping, "发货时间我这边没有资料"). Only the clause that says "I don't
# have" is read, since a reply may quote an entry and then say what it lacks ("只知道开场前 60 分钟内不能
# 退改，改签的规定我这边没有"): a Chinese three-character run, an entry's label ("保修：…") or the whole
# of what the clause says it lacks ("运费我这边没有资料"), an English word that carries a fact, shared
# with an entry.
_NOT_GIVEN = re.compile(r"\bnot (?:listed|mentioned|included|in (?:the|my) (?:info|information|notes|details))\b|"
                        r"\bisn't (?:listed|mentioned)\b|没(?:有)?(?:提到|列出|写)", re.IGNORECASE)
_PART = re.compile(r"[，,；;]|\b(?:but|so)\b")
_EN_WORD = re.compile(r"[a-z]+")
# words that name no fact: the knowledge base's stopwords and what a hand-off says around its topic
_EN_PLAIN = STOPWORDS | frozenset(
    "info information details detail colleague colleagues team sure know sorry one ones thing things right now exact "
    "exactly order orders item items product products tell give back check answer question anything something more here "
    "see".split())
_LABEL = re.compile(r"^([^：:]{2,6})[：:]")
_ZH_FILLER = re.compile(r"资料|信息|记录|数据|说明|详情|具体|准确|相关|确切|这方面|这个|关于|方面|的|呢|哦|啊")


def _named_in(part: str, knowledge: Sequence[str]) -> bool:
    if has_chinese(part):
        said, runs = _core(part), set(_grams(part, "zh"))
        topic = _core(_ZH_FILLER.sub("", part))  # "运费我这边没有资料" -> "运费"
        for line in knowledge:
            entry = _core(line)
            label = _LABEL.match(line.strip())
            if (runs & set(_grams(line, "zh")) or (label and _core(label.group(1)) in said)
                    or (len(topic) >= 2 and topic in entry)):
                return True
        return False
    words = {w.removesuffix("s") for w in _EN_WORD.findall(part.lower()) if len(w) >= 3 and w not in _EN_PLAIN}
    return any(words & {w.removesuffix("s") for w in _EN_WORD.findall(line.lower())} for line in knowledge)


def denies_knowledge(reply: str, knowledge: Sequence[str]) -> bool:
    """A clause of the reply says the bot has no information on something an entry of `knowledge` names."""
    for sentence in _SENTENCE.findall(reply):
        for part in _PART.split(sentence):
            if not (_NO_ANSWER.search(part) or _NOT_GIVEN.search(part)):
                continue
            topic = _NOT_GIVEN.sub(" ", _NO_ANSWER.sub(" ", HANDOFF_PROMISE.sub(" ", part)))
            if _named_in(topic, knowledge):
                return True
    return False


# The bot offers to do or send something itself ("I can send you a photo and a sizing guide", "I'll
# ask the wedding planner", "I'll check with a pharmacist", "我去问问医生", "我把颜色和价格发给您"): it
# can do none of it and has no pharmacist or planner to ask, so the offer is a promise
# nobody keeps. A sentence that hands the message to a colleague (HANDOFF_PROMISE) is not an offer.
_OFFER = re.compile(
    r"\bI(?:'ll| will| can| could|'m going to| am going to)\s+(?:also\s+|just\s+|quickly\s+)?"
    r"(?:send|give|email|e-mail|text|show|get|find|check|look up|look into|link|share|forward|book|reserve|arrange|"
    r"order|call|contact|ask (?:a|an|the|your|them|my|our)|check with|(?:talk|speak) (?:to|with) (?!you)|reach out to (?!you)|message)\b"
    r"|\blet me (?:check|look|find|see|get|send|pull up)\b|\b(?:the one|the link|the details) I (?:linked|sent|shared)\b"
    r"|我(?:这就|马上|现在|先|可以|会|来)?(?:帮您|帮你|给您|给你)(?:查|找|发|寄|订|预约|安排|申请|联系|问|看|催)"
    r"|我(?:这就|马上|现在|先|可以|会|来|去)+(?:问问|问一下|咨询|联系)(?!同事|客服|人工)"
    r"|我(?:这就|马上|现在|先)?把.{1,12}?(?:发|给|寄)(?:给)?(?:您|你)|(?:发|寄|私信)给(?:您|你)|稍等.{0,4}我(?:查|看|找)",
    re.IGNORECASE,
)


# A Chinese sentence often joins an offer and a hand-off with a comma ("我把价格给您，我转给同事帮您核对。"),
# so each of its clauses is judged on its own, up to the first that names a colleague: the clauses
# after it leave out their subject, who is that colleague ("我已请同事核对，稍后发给您。"). The whole
# sentence goes, since what is left of it reads as a fragment ("好的，请稍等。"). English clauses are
# not split: "and a colleague will…" cannot stand alone.
_ZH_CLAUSE = re.compile(r"[^，；,]+[，；,]*|,")
_COLLEAGUE = re.compile(r"同事|客服|人工")


def _offers_in(sentence: str) -> bool:
    for clause in _ZH_CLAUSE.findall(sentence) if has_chinese(sentence) else [sentence]:
        if HANDOFF_PROMISE.search(clause) or _COLLEAGUE.search(clause):
            return False
        if _OFFER.search(clause):
            return True
    return False


def offers(reply: str) -> bool:
    """A sentence, or a clause of a Chinese sentence, offers an action or a document the bot cannot deliver."""
    return any(_offers_in(s) for s in _SENTENCE.findall(reply))


def without_offer(reply: str) -> str:
    """The reply less every sentence that offers what the bot cannot deliver."""
    return _without(reply, _offers_in)


# a closing question that only asks how the person is ("你现在还好吗？", "心情怎么样？") is kept: on
# reply-validation rows the replies that kept them graded higher than those that did not
_CHECK_IN = re.compile(r"还好吗|怎么样|\bhow are you\b|\bhow're you\b", re.IGNORECASE)


def without_closing_question(reply: str, min_chars: int = 6) -> str:
    """The reply less its last sentence when that is a question other than a check-in, at least
    `min_chars` remain, and what remains does not itself end with a question ("发生什么事了？愿意说说吗？"
    is all questions)."""
    sentences = _SENTENCE.findall(reply.strip())
    if len(sentences) < 2 or not sentences[-1].strip().endswith(("？", "?")) or _CHECK_IN.search(sentences[-1]):
        return reply
    rest = "".join(sentences[:-1]).strip()
    return rest if len(rest) >= min_chars and not rest.endswith(("？", "?")) else reply


# The bot claiming a trade, a role or a name ("Hi! I'm a translator, and I can translate any text you
# want.", "My name is John and I'm a member of the team", "我是这里的老师"): it is an automated
# assistant (reply.identity), so any such claim is invented
_EN_IDENTITY_CLAIM = re.compile(
    r"\bmy name(?:'s| is)\b|\bI(?:'m| am) (?:a|an|your|the|one of the) (?:[\w-]+ ){0,2}?(?:translator|teacher|student|doctor|nurse|"
    r"lawyer|member|representative|rep|agent|manager|engineer|writer|designer|developer|person|human|man|woman|girl|guy|"
    r"volunteer|host|guide|staff|staffer|employee|worker|cook|chef|driver|tutor|coach|pharmacist|owner|boss|receptionist|"
    r"technician|specialist|expert|consultant)\b",
    re.IGNORECASE,
)
_ZH_IDENTITY_CLAIM = re.compile(r"我(?:是|叫)(?:一名|一个|个|你的|您的|这里的|这边的|店里的|本店的)?(?:翻译|老师|学生|医生|护士|律师|经理|"
                                r"工程师|客服人员|人工客服|员工|店员|店主|老板|司机|厨师|导游|真人|人类|男生|女生|作者|志愿者|药剂师|技术员|专家|顾问)")

# what a reply to "在吗" or "hi" must do: greet back or ask what the person needs ("在的，您请说～",
# "Hi! How can I help?"); "好的，我马上回复您" and "我这边没有资料" answer a question nobody asked
_GREETS_BACK = re.compile(
    r"你好|您好|在的|在呢|在哦|在呀|我在|哈喽|嗨|早上好|早安|上午好|中午好|下午好|晚上好|有什么.{0,6}(?:帮|需要|事)|请说|请讲|您说|你说|"
    r"需要.{0,4}什么|什么事|\b(?:hi|hello|hey|hiya|morning|afternoon|evening|welcome)\b|how can i help|what can i (?:do|help)|"
    r"how are you|how's it going|how can i assist|what do you need|what's up|i'm here|here to help",
    re.IGNORECASE,
)


def claims_identity(reply: str) -> bool:
    """The reply gives the bot a trade, a role or a name."""
    return bool(_EN_IDENTITY_CLAIM.search(reply) or _ZH_IDENTITY_CLAIM.search(reply))


def check(reply: str, message: str, lang: str, previous: str | None, sources: Iterable[str],
          knowledge: Sequence[str] = (), person: bool | None = None) -> str | None:
    """Why the reply must not be sent, or None when it passes every rule. `person`: whether the
    hand-off head says the message needs a colleague (None: no head)."""
    if not reply.strip():
        return "empty"
    if _TEMPLATE.search(reply):
        return "template leak"
    if detect_lang(reply) != lang:
        return "wrong language"
    if echoes(reply, message, lang):
        return "echo"
    if previous and (_core(previous) == _core(reply) or near_repeat(reply, previous, lang)):
        return "repeat"
    made_up = invented(reply, [message, *sources])
    if made_up:
        return "invented fact: " + ", ".join(sorted(made_up))
    if not knowledge and (answers_unknown(reply, message, lang) or gives_unknown_steps(reply, message)):
        return "unsupported answer"
    if knowledge and denies_knowledge(reply, knowledge):
        return "denies knowledge"
    if offers(reply):
        return "invented offer"
    if claims_identity(reply):
        return "invented identity"
    if greets_only(message) and (not _GREETS_BACK.search(reply) or _NO_ANSWER.search(reply)):
        return "greeting not returned"
    # a hand-off for a "谢谢" sends a person an alert with nothing to do (the tuned model did so for 5
    # of the 8 such reply-validation messages), and "我转给同事帮您处理" to a lost wallet or "你真聪明"
    # is a customer-service template on a personal message
    if HANDOFF_PROMISE.search(reply) and needless_handoff(message, lang, person):
        return "needless hand-off"
    return None
