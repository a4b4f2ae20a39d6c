"""Plain text helpers: input hygiene, language guess, reply clean-up and splitting."""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACES = re.compile(r"[ \t]+")
_ROLE_PREFIX = re.compile(
    r"^\s*(assistant|bot|moodbot|user|customer|friend|me|system|助手|客服|用户|朋友|我)\s*[:：]\s*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])|(?<=[.](?=\s))")


def sanitize(text: str, max_chars: int) -> str:
    """Drop control and format characters (keeping newlines as spaces) and cut to max_chars."""
    kept = []
    for ch in text:
        if ch in "\n\r\t":
            kept.append(" ")
            continue
        category = unicodedata.category(ch)
        # Cc: control, Cs: lone surrogates, Co/Cn: private use and unassigned; zero-width joiner (Cf) stays for emoji
        if category in ("Cc", "Cs", "Co", "Cn") or (category == "Cf" and ch != "\u200d"):
            continue
        kept.append(ch)
    cleaned = _SPACES.sub(" ", "".join(kept)).strip()
    return cleaned[:max_chars].rstrip()


# WeChat's quoted reply as the Wechaty puppets deliver it: 「name：the quoted words」, a line of "- - - …",
# then the sender's own words; the quoted words may span lines and hold a quote of their own, so the
# last such line ends them
_QUOTED_REPLY = re.compile(r"^\s*「(?P<who>[^：:」\n]{1,64})[：:](?P<quoted>.*)」[ \t]*\r?\n[ \t]*(?:-[ \t]*){6,}\r?\n(?P<own>.*)$",
                           re.DOTALL)


def split_quote(text: str) -> tuple[str | None, str, str]:
    """(who was quoted, what they said, the sender's own words) of a WeChat quoted reply, or
    (None, "", text) for any other text."""
    match = _QUOTED_REPLY.match(text)
    if not match or not match["own"].strip():
        return None, "", text
    return match["who"].strip(), match["quoted"].strip(), match["own"].strip()


def has_chinese(text: str) -> bool:
    return _CJK.search(text) is not None


def has_words(text: str) -> bool:
    """The text has a Chinese character, a Latin letter or a digit: something more than emoji and punctuation."""
    return bool(_CJK.search(text) or _LATIN.search(text) or re.search(r"\d", text))


def has_letters(text: str) -> bool:
    """The text has a Chinese character or a Latin letter: something that tells its language."""
    return bool(_CJK.search(text) or _LATIN.search(text))


def detect_lang(text: str) -> str:
    """'zh' when Chinese characters dominate the letters, else 'en'."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 3 >= latin else "en"


def _cut_repetition(text: str) -> str:
    # a base model loops; keep the first occurrence of any repeated sentence
    parts = [p for p in _SENTENCE_END.split(text) if p]
    seen: set[str] = set()
    kept: list[str] = []
    for part in parts:
        key = part.strip().lower()
        if key and key in seen:
            break
        seen.add(key)
        kept.append(part)
    text = "".join(kept)
    # a phrase of 2+ chars repeated 3+ times in a row collapses to one occurrence
    return re.sub(r"(.{2,30}?)\1{2,}", r"\1", text)


def clean_reply(raw: str, prompt_tail: str = "", max_chars: int = 400) -> str:
    """Turn raw model output into one clean reply: no role labels, no echo, no loops, bounded."""
    text = raw.replace("\r", "")
    if prompt_tail and text.startswith(prompt_tail):
        text = text[len(prompt_tail):]
    lines: list[str] = []
    for line in text.split("\n"):
        if lines and _ROLE_PREFIX.match(line):
            break  # the model started writing the next speaker's turn
        line = _ROLE_PREFIX.sub("", line).strip()
        if line:
            lines.append(line)
        elif lines:
            break  # a blank line ends the reply
    text = _cut_repetition(" ".join(lines))
    text = sanitize(text, max_chars * 4)
    if len(text) > max_chars:
        cut = text[:max_chars]
        ends = [m.end() for m in _SENTENCE_END.finditer(cut) if m.end() > max_chars // 3]
        text = cut[: ends[-1]] if ends else cut.rstrip() + "…"
    return text.strip()


def trim_to_sentence(text: str) -> str:
    """Drop a trailing unfinished sentence (generation ran out of tokens mid-sentence)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() > len(text) // 3]
    return text[: ends[-1]].strip() if ends else text


