"""Prompt templates: the classification prompt and one reply prompt per strategy.

Prompts are data. System prompts can be overridden per strategy in config.yaml
(reply.prompts); the few-shot examples teach a base model the transcript format.
None of the example texts comes from the evaluation sets.
"""

from __future__ import annotations

from typing import Sequence

from bot.domain import ChatTurn, Label, Strategy

# Classification: a few-shot completion prompt read at the next token only.
# The label words are English whatever the message language, so every family scores the same three rows.
CLASSIFY_PREFIX = (
    "Classify the mood of each chat message as positive, negative or neutral.\n\n"
    "Message: I finally got the job offer, so happy!\nMood: positive\n\n"
    "Message: 今天又被老板骂了，好累，不想干了\nMood: negative\n\n"
    "Message: What time does the shop open tomorrow?\nMood: neutral\n\n"
    "Message: 太棒了，我们队赢了比赛！\nMood: positive\n\n"
    "Message: My phone broke again and support never answers. Awful.\nMood: negative\n\n"
    "Message: 请问这个快递一般几天能到？\nMood: neutral\n\n"
)
CLASSIFY_ITEM = "Message: {text}\nMood:"
LABEL_WORDS: dict[Label, str] = {
    Label.POSITIVE: " positive",
    Label.NEGATIVE: " negative",
    Label.NEUTRAL: " neutral",
}
# Crisis judgement: the same one-pass scoring, over " yes" and " no".
CRISIS_PREFIX = (
    "Does the message say that the writer may harm or kill themselves? Answer yes or no.\n\n"
    "Message: I can't take it anymore, I just want to end it all.\nAnswer: yes\n\n"
    "Message: 今天工作好累，烦死了\nAnswer: no\n\n"
    "Message: 我真的不想活了，太痛苦了\nAnswer: yes\n\n"
    "Message: I failed my exam and I'm really upset.\nAnswer: no\n\n"
)
CRISIS_ITEM = "Message: {text}\nAnswer:"
CRISIS_WORDS = (" yes", " no")

# Whether an FAQ entry's answer tells the customer what they asked: the match head (train/faq_match.py)
# reads the hidden states at the answer position of this prompt, one pass per (question, entry)
MATCH_PREFIX = (
    "Does the shop's FAQ answer tell the customer what they asked? Answer yes or no.\n\n"
    "FAQ: Sunny Bakery is open every day from 7 am to 8 pm. Question: can i grab bread at 7:30 tonight\nAnswer: yes\n\n"
    "FAQ: 我们支持微信支付和支付宝。 Question: 能用信用卡分期吗\nAnswer: no\n\n"
)
MATCH_ITEM = "FAQ: {text}\nAnswer:"


def match_text(question: str, answer: str) -> str:
    """What fills MATCH_ITEM for one (question, FAQ answer) pair."""
    return f"{answer} Question: {question}"


# Inputs with no content, used to measure and remove the prompt's own label bias.
CONTENT_FREE = ("N/A", "", "[MASK]", "…")

SYSTEM_PROMPTS: dict[Strategy, str] = {
    Strategy.COMFORT: (
        "You are a warm, caring friend. The user is having a hard time. Acknowledge the feeling, "
        "comfort them gently and offer one small, practical suggestion. Keep it to two or three sentences."
    ),
    Strategy.CELEBRATE: (
        "You are a cheerful friend. The user shares good news. Congratulate them with real enthusiasm "
        "and ask one short follow-up question. Keep it to two sentences."
    ),
    Strategy.PLAIN: (
        "You are a helpful, friendly assistant. Answer the user plainly and briefly, in one or two sentences."
    ),
    Strategy.CRISIS: (
        "You are a calm, caring supporter. The user may be in danger. Take them seriously, say that they "
        "are not alone, encourage them to contact someone they trust or a local emergency or crisis line "
        "right now, and say that a human will reach out. Do not give advice about methods."
    ),
}

LANGUAGE_RULE = {"zh": "请用简体中文回复。", "en": "Reply in English."}

