from bot.text import clean_reply, detect_lang, sanitize, split_message


def test_sanitize_strips_control_characters_and_truncates() -> None:
    assert sanitize("he\x00llo\x1b[31m\nworld\u200b", 100) == "hello[31m world"
    assert sanitize("x" * 100_000, 50) == "x" * 50
    assert sanitize("\x00\x01\x02", 10) == ""


def test_sanitize_keeps_emoji() -> None:
    assert sanitize("👨‍👩‍👧 😂😂", 20) == "👨‍👩‍👧 😂😂"


def test_detect_lang() -> None:
    assert detect_lang("今天考试没考好") == "zh"
    assert detect_lang("I failed my exam") == "en"
    assert detect_lang("我用iPhone") == "zh"
    assert detect_lang("😂😂") == "en"


def test_clean_reply_drops_role_labels_and_next_turns() -> None:
    raw = "Assistant: That's great news!\nUser: thanks\nAssistant: you're welcome"
    assert clean_reply(raw) == "That's great news!"
    assert clean_reply("助手：太好了！\n用户：谢谢") == "太好了！"


def test_clean_reply_cuts_repetition_loops() -> None:
    raw = "It is the capital. It is the capital. It is the capital. It is the capital."
    assert clean_reply(raw) == "It is the capital."
    assert clean_reply("哈哈哈哈哈哈哈哈哈哈好的") == "哈哈好的"


def test_clean_reply_is_bounded_at_a_sentence() -> None:
    raw = "This is one sentence. " * 40
    out = clean_reply(raw.replace("one", "a"), max_chars=100)
    assert len(out) <= 100
    long = " ".join(f"Sentence number {i} is here." for i in range(30))
    out = clean_reply(long, max_chars=100)
    assert len(out) <= 100 and out.endswith(".")


def test_split_message_at_sentence_boundaries() -> None:
    text = "第一句话。第二句话！第三句话？" * 5
    pieces = split_message(text, 20)
    assert "".join(pieces) == text
    assert all(len(p) <= 20 for p in pieces)
    assert all(p[-1] in "。！？" for p in pieces)
    assert split_message("short", 20) == ["short"]
    assert split_message("", 20) == []
    assert all(len(p) <= 10 for p in split_message("x" * 35, 10))
    words = "one two three four five six seven eight nine ten"
    assert " ".join(split_message(words, 12)) == words
    assert all(len(p) <= 12 for p in split_message(words, 12))


def test_split_quote_reads_wechats_quoted_reply() -> None:
    from bot.text import split_quote

    line = "\n- - - - - - - - - - - - - - -\n"
    assert split_quote("「Bob：honestly some nights I think about how to end it all」" + line + "what happened?") == ("Bob", "honestly some nights I think about how to end it all", "what happened?")
    # a quote of a quote: the last separator line ends the quoted words
    assert split_quote("「张三：「李四：你好」" + line + "在吗」" + line + "怎么了") == ("张三", "「李四：你好」" + line + "在吗", "怎么了")
    for text in ["普通消息「引号」", "「不是引用」 - - -", "「Bob：hi」" + line]:  # no own words: left as it is
        assert split_quote(text) == (None, "", text)