def split_message(text: str, limit: int) -> list[str]:
    """Split a long text into pieces of at most `limit` characters: at line ends where it has lines
    (a list such as #alerts keeps each line whole), else at sentence boundaries."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    if "\n" in text:
        pieces: list[str] = []
        current = ""
        for line in text.split("\n"):
            for part in split_message(line, limit) or [""]:
                if current and len(current) + 1 + len(part) > limit:
                    pieces.append(current)
                    current = part
                else:
                    current = f"{current}\n{part}" if current else part
        return [p.strip() for p in [*pieces, current] if p.strip()]
    pieces = []
    current = ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s):
        while len(sentence) > limit:  # one sentence longer than the limit: cut at a space if there is one
            if current:
                pieces.append(current.strip())
                current = ""
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > limit // 2 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:]
        if len(current) + len(sentence) > limit:
            pieces.append(current.strip())
            current = ""
        current += sentence
    if current.strip():
        pieces.append(current.strip())
    return [p for p in pieces if p]


def whole_number(text: str, max_digits: int = 19) -> int | None:
    """A plain ASCII number of at most `max_digits` digits, or None: '²' is a digit to str.isdigit()
    but not to int(), and a longer one may not fit the database's integers."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= max_digits else None


def in_lang(texts: Mapping[str, str], lang: str) -> str:
    """The configured text for a language, else the English one, else empty."""
    return texts.get(lang) or texts.get("en") or ""


_WORD_EDGE = re.compile(r"[a-z0-9]")
_NOT_WORD = re.compile(r"[\W_]+")
_CJK_GAP = re.compile(f"(?<=[{_CJK_CHARS}]) (?=[{_CJK_CHARS}])")


def phrase_form(text: str) -> str:
    """Text as the crisis phrase floor reads it: NFKC (full-width letters), lower case, apostrophes
    dropped ("don't" is "dont"), any run of spaces, punctuation or emoji one space, and none between
    Chinese characters, so "不 想 活" and "不想活。。" read as "不想活"."""
    folded = unicodedata.normalize("NFKC", text).lower().replace("'", "").replace("\u2019", "")
    return _CJK_GAP.sub("", _NOT_WORD.sub(" ", folded)).strip()


def phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    """One pattern for the phrases, matched against phrase_form(text). A phrase's Latin ends match
    whole words only ("end my life" is not in "weekend my life"), and its spaces may be missing
    ("killmyself"); a Chinese end may touch anything ("我不想活了")."""
    parts = []
    for phrase in {phrase_form(p) for p in phrases} - {""}:
        body = " ?".join(re.escape(word) for word in phrase.split(" "))
        head = r"(?<![a-z0-9])" if _WORD_EDGE.match(phrase[0]) else ""
        tail = r"(?![a-z0-9])" if _WORD_EDGE.match(phrase[-1]) else ""
        parts.append(head + body + tail)
    return re.compile("|".join(sorted(parts))) if parts else None