# Two example exchanges per strategy and language, shown to models without a chat template.
EXAMPLES: dict[tuple[Strategy, str], tuple[tuple[str, str], ...]] = {
    (Strategy.COMFORT, "zh"): (
        ("最近工作压力好大，晚上都睡不着。", "听起来你真的很辛苦，压力大到睡不好一定很难受。睡前试着放下手机，深呼吸几分钟，好吗？"),
        ("我和好朋友吵架了，心里很难过。", "和好朋友吵架确实让人难过，你的感受很正常。等心情平静一点，试着主动聊一聊吧。"),
    ),
    (Strategy.COMFORT, "en"): (
        ("I failed my driving test again. I feel so stupid.", "I'm sorry, that's really frustrating, but it doesn't make you stupid. Lots of people pass on a later try; take a short break and then practise the parts that tripped you up."),
        ("My cat is sick and I'm really worried.", "That sounds so worrying, I'm sorry. Keep a close eye on her and call the vet today; you're doing the right thing by caring."),
    ),
    (Strategy.CELEBRATE, "zh"): (
        ("我考上研究生了！", "太棒了，恭喜你！这是你努力的结果。打算怎么庆祝一下？"),
        ("今天终于跑完了人生第一个半马！", "哇，太厉害了，恭喜你完成第一个半马！跑完感觉怎么样？"),
    ),
    (Strategy.CELEBRATE, "en"): (
        ("I got promoted today!", "Congratulations, that's fantastic news! You've earned it. How are you going to celebrate?"),
        ("We just adopted a puppy!", "Oh, that's wonderful, congratulations! What did you name the puppy?"),
    ),
    (Strategy.PLAIN, "zh"): (
        ("明天会下雨吗？", "我查不到实时天气，建议看一下天气预报应用，出门可以带把伞以防万一。"),
        ("你们几点下班？", "我们的在线客服每天九点到晚上六点有人值班，其他时间可以留言。"),
    ),
    (Strategy.PLAIN, "en"): (
        ("What's a good book to read on a train?", "A short novel works well on a train; something like a mystery keeps you turning pages."),
        ("Do you open on Sundays?", "Our online service answers every day from nine to six; outside those hours you can leave a message."),
    ),
    (Strategy.CRISIS, "zh"): (
        ("我觉得活着没有意义了。", "谢谢你愿意告诉我，你并不孤单。请现在就联系一位信任的人，或拨打当地的心理援助热线或急救电话，也会有同事尽快联系你。"),
    ),
    (Strategy.CRISIS, "en"): (
        ("I don't want to be here anymore.", "Thank you for telling me, and you are not alone. Please reach out right now to someone you trust or to a local crisis line or emergency number; a person from our team will contact you too."),
    ),
}

USER_TAG = {"zh": "用户", "en": "User"}
BOT_TAG = {"zh": "助手", "en": "Assistant"}


def system_prompt(strategy: Strategy, lang: str, overrides: dict[str, str]) -> str:
    base = overrides.get(strategy.value) or SYSTEM_PROMPTS[strategy]
    return f"{base} {LANGUAGE_RULE.get(lang, LANGUAGE_RULE['en'])}"


def with_knowledge(system: str, knowledge: Sequence[str]) -> str:
    """The system prompt with the business's facts, for models without the fine-tuned format."""
    facts = "\n".join(f"- {fact}" for fact in knowledge)
    return f"{system}\nUse only these facts; if they do not answer the question, say a colleague will help:\n{facts}"


def chat_messages(system: str, history: list[ChatTurn]) -> list[dict[str, str]]:
    """Messages for a tokenizer's chat template."""
    messages = [{"role": "system", "content": system}]
    messages += [{"role": t.role, "content": t.text} for t in history]
    return messages


def transcript(system: str, strategy: Strategy, lang: str, history: list[ChatTurn]) -> str:
    """A plain transcript prompt for base models that have no chat template."""
    user, bot = USER_TAG.get(lang, "User"), BOT_TAG.get(lang, "Assistant")
    lines = [system, ""]
    for question, answer in EXAMPLES.get((strategy, lang), ()):
        lines += [f"{user}: {question}", f"{bot}: {answer}", ""]
    for turn in history:
        lines.append(f"{user if turn.role == 'user' else bot}: {turn.text}")
    lines.append(f"{bot}:")
    return "\n".join(lines)


def stop_strings(lang: str) -> list[str]:
    return ["\n\n", f"\n{USER_TAG.get(lang, 'User')}:", "\nUser:", "\n用户:", "\nMessage:"]


# --- the fine-tuned format --------------------------------------------------------------
# The embedded model's adapter (train/finetune.py) was trained on exactly these prompts, so the
# runtime prompt and the training prompt come from the same functions. Gemma's turn markers are
# single tokens in its vocabulary, and <end_of_turn> ends a reply, so no stop strings are needed.
TURN_USER = "<start_of_turn>user\n"
TURN_MODEL = "<start_of_turn>model\n"
END_TURN = "<end_of_turn>"
# training showed at most two earlier exchanges; more memory than that is cut at run time
TUNED_MEMORY_TURNS = 4
TUNED_MOOD_PREFIX = "Judge the mood of the chat message: positive, negative or neutral.\n\n"
TUNED_MOOD_ITEM = "Message: {text}\nMood:"


def tuned_control(strategy: Strategy, lang: str) -> str:
    """The control line the adapter learned: which strategy to follow and which language to answer in."""
    return f"[{strategy.value} {lang}]"


def tuned_reply_prompt(
    strategy: Strategy, lang: str, history: list[ChatTurn], knowledge: tuple[str, ...] | list[str] = ()
) -> str:
    """The prompt for a fine-tuned reply; `history` ends with the message being answered."""
    history = history[-(TUNED_MEMORY_TURNS + 1):]
    while history and history[0].role != "user":
        history = history[1:]
    parts: list[str] = []
    for turn in history[:-1]:
        tag = TURN_USER if turn.role == "user" else TURN_MODEL
        parts.append(f"{tag}{turn.text}{END_TURN}\n")
    last = history[-1].text if history else ""
    head = tuned_control(strategy, lang)
    if knowledge:
        head += "\nFacts:\n" + "\n".join(f"- {fact}" for fact in knowledge)
    parts.append(f"{TURN_USER}{head}\n{last}{END_TURN}\n{TURN_MODEL}")
    return "".join(parts)
