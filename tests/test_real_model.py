"""The real embedded Gemma 3 270M model (marked `model`): loading, mood and a clean reply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bot import prompts
from bot.config import ModelSettings, SentimentSettings, load_settings
from bot.domain import ChatTurn, Label, Strategy
from bot.model.engine import ModelEngine
from bot.model.loader import load_model
from bot.text import detect_lang
from tests.conftest import EVAL_DIR, ROOT

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine() -> ModelEngine:
    settings = load_settings(ROOT / "config.yaml", env={})
    return ModelEngine(load_model(settings.model), settings.model, settings.sentiment)


@pytest.fixture(scope="module")
def hf_engine() -> ModelEngine:
    """The same weights served through transformers' modeling code (`model.decoder: transformers`)."""
    settings = load_settings(ROOT / "config.yaml", env={"MOODBOT__MODEL__DECODER": "transformers"})
    return ModelEngine(load_model(settings.model), settings.model, settings.sentiment)


CLEAR = [
    ("今天考试没考好，心情很低落", Label.NEGATIVE),
    ("太好了，我拿到offer了，超级开心！", Label.POSITIVE),
    ("I hate this, worst day ever.", Label.NEGATIVE),
    ("I just got engaged, so happy!", Label.POSITIVE),
    ("What time does the store open tomorrow?", Label.NEUTRAL),
]


@pytest.mark.parametrize(("text", "label"), CLEAR)
def test_clear_messages_are_classified_correctly(engine: ModelEngine, text: str, label: Label) -> None:
    assert engine.classify(text).label is label


def test_the_embedded_model_runs_on_the_fast_path_with_the_shipped_shortlist(engine: ModelEngine) -> None:
    from bot.model import fast

    assert engine.fast is not None and engine.head is not None
    assert 50_000 < len(engine.head.ids) < engine.head.vocab  # the zh + en rows, not the whole vocabulary
    ids = engine.encode("今天考试没考好", special=True)
    new = fast.decode(engine.fast, engine.head, ids, 6, [], lambda tokens: False, None)
    assert len(new) == 6 and all(int(engine.head.row_of[t]) >= 0 for t in new)


def test_every_attempts_settings_decode_reproducibly_on_both_paths(engine: ModelEngine, hf_engine: ModelEngine) -> None:
    history = [ChatTurn("user", "今天考试没考好，心情很低落")]
    assert hf_engine.fast is None  # without the fast path, transformers' generate() answers instead
    for attempt in (0, 1):  # greedy, the reply's tokens penalised; the guard's retry, the prompt's too
        reply = engine.generate(history, Strategy.COMFORT, "zh", "", attempt=attempt)
        assert reply and reply == engine.generate(history, Strategy.COMFORT, "zh", "", attempt=attempt)
        assert hf_engine.generate(history, Strategy.COMFORT, "zh", "", attempt=attempt)


def test_the_fast_path_labels_as_transformers_does(engine: ModelEngine, hf_engine: ModelEngine) -> None:
    texts = [t for t, _ in CLEAR]
    assert [s.label for s in engine.classify_batch(texts)] == [s.label for s in hf_engine.classify_batch(texts)]


def test_a_warm_start_serves_without_transformers(engine: ModelEngine) -> None:
    assert engine.fast is not None  # the fixture made the serving snapshot: the start below is warm
    # bot/model/light.py and bot/model/tokenizer.py: the snapshot's tensors behind the attributes the
    # fast path reads and the Rust tokenizer alone, so transformers is never imported (its modeling
    # stack alone pulls in torch._dynamo, torch.distributed and sympy)
    code = (
        "import sys; from bot.config import load_settings; from bot.model.loader import load_model; "
        "from bot.model.engine import ModelEngine; s = load_settings('config.yaml', env={}); "
        "e = ModelEngine(load_model(s.model), s.model, s.sentiment); e.classify('hello'); "
        "print(type(e.model).__name__, type(e.tokenizer).__name__, e.fast is not None, "
        "any(m.split('.')[0] == 'transformers' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.split() == ["LightGemma", "RawTokenizer", "True", "False"]


def test_the_raw_tokenizer_encodes_and_decodes_as_transformers_does(engine: ModelEngine, hf_engine: ModelEngine) -> None:
    raw, hf = engine.tokenizer, hf_engine.tokenizer
    assert type(raw).__name__ == "RawTokenizer" and type(hf).__name__ != "RawTokenizer"
    rows = [json.loads(line) for line in (ROOT / "train" / "data" / "replies.jsonl").read_text("utf-8").splitlines()[:400]]
    texts = [t for row in rows for t in (row["message"], row["reply"])] + [
        "<start_of_turn>user\n你好<end_of_turn>\n<start_of_turn>model\n", "<unused5> <mask> [multimodal]",
        "", "  two  spaces ", "a\n\n\nb\tc", "🙂👍🏽 ok", "\u200bzero width", "Ａｂｃ１２３", "ﬁ ligature",
    ]
    for text in texts:
        for special in (False, True):
            ids = hf(text, add_special_tokens=special)["input_ids"]
            assert raw(text, add_special_tokens=special)["input_ids"] == ids, text
            for skip in (False, True):
                assert raw.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), text
    assert len(raw) == len(hf)
    for name in ("bos_token", "eos_token", "pad_token", "unk_token", "bos_token_id", "eos_token_id", "pad_token_id",
                 "unk_token_id"):
        assert getattr(raw, name) == getattr(hf, name), name
    sample = list(range(0, len(hf), 997))
    assert raw.convert_ids_to_tokens(sample) == hf.convert_ids_to_tokens(sample)
    assert raw.convert_tokens_to_ids(prompts.END_TURN) == hf.convert_tokens_to_ids(prompts.END_TURN)
    assert set(hf.all_special_ids) <= set(raw.all_special_ids)  # turn markers too: no reply copies them