# Messages that ask for nothing: thanks, goodbyes, greetings, acknowledgements, and the words that
# pad them ("谢谢你啊", "thanks a lot guys")
_ZH_CLOSING = re.compile(
    r"(?:谢谢|多谢|感谢|辛苦了?)客服|谢谢|多谢|感谢|辛苦了?|拜拜|再见|回见|明天见|好的|好滴|好嘞|好吧|行吧|收到|明白了?|知道了|懂了|没事了?|没别的事了?|没问题|"
    r"没(?:有)?(?:别的|其他)(?:事|问题)了?|有帮助|帮大忙了?|"
    r"晚安|早安|早上好|午安|晚上好|你好|您好|哈喽|嗯+|哦+|噢+|哈+|你|您|啦|啊|呀|了|嘛|呢|行|各位|大家|打工人"
)
_EN_CLOSING = re.compile(
    r"(?<![a-z])(?:ok|okay|k|thanks?|thank you|thx|ty|cheers|bye(?: bye)?|goodbye|see (?:you|ya)(?: tomorrow| later| soon)?|"
    r"got it|noted|cool|great|perfect|nice|alright|good (?:morning|night|evening|afternoon|day)|morning|night|hi|hello|"
    r"hey|thats all(?: i needed)?|for now|that (?:helps|helped)|(?:very |so |really )?helpful|appreciate it|much appreciated|"
    r"have a (?:nice|good|great|lovely) (?:day|one|evening|night|weekend)|bot|you|so much|a lot|very much|everyone|all|guys|for (?:your|the) help)(?![a-z])"
)


# "你是真人还是AI", "are u a bot?", "what's your name": the base of the tuned model claims to be a
# person ("真人是", "My name is John and I'm a member of the team"); a bot must not pass for one
_ZH_IDENTITY = re.compile(r"你(?:们)?(?:是不是|是)(?:真人|机器人|人工|ai|人还是|谁|人类)|你叫(?:什么|啥)"
                          r"|(?:^|[，,\s]|请问|您好)(?:是|是不是)(?:真人|机器人|人工)(?:吗|啊|呀|么|\?|？|$)"
                          r"|真人还是|机器人还是|人工还是", re.IGNORECASE)
_EN_IDENTITY = re.compile(r"\b(?:are|r) (?:you|u) (?:a |an )?(?:real|human|person|bot|robot|ai|machine|chatbot)\b"
                          r"|\bis (?:this|that|it) (?:a |an )?(?:bot|real person|human|robot|machine|chatbot|ai)\b"
                          r"|\b(?:talking|chatting|speaking) (?:to|with) (?:a |an )?(?:bot|human|real|person|machine|robot|ai)\b"
                          r"|\bwhat(?:'s|s| is) (?:your|ur) name\b"
                          r"|\bwho (?:are|r) (?:you|u)(?: exactly| again)?\s*(?:[?？.!,]|$)", re.IGNORECASE)


def asks_identity(message: str) -> bool:
    """The message asks who or what the bot is: a person or a bot, or its name."""
    return bool(_ZH_IDENTITY.search(message) or _EN_IDENTITY.search(message))


def asks_nothing(message: str) -> bool:
    """The message only thanks, greets, says goodbye or acknowledges: nothing for a person to do."""
    if re.search(r"[?？]|吗|么", message):
        return False
    words = phrase_form(message)
    return bool(words) and not _ZH_CLOSING.sub("", _EN_CLOSING.sub(" ", words)).strip()


# A greeting or a check that someone is there, and nothing else ("在吗", "您好，请问有人吗", "hi there",
# "anyone around?"): the most common first message in a customer-service chat. The tuned model
# answered "在吗" with "我这边没有资料" and "hi" with "I'm a translator…" (the reply guard refuses both)
_ZH_GREETING = re.compile(r"你好|您好|在吗|在么|在嘛|在不在|在没|有人吗|有人么|有人在吗|有人在么|哈喽|嗨|早上好|早安|上午好|"
                          r"中午好|下午好|晚上好")
