"""Frozen domain types that flow one way through the pipeline."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Sequence


class Label(str, enum.Enum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    NEUTRAL = "neutral"


LABEL_EMOJI = {Label.POSITIVE: "😊", Label.NEGATIVE: "😟", Label.NEUTRAL: "😐"}
MAX_MUTE_MINUTES = 60 * 24 * 30  # #mute and the dashboard's mute: at most 30 days
MAX_ALERT_ID = 2**63 - 1  # the store's integer ids; a larger number is no alert
# most urgent first, for lists of open alerts (a hand-off is "info")
SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}


def mute_detail(minutes: int) -> str:
    """The audit detail of a mute, as #mute and the dashboard record it ("45 min")."""
    return f"{minutes} min"


def muted_minutes(detail: str) -> int | None:
    """The minutes of a mute's audit detail, or None for any other text."""
    number, _, unit = detail.partition(" ")
    return int(number) if unit == "min" and number.isascii() and number.isdigit() else None


class Strategy(str, enum.Enum):
    COMFORT = "comfort"
    CELEBRATE = "celebrate"
    PLAIN = "plain"
    CRISIS = "crisis"


@dataclass(frozen=True)
class Sentiment:
    label: Label
    confidence: float
    scores: dict[str, float]

    @property
    def emoji(self) -> str:
        return LABEL_EMOJI[self.label]


@dataclass(frozen=True)
class FaqMatch:
    """Whether an FAQ entry's answer answers a question, by the model's match head: `p` is its
    probability; `answers` means the entry's facts may go into the reply prompt, `surely` that its
    answer may be sent word for word (the head's two thresholds, chosen on validation businesses)."""

    p: float
    answers: bool
    surely: bool


@dataclass(frozen=True)
class InboundMessage:
    """One platform message, already turned into the bot's own type by a channel."""

    message_id: str
    chat_id: str
    sender_id: str
    text: str
    sent_at: datetime
    sender_name: str = ""
    is_group: bool = False
    mentions_me: bool = False
    is_self: bool = False
    kind: str = "text"  # text | image | voice | file | emoticon | link | system | other


@dataclass(frozen=True)
class ChatTurn:
    role: str  # "user" | "assistant"
    text: str


@dataclass(frozen=True)
class OutboundMessage:
    chat_id: str
    text: str
    mention_ids: tuple[str, ...] = ()


def reply_to(message: InboundMessage, text: str) -> OutboundMessage:
    """An answer to `message` in its chat; in a room it @mentions the sender (the one place for that rule)."""
    return OutboundMessage(message.chat_id, text, (message.sender_id,) if message.is_group else ())


HANDOFF = "handoff"  # the kind of an alert that hands a message to a person


@dataclass(frozen=True)
class Alert:
    contact_id: str
    chat_id: str
    severity: str  # "warning" | "high" | "critical"
    reason: str
    excerpts: tuple[str, ...]
    trend: tuple[str, ...]
    created_at: datetime
    contact_name: str = ""
    alert_id: int | None = None
    kind: str = "mood"  # mood | handoff (a question the FAQ could not answer) | model (the model server down or back)


# where a reply came from: `reply.identity` or a closing line for a closing (scripted), the model past the guard (generated), an FAQ
# entry's answer (faq), `reply.unavailable`, a curated line (fallback), a vetted crisis line (vetted),
# or the FAQ's hand-off (handoff)
ReplySource = Literal["scripted", "generated", "faq", "unavailable", "fallback", "vetted", "handoff"]