def test_classification_is_deterministic(engine: ModelEngine) -> None:
    texts = [t for t, _ in CLEAR]
    assert engine.classify_batch(texts) == engine.classify_batch(texts)


@pytest.mark.parametrize(
    ("text", "strategy", "lang"),
    [("今天考试没考好，心情很低落", Strategy.COMFORT, "zh"), ("I got promoted today!", Strategy.CELEBRATE, "en")],
)
def test_generates_a_clean_reply_in_the_senders_language(
    engine: ModelEngine, text: str, strategy: Strategy, lang: str
) -> None:
    reply = engine.generate([ChatTurn("user", text)], strategy, lang, prompts.system_prompt(strategy, lang, {}))
    assert reply and len(reply) <= engine.settings.max_reply_chars
    assert detect_lang(reply) == lang
    for label in ("User:", "Assistant:", "用户:", "助手:", "Message:", "Mood:"):
        assert label not in reply


def test_chat_command_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "MOODBOT__STORE__DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", "config.yaml", "chat"],
        cwd=ROOT, input="今天考试没考好，心情很低落\n", capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    mood, reply = lines[1], lines[2]
    assert "negative" in mood and "comfort" in mood
    assert reply.startswith("bot> ") and detect_lang(reply[5:]) == "zh"


def test_classify_command_on_the_zh_dev_set(tmp_path: Path) -> None:
    source = EVAL_DIR / "zh_short.dev.jsonl"
    if not source.exists():
        pytest.skip("../shared/eval is not beside this checkout")
    target = tmp_path / "out.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "classify", str(source), "-o", str(target), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 500 and all(r["label"] in ("positive", "negative", "neutral") for r in records)
    assert "accuracy (three labels)" in result.stdout and "messages/s" in result.stdout


def test_model_path_to_a_gguf_file() -> None:
    # a GGUF file named in model.path takes the same conversion-and-cache path a Qwen GGUF would
    from bot.model.loader import embedded_gguf

    settings = ModelSettings(path=str(embedded_gguf(Path(ModelSettings().cache_dir).expanduser())))
    loaded = load_model(settings)
    engine = ModelEngine(loaded, settings, SentimentSettings())
    assert engine.classify("太糟糕了，气死我了").label is Label.NEGATIVE


# written for these tests; none of them is in train/data/crisis.jsonl
CRISIS_SAMPLE = [
    ("I've written letters to my family and tonight I'm going to end it", True),
    ("我把药都攒好了，今晚就结束这一切", True),
    ("everyone would honestly be better off if I just disappeared for good", True),
    ("this traffic is killing me lol", False),
    ("笑死我了哈哈哈，这个视频太好笑了", False),
    ("thanks, that really helps", False),
    ("What time does the store open tomorrow?", False),
    # ordinary health questions: a pharmacy's customers ask them every day (bench/NOTES.md)
    ("How many ibuprofen can I take for a headache?", False),
    ("孩子发烧39度，要不要去急诊", False),
    ("牙疼得厉害，吃什么药好", False),
]


@pytest.mark.parametrize(("text", "crisis"), CRISIS_SAMPLE)
def test_crisis_head_on_a_fixed_sample(engine: ModelEngine, text: str, crisis: bool) -> None:
    settings = load_settings(ROOT / "config.yaml", env={}).escalation
    assert engine.crisis_head is not None, "no crisis head shipped for the served weights: run `make heads`"
    assert engine.crisis_head.sure is not None
    score = engine.crisis_score(text)
    if crisis:  # a person is alerted at least (the recall-first threshold)
        assert score >= settings.concern_threshold
    else:  # never the crisis reply
        assert score < settings.crisis_threshold


# written for this test; none of them is a reply example's message
HANDOFF_SAMPLE = [
    ("我的退款申请提交一周了还没到账", True), ("订单显示已签收，可是我根本没收到货", True),
    ("how do I get an invoice for last month's order?", True), ("my card was charged but the order never went through", True),
    ("周末去爬山，风景超美", False), ("你好厉害呀", False), ("今天终于把论文写完了", False),
    ("my cat knocked my coffee over again lol", False), ("what's a good movie for a rainy night?", False),
]