_ZH_GREETING_PAD = re.compile(r"请问|客服|小哥哥|小姐姐|老板|亲|你们|你|您|呀|啊|哈|嗯|哦|呢|吗|么|喂|在")
_EN_GREETING = re.compile(
    r"(?<![a-z])(?:hi+|hello+|hey+|hiya|yo|howdy|greetings|good (?:morning|afternoon|evening|day)|morning|evening|"
    r"(?:is )?(?:any ?one|any ?body|some ?one) (?:there|here|around|home|online|available)|(?:are )?(?:you|u) (?:there|around|online|here|available)"
    r")(?![a-z])"
)
_EN_GREETING_PAD = re.compile(r"(?<![a-z])(?:there|team|guys|all|everyone|folks|support|admin|bot|sir|madam|please|pls|um+|uh+|so|ok|okay|oh)(?![a-z])")


def greets_only(message: str) -> bool:
    """The message greets or checks that someone is there, and asks nothing else."""
    words = phrase_form(message)
    if not words or not (_ZH_GREETING.search(words) or _EN_GREETING.search(words)):
        return False
    rest = _EN_GREETING_PAD.sub(" ", _EN_GREETING.sub(" ", words))
    return not _ZH_GREETING_PAD.sub("", _ZH_GREETING.sub("", rest)).strip()


# greetings (the patterns above, and 早 / 午安) and laughter ask for nothing too, but a closing line
# ("回头见！") does not answer them
_NOT_CLOSING = re.compile(r"早|午安|^[哈呵嘿 ]+$|(?<![a-z])(?:lol|(?:ha)+|hehe)(?![a-z])")


def closes(message: str) -> bool:
    """The message only thanks, acknowledges or says goodbye ("好的谢谢", "ok got it", "拜拜")."""
    words = phrase_form(message)
    return (asks_nothing(message)
            and not (_ZH_GREETING.search(words) or _EN_GREETING.search(words) or _NOT_CLOSING.search(words)))


# Whom a crisis phrase is about. "我闺蜜最近总说活着没意思" and "warning signs that a teenager might be
# suicidal" are a worried person asking about someone else; read as the sender's own crisis they got
# the crisis reply, which asks the worried person whether they are safe. Read the other way, the
# sender's own crisis would get a "high" alert instead of a critical one, so the reading is narrow:
# - zh: a pronoun (他/她) right before the phrase, or a person (朋友, 我妈, 室友...) at the start of the
#   clause followed by adverbs and 说 ("朋友最近总说"), or a person owned (我妈, 同事的孩子, 邻居家孩子)
#   followed by adverbs or a day and the phrase, 说 or not ("邻居家孩子昨天割腕了"): a bare 姐姐 or 哥
#   at the start may be the sender speaking of themself, as chat slang does. A person after 跟/和/对/给/告诉
#   ("我跟朋友说不想活了": I told my friend) and any other verb ("老公出轨了总觉得活着没意思": the
#   subject left out is the sender) leave the sender as the subject.
# - en: he/she/they, or "my/a/the X", then only auxiliaries ("a teenager might be suicidal", "if hes
#   having suicidal thoughts"); "I told my mom about being suicidal" stays the sender's own.
# - a sender who joins in ("我也是", "so am I") is in crisis too.
# Spaces between Chinese words split clauses here ("听他说 想自杀" stays the sender's own).
_ZH_OTHER_PRONOUN = "他们|她们|他|她"
_ZH_PERSON = ("好朋友|朋友|闺蜜|兄弟|室友|舍友|同事|同学|妈妈|妈|爸爸|爸|母亲|父亲|儿子|女儿|孩子|老公|老婆|男朋友|女朋友|"
              "男友|女友|对象|哥哥|姐姐|弟弟|妹妹|表姐|表哥|表妹|表弟|堂哥|堂姐|堂弟|堂妹|爷爷|奶奶|外公|外婆|姥姥|姥爷|"
              "亲戚|邻居|学生|网友")
_ZH_ADVERBS = ("(?:最近|这阵子|这段时间|这几天|老是|总是|一直|经常|常常|又|老|总|也|都|还|"
               "昨天|前天|今天|昨晚|刚才|刚刚|前几天|上周|上个月|去年|那天)*")
