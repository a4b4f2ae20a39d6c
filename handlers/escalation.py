"""Crisis detection, the mood record, and the escalation rules that raise alerts.

Rules (config `escalation`): N negative messages from one contact within a window, or a rolling
mood score under a threshold, raise one alert per episode; the contact is re-armed once the mood
recovers, and a cooldown separates alerts. A crisis phrase (or the model's judgement on a
negative message) alerts at once with the highest severity. Moods are per speaker, not per room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Iterator, Literal

from bot.config import DEFAULT_CRISIS_PHRASES, AlertSettings, EscalationSettings
from bot.domain import Alert, ContactState, Label, MoodPoint, Turn, rolling_score
from bot.errors import EngineError
from bot.protocols import AsyncStore, Clock, Engine
from bot.store import Store
from bot.text import about_someone_else, asks_nothing, phrase_form, phrase_pattern

log = logging.getLogger(__name__)


def crisis_phrases(settings: EscalationSettings) -> list[str]:
    """The floor: the default phrases and the configured ones, which add to them and cannot remove any."""
    return [p.lower() for p in [*DEFAULT_CRISIS_PHRASES, *settings.crisis_phrases] if p.strip()]


Reading = Literal["self", "someone else"]


def crisis_tiers(reading: Reading | None, score: float, settings: EscalationSettings) -> tuple[bool, bool, bool]:
    """(crisis, someone else, possible crisis) from the phrase floor's reading and the head's score
    (0 when the head did not read the message); the benchmark decides with it too. The head's crisis
    wins over crisis words about someone else: recall first."""
    crisis = reading == "self" or score >= settings.crisis_threshold
    return crisis, reading == "someone else" and not crisis, not crisis and score >= settings.concern_threshold


class PhraseFloor:
    """Whether a text names a crisis phrase, read through bot.text.phrase_form (the benchmark uses it too)."""

    def __init__(self, settings: EscalationSettings) -> None:
        self.pattern = phrase_pattern(crisis_phrases(settings))

    def matches(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(phrase_form(text)) is not None

    def read(self, text: str) -> Reading | None:
        """"self" where the text names a crisis phrase of the sender's own, "someone else" where every
        phrase it names is said of another person (bot.text.about_someone_else), None where it names none."""
        if self.pattern is None or not self.matches(text):
            return None
        return "someone else" if about_someone_else(text, self.pattern) else "self"


class CrisisFloorStage:
    """The phrase list, before any model call: a crisis it names is answered and alerted even when
    the model is slow or down (the model's own check follows in CrisisStage)."""

    name = "crisis_floor"

    def __init__(self, settings: EscalationSettings) -> None:
        self.floor = PhraseFloor(settings)

    async def __call__(self, turn: Turn) -> None:
        reading = self.floor.read(turn.text)
        turn.crisis = reading == "self"
        turn.someone_else = reading == "someone else"


class CrisisStage:
    """Checks every message for a crisis, whatever its mood label (one was labelled neutral).

    The phrase list is a floor the model cannot lower; the model's crisis head reads the features
    of the mood pass, so the check adds no forward pass. After a crisis the contact stays in
    careful mode for `crisis.careful_minutes`: the bot keeps answering with vetted text only."""

    name = "crisis"

    def __init__(self, engine: Engine, store: AsyncStore, clock: Clock, settings: EscalationSettings,
                 careful_minutes: float) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.settings = settings
        self.careful = timedelta(minutes=careful_minutes)

    async def __call__(self, turn: Turn) -> None:
        if turn.crisis:
            pass  # the phrase floor matched before the mood pass (CrisisFloorStage)
        elif asks_nothing(turn.text):
            # a bare "谢谢" / "thank you, that's all I needed": no crisis or hard-negative row is one,
            # and the head, never shown one, read such closings as farewells (README, known fault)
            log.debug("crisis check of message %s: a closing, not read by the model", turn.message.message_id)
        elif turn.model_failed:
            log.warning("crisis check of message %s: phrase list only, the model did not answer", turn.message.message_id)
        elif self.settings.model_crisis_check:
            try:
                score = await self.engine.crisis_score(turn.text)
                floor: Reading | None = "someone else" if turn.someone_else else None
                turn.crisis, turn.someone_else, turn.concern = crisis_tiers(floor, score, self.settings)
            except EngineError as exc:
                log.warning("crisis check of message %s failed: %s", turn.message.message_id, exc)
        if not turn.crisis and self.careful:
            state = await self.store.state(turn.message.sender_id)
            since = self.clock.now() - self.careful
            turn.careful = bool(state.last_severity == "critical" and state.last_alert_at and state.last_alert_at >= since)


def decide(
    state: ContactState,
    recent: list[MoodPoint],
    in_window: list[MoodPoint],
    crisis: bool,
    now: datetime,
    settings: EscalationSettings,
    concern: bool = False,
    someone_else: bool = False,
) -> tuple[ContactState, str | None, str]:
    """The escalation rules as a pure function: (new state, severity or None, reason)."""
    current = recent[-1]
    score = rolling_score(recent)
    negatives = sum(p.label is Label.NEGATIVE for p in in_window)
    if not state.armed and current.label is not Label.NEGATIVE and score >= settings.recover_score:
        state = replace(state, armed=True)  # the mood recovered: the next episode may alert again
    muted = state.muted_until is not None and now < state.muted_until
    cooling = state.last_alert_at is not None and now - state.last_alert_at < timedelta(minutes=settings.cooldown_minutes)
    # muting silences mood alerts only: a crisis reply tells the person that a colleague will reach
    # out, so a crisis, or words that may be one, reaches a person however noisy the contact was
    if crisis:
        if cooling and state.last_severity == "critical":
            return state, None, "crisis already alerted"
        return replace(state, armed=False, last_alert_at=now, last_severity="critical"), "critical", "crisis language"
    if concern or someone_else:  # a possible crisis: a person should look, whatever the mood trend says
        if cooling and state.last_severity in ("critical", "high"):
            return state, None, "possible crisis already alerted"
        reason = ("crisis words about someone else: please check in with the sender" if someone_else
                  else "possible crisis language: please check on this person")
        return replace(state, armed=False, last_alert_at=now, last_severity="high"), "high", reason
    if muted:
        return state, None, "muted"
    by_count = negatives >= settings.negative_count
    by_score = len(recent) >= settings.negative_count and score < settings.score_threshold
    if not (by_count or by_score) or not state.armed or cooling:
        return state, None, ""
    reasons = []
    if by_count:
        reasons.append(f"{negatives} negative messages in {settings.window_minutes:g} min")
    if by_score:
        reasons.append(f"mood score {score:+.2f} over the last {len(recent)} messages")
    severity = "high" if by_count and by_score else "warning"
    return replace(state, armed=False, last_alert_at=now, last_severity=severity), severity, "; ".join(reasons)


class ContactLocks:
    """One thread lock per contact (escalation runs on worker threads), dropped when nobody holds it.

    Within a process this keeps a contact's escalations in order without a database round trip;
    across processes the store's row lock does the same."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, contact_id: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(contact_id, (threading.Lock(), 0))
            self._locks[contact_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[contact_id]
                if users <= 1:
                    del self._locks[contact_id]
                else:
                    self._locks[contact_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class EscalationStage:
    """Records the mood point of every classified message, then applies the rules.

    For one contact this is atomic, also across bot processes sharing a database: the store records
    the point, reads the history and state, and saves the decision and the alert in one transaction
    with the contact's row locked (Store.escalate)."""

    name = "escalation"

    def __init__(self, store: Store, clock: Clock, settings: EscalationSettings, alerts: AlertSettings) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.alerts = alerts
        self.locks = ContactLocks()

    def _evaluate(self, turn: Turn) -> Alert | None:
        message, sentiment = turn.message, turn.sentiment
        assert sentiment is not None
        now = self.clock.now()
        point = MoodPoint(
            contact_id=message.sender_id, chat_id=message.chat_id, at=now, label=sentiment.label,
            confidence=sentiment.confidence, message_id=message.message_id, excerpt=turn.text,
            contact_name=message.sender_name, is_group=message.is_group, text=turn.text,
        )

        def rule(state: ContactState, recent: list[MoodPoint], in_window: list[MoodPoint]) -> tuple[ContactState, Alert | None]:
            if len(in_window) > 1:  # in time order, this message's point last
                turn.previous_mood = in_window[-2].label
            new_state, severity, reason = decide(state, recent, in_window, turn.crisis, now, self.settings,
                                               turn.concern, turn.someone_else)
            if severity is None:
                return new_state, None
            shown = recent[-self.alerts.excerpts :] if self.alerts.excerpts else []
            return new_state, Alert(
                contact_id=message.sender_id, chat_id=message.chat_id, severity=severity, reason=reason,
                excerpts=tuple(p.excerpt for p in shown), trend=tuple(p.label.value for p in recent),
                created_at=now, contact_name=message.sender_name,
            )

        window_start = now - timedelta(minutes=self.settings.window_minutes)
        with self.locks.hold(message.sender_id):
            return self.store.escalate(point, self.settings.score_points, window_start, rule)

    async def __call__(self, turn: Turn) -> None:
        if turn.sentiment is None or turn.sentiment.confidence == 0.0 and not turn.crisis_words:
            return  # the model failed: an unknown mood is not evidence either way
        alert = await asyncio.to_thread(self._evaluate, turn)
        if alert is not None:
            log.info("escalation for %s: %s (%s)", alert.contact_id, alert.severity, alert.reason)
            turn.alerts.append(alert)