def test_the_crisis_heads_mean_states_are_the_same_on_both_paths(engine: ModelEngine, hf_engine: ModelEngine) -> None:
    assert engine.crisis_head is not None and engine.crisis_head.pooled
    texts = ["我把药都攒好了，今晚就结束这一切", "How many ibuprofen can I take for a headache?"]
    fast, hf = (e.mood.normed(texts, engine.crisis_head.layers, with_mean=True) for e in (engine, hf_engine))
    assert torch.nn.functional.cosine_similarity(fast, hf).min() > 0.99


@pytest.mark.parametrize(("text", "person"), HANDOFF_SAMPLE)
def test_handoff_head_on_a_fixed_sample(engine: ModelEngine, text: str, person: bool) -> None:
    assert engine.handoff_head is not None, "no hand-off head shipped for the served weights: run `make heads`"
    assert engine.needs_person(text) is person


REPLY_HEAD_SAMPLE = [  # written for this test: the fitting reply first, then an off-topic and an unfit one
    ("我的猫今天走丢了，好难过", Strategy.COMFORT, "zh",
     ["猫走丢了，心里一定很着急。", "恭喜你升职了！", "猫走丢了，心里一定很着急。我转给同事帮您处理。"]),
    ("my flight got cancelled and I'm stuck at the airport", Strategy.COMFORT, "en",
     ["A cancelled flight and a night stuck at the airport, that's exhausting.", "Congratulations on your new job!",
      "Your flight leaves at 9:45 from gate 12."]),
    ("请问你们几点关门", Strategy.PLAIN, "zh", ["关门时间我这边没有资料，我请同事帮您确认。", "恭喜你！", "我们晚上十点关门。"]),
]


@pytest.mark.parametrize(("message", "strategy", "lang", "replies"), REPLY_HEAD_SAMPLE)
def test_the_reply_head_rates_a_fitting_reply_above_off_topic_and_invented_ones(
        engine: ModelEngine, message: str, strategy: Strategy, lang: str, replies: list[str]) -> None:
    from bot.model.fast import prefill

    assert engine.reply_head is not None, "no reply head shipped for the served weights: run `make heads`"
    assert engine.fast is not None
    ids, _ = engine.reply_ids([ChatTurn("user", message)], strategy, lang, "")
    prompt = prefill(engine.fast, ids)
    fitting, *others = [engine.reply_score(prompt, reply) for reply in replies]
    assert fitting > max(others)


MATCH_SAMPLE = [  # written for this test, against the sample FAQ's entries (examples/faq.yaml)
    ("周日早上几点开门呀", "你们的营业时间是什么？", True),
    ("hey whats the number to call u", "What is your phone number?", True),
    ("没拆封的茶叶能退不", "怎么退货？退货政策是什么？", True),
    ("do you sell gift cards?", "Can I get an invoice?", False),
    ("你们有会员积分吗", "支持哪些付款方式？", False),
    ("do u guys do gift wrapping", "How long does shipping take and how much does it cost?", False),
]


@pytest.mark.parametrize(("question", "entry", "answers"), MATCH_SAMPLE)
def test_the_match_head_tells_an_answering_entry_from_one_that_only_shares_words(
        engine: ModelEngine, question: str, entry: str, answers: bool) -> None:
    from bot.knowledge import load_entries

    assert engine.match_head is not None, "no FAQ match head shipped for the served weights: run `make heads`"
    answer = next(e.answer for e in load_entries(ROOT / "examples" / "faq.yaml") if e.question == entry)
    verdict = engine.faq_match(question, answer, 0.1)
    assert verdict is not None and verdict.answers is answers and verdict.surely is answers


def test_the_served_model_is_the_fine_tuned_one(engine: ModelEngine) -> None:
    assert engine.tuned and engine.readout is not None and "adapter" in engine.name


def _run_console(text: str, tmp_path: Path) -> list[str]:
    env = {**os.environ, "MOODBOT__STORE__DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", "config.yaml", "run"],
        cwd=ROOT, input=text + "\n", capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_crisis_piped_into_run_gets_the_crisis_strategy_and_the_configured_reply(tmp_path: Path) -> None:
    lines = _run_console("I can't do this anymore, I want to kill myself", tmp_path)
    settings = load_settings(ROOT / "config.yaml", env={})
    assert any("strategy: crisis" in line for line in lines)
    assert f"bot> {settings.crisis.text('reply', 'en')}" in lines


def test_the_exam_message_gets_a_comforting_chinese_reply_that_passes_the_guard(tmp_path: Path) -> None:
    from bot import guard

    lines = _run_console("今天考试没考好，心情很低落", tmp_path)
    mood = next(line for line in lines if "strategy:" in line)
    reply = next(line for line in lines if line.startswith("bot> "))[5:]
    assert "negative" in mood and "comfort" in mood
    # whether it names the exam is not reliable yet (see bench/REPORT.md): what is checked is what
    # the guard guarantees, a Chinese reply that does not restate the message
    assert guard.check(reply, "今天考试没考好，心情很低落", "zh", None, []) is None