# where the words were said: "我朋友发朋友圈说不想活了", "她给我发消息说想自杀"
_ZH_CHANNEL = ("(?:(?:在|发)(?:朋友圈|微博|群里|空间|动态|抖音|小红书|日记)(?:里|上)?"
               "|(?:给我|跟我|和我|对我)?(?:发消息|发微信|发信息|留言|打电话|私信|哭着))?")
# a person named right after 跟/和/与/同/对/给/向/问/告诉 is the one spoken to, not the subject
_ZH_ABOUT_OTHER = re.compile(
    f"(?:(?<![跟和与同对给向问])(?<!告诉)(?:{_ZH_OTHER_PRONOUN}){_ZH_ADVERBS}{_ZH_CHANNEL}(?:说|讲)?"
    f"|^(?:{_ZH_PERSON}){_ZH_ADVERBS}{_ZH_CHANNEL}(?:说|讲)"
    f"|(?<=[我的家])(?:{_ZH_PERSON}|哥|姐|弟|妹){_ZH_ADVERBS}{_ZH_CHANNEL}(?:说|讲)?)(?:过)?$"
)
_EN_OTHER_PRONOUN = {"he", "she", "they", "hes", "shes", "theyre"}
_EN_PERSON = {
    "friend", "son", "daughter", "kid", "child", "teen", "teenager", "mom", "mum", "dad", "mother", "father",
    "brother", "sister", "wife", "husband", "boyfriend", "girlfriend", "partner", "roommate", "flatmate",
    "coworker", "colleague", "student", "grandma", "grandpa", "uncle", "aunt", "cousin", "neighbor", "neighbour",
    "bestie", "patient", "client",
}
_EN_DETERMINER = {"my", "our", "a", "the", "her", "his", "their"}
_EN_AUXILIARY = {
    "is", "was", "might", "may", "could", "be", "been", "seems", "seem", "seemed", "has", "have", "had", "keeps",
    "always", "really", "so", "very", "still", "often", "lately", "recently", "getting", "becoming", "having",
}
_EN_SPOKEN_TO = {"told", "tell", "telling", "to", "with", "ask", "asked", "texted", "and", "about"}
_JOINS_IN = re.compile(r"我也|我何尝不是|我又何尝|\bso am i\b|\bme too\b|\bsame (?:as me|here)\b|\bi am too\b|\bim too\b|\bme as well\b")
_CLAUSE_BREAK = re.compile(f"[，。！？!?,.;；:：、~～…\\n]+|(?<=[{_CJK_CHARS}])\\s+|\\s+(?=[{_CJK_CHARS}])")


def _about_other_en(before: str) -> bool:
    words = before.split()
    n = len(words)
    while n and words[n - 1] in _EN_AUXILIARY:
        n -= 1
    if not n:
        return False
    if words[n - 1] in _EN_OTHER_PRONOUN:
        start = n - 1
    elif words[n - 1] in _EN_PERSON and n >= 2 and words[n - 2] in _EN_DETERMINER:
        start = n - 2
    else:
        return False
    return not (start and words[start - 1] in _EN_SPOKEN_TO)


def about_someone_else(text: str, pattern: re.Pattern[str]) -> bool:
    """Every crisis phrase of `pattern` (phrase_pattern) that the text names is, in its own clause,
    said of another person (see above). A phrase found only across clauses counts as the sender's own."""
    if _JOINS_IN.search(phrase_form(text)):
        return False
    found = False
    for clause in _CLAUSE_BREAK.split(text):
        form = phrase_form(clause)
        for match in pattern.finditer(form):
            phrase, before = match.group(), form[: match.start()].strip()
            if "我" in phrase or re.search(r"\bmy", phrase):
                return False  # "kill myself", "我有自杀": the sender's own words
            if not (_ZH_ABOUT_OTHER.search(before) if has_chinese(phrase) else _about_other_en(before)):
                return False
            found = True
    return found