@dataclass
class Turn:
    """What the pipeline learned and decided about one inbound message."""

    message: InboundMessage
    text: str = ""
    lang: str = "en"
    sentiment: Sentiment | None = None
    # the sender's mood at their message before this one, within the escalation window (None: none)
    previous_mood: Label | None = None
    strategy: Strategy | None = None
    reply: str | None = None
    knowledge: tuple[str, ...] = ()  # FAQ entries for the reply prompt (handlers/knowledge.py)
    # the answer of an FAQ entry matched surely (knowledge.answer_threshold), sent in place of a generated
    # hand-off or denial, a curated line or the unavailable line; None: no such entry
    faq_answer: str | None = None
    reply_source: ReplySource | None = None  # None: no reply
    crisis: bool = False
    # a possible crisis: the model's score passed the recall-first threshold but not the sure one
    concern: bool = False
    # the phrase floor matched, but every crisis phrase is said of another person ("我朋友总说不想活了"):
    # the vetted crisis.someone_else reply and a "high" alert, unless the model's head reads a crisis
    someone_else: bool = False
    careful: bool = False  # a crisis was raised for this contact a short while ago
    # the model did not answer (a model server down or hung): later stages do not wait for it again
    model_failed: bool = False
    # whether a colleague should answer this message, by the model's hand-off head (None: no head)
    needs_person: bool | None = None
    record_only: bool = False  # mood is recorded but the bot does not answer
    paused: bool = False  # auto-replies were paused when the turn started (#pause, the dashboard)
    busy: bool = False  # the queue was full: mood recorded, the busy reply (or none) instead of a generated one
    stopped: str | None = None  # why the pipeline ended early, if it did
    outbox: list[OutboundMessage] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    @property
    def crisis_words(self) -> bool:
        """A crisis, or crisis words about someone else: vetted words answer it, whatever the bot's
        load, pause or mood reading, and a person is alerted."""
        return self.crisis or self.someone_else


@dataclass(frozen=True)
class MoodPoint:
    contact_id: str
    chat_id: str
    at: datetime
    label: Label
    confidence: float
    message_id: str
    excerpt: str
    contact_name: str = ""
    is_group: bool = False
    text: str | None = None  # only when store.keep_text is on

    @property
    def score(self) -> float:
        """+1 for positive, -1 for negative, 0 for neutral, weighted by confidence."""
        sign = {Label.POSITIVE: 1.0, Label.NEGATIVE: -1.0, Label.NEUTRAL: 0.0}[self.label]
        return sign * self.confidence


def rolling_score(points: Sequence[MoodPoint]) -> float:
    """The mean of the points' scores (0 for none): the escalation's rule, #mood and the dashboard."""
    return sum(p.score for p in points) / len(points) if points else 0.0


def handoff_alert(turn: Turn, reason: str, now: datetime) -> Alert:
    """An `info` alert that hands this message to a person (no FAQ answer, a promise of a colleague)."""
    message = turn.message
    return Alert(contact_id=message.sender_id, chat_id=message.chat_id, severity="info", reason=reason,
                 excerpts=(turn.text,), trend=(), created_at=now, contact_name=message.sender_name, kind=HANDOFF)


def trend_line(trend: tuple[str, ...]) -> str:
    """A mood trend as emoji, oldest first."""
    return " ".join(LABEL_EMOJI[Label(label)] for label in trend)


@dataclass(frozen=True)
class ContactState:
    """Escalation bookkeeping for one contact."""

    contact_id: str
    armed: bool = True
    last_alert_at: datetime | None = None
    muted_until: datetime | None = None
    last_severity: str | None = None


# The label-token crisis question (" yes" vs " no") was calibrated to flag at 0.9; a trained crisis
# head flags at its own validation thresholds. All are put on one scale: 0.5 is the recall-first
# threshold (a possible crisis: a person should look), CRISIS_SURE the one chosen for few false
# alarms on hard negatives (the crisis reply and the critical alert).
LABEL_TOKEN_CRISIS_THRESHOLD = 0.9
CRISIS_SURE = 0.8


def crisis_scale(p: float, threshold: float, sure: float | None = None) -> float:
    """Map a crisis probability so that the scorer's recall-first threshold becomes 0.5 and its
    few-false-alarms threshold (`sure`, when it has one) CRISIS_SURE (monotone, 0..1)."""
    if p < threshold:
        return 0.5 * p / threshold
    if sure is None or sure <= threshold:  # one threshold: it is both, and nothing is "possible"
        return CRISIS_SURE + (1 - CRISIS_SURE) * (p - threshold) / max(1e-9, 1 - threshold)
    if p < sure:
        return 0.5 + (CRISIS_SURE - 0.5) * (p - threshold) / (sure - threshold)
    return CRISIS_SURE + (1 - CRISIS_SURE) * (p - sure) / max(1e-9, 1 - sure)
