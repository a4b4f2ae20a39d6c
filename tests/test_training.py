"""The training commands' smoke runs on a tiny random Gemma 3, and the adapter merge they feed."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from bot.config import ModelSettings, SentimentSettings
from bot.domain import ChatTurn, Strategy
from bot.errors import EngineError
from bot.model import adapters
from bot.model.heads import Readout


@pytest.fixture(scope="module")
def trained(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train import finetune

    out = tmp_path_factory.mktemp("finetune")
    finetune.main(["--smoke", "--model-dir", str(tiny_dirs["gemma3"]), "--out", str(out),
                   "--crisis-files", SHIPPED_CRISIS_FILES])
    return out


SHIPPED_CRISIS_FILES = "crisis.jsonl,crisis_more_en.jsonl,crisis_more_zh.jsonl"  # as `make train` names them


def test_finetune_smoke_writes_a_peft_adapter_and_heads(trained: Path) -> None:
    assert (trained / "adapter" / "adapter_config.json").exists()
    assert (trained / "adapter" / adapters.WEIGHTS_FILE).exists()
    assert (trained / "joint_heads.pt").exists() and (trained / "train_meta.json").exists()


def test_the_adapter_kept_is_the_best_on_validation(trained: Path) -> None:
    import json

    meta = json.loads((trained / "train_meta.json").read_text())
    best = json.loads((trained / "best" / "scores.json").read_text())
    assert meta["best"] == best and best["step"] in (2, 3)
    assert set(meta["crisis_files"]) <= set(SHIPPED_CRISIS_FILES.split(","))


def _training_data(argv: list[str]) -> tuple[list, int, list]:
    from train import finetune

    parser = finetune.build_parser()
    return finetune.training_replies_and_crisis(parser, parser.parse_args(argv))


def test_replacement_replies_swap_rows_by_id(tmp_path: Path) -> None:
    import json

    from train import data as tdata

    first = json.loads(tdata.REPLIES.read_text(encoding="utf-8").splitlines()[0])
    swap = tmp_path / "swap.jsonl"
    swap.write_text(json.dumps({**first, "reply": "A rewritten reply for the test."}) + "\n", encoding="utf-8")
    before, _, _ = _training_data([])
    replies, replaced, _ = _training_data(["--replace-replies", str(swap)])
    assert replaced == 1 and len(replies) == len(before)
    changed = [(a.id, b.reply) for a, b in zip(before, replies) if a != b]
    assert changed == [(first["id"], "A rewritten reply for the test.")]


@pytest.mark.parametrize("change", ["message", "strategy", "unknown id", "same id twice", "empty", "not json"])
def test_a_replacement_file_that_does_not_fit_the_data_is_refused(
        change: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from train import data as tdata

    first = json.loads(tdata.REPLIES.read_text(encoding="utf-8").splitlines()[0])
    rows = {"message": [{**first, "message": "not the row's message"}],
            "strategy": [{**first, "strategy": "celebrate" if first["strategy"] != "celebrate" else "plain"}],
            "unknown id": [{**first, "id": "no-such-id"}],
            "same id twice": [first, {**first, "reply": "another"}],
            "empty": []}.get(change)
    swap = tmp_path / "swap.jsonl"
    text = "{not json\n" if rows is None else "".join(json.dumps(r) + "\n" for r in rows)
    swap.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit):
        _training_data(["--replace-replies", str(swap)])
    err = capsys.readouterr().err
    assert "--replace-replies" in err
    assert {"message": first["id"], "strategy": first["id"], "unknown id": "no-such-id", "same id twice": first["id"],
            "empty": "no rows", "not json": "not valid JSON"}[change] in err


def test_added_replies_join_the_reply_data(tmp_path: Path) -> None:
    import json

    extra = tmp_path / "extra.jsonl"
    row = {"id": "added-1", "lang": "en", "strategy": "plain", "message": "bot, tea or coffee for the meeting?",
           "reply": "Tea, so nobody is jittery by the end.", "history": [], "knowledge": []}
    extra.write_text(json.dumps(row) + "\n", encoding="utf-8")
    before, _, _ = _training_data([])
    replies, _, _ = _training_data(["--add-replies", str(extra)])
    assert replies[:-1] == before
    assert (replies[-1].id, replies[-1].reply) == ("added-1", row["reply"])


@pytest.mark.parametrize("change", ["known id", "same id twice", "empty", "no reply"])
def test_an_added_reply_file_that_does_not_fit_is_refused(
        change: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from train import data as tdata

    first = json.loads(tdata.REPLIES.read_text(encoding="utf-8").splitlines()[0])
    new = {**first, "id": "added-1"}
    rows = {"known id": [first], "same id twice": [new, {**new, "reply": "another"}], "empty": [],
            "no reply": [{k: v for k, v in new.items() if k != "reply"}]}[change]
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(SystemExit):
        _training_data(["--add-replies", str(extra)])
    err = capsys.readouterr().err
    assert "--add-replies" in err
    assert {"known id": first["id"], "same id twice": "added-1", "empty": "no rows", "no reply": "lacks"}[change] in err


def test_crisis_files_select_their_rows_only() -> None:
    _, _, rows = _training_data(["--crisis-files", "crisis_more_en.jsonl"])
    assert rows and {r.extra["file"] for r in rows} == {"crisis_more_en.jsonl"}
    _, _, every = _training_data([])
    assert len(every) > len(rows)


@pytest.mark.parametrize("names", ["crisis.jsonl,crisis_typo.jsonl", ","])
def test_an_unknown_or_empty_crisis_file_list_is_refused(names: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _training_data(["--crisis-files", names])
    assert ("crisis_typo.jsonl" if "typo" in names else "no file named") in capsys.readouterr().err


def test_a_run_folder_resumes_only_the_run_that_made_it(trained: Path, tiny_dirs: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from train import finetune

    assert json.loads((trained / "train_meta.json").read_text())["recipe"]["seed"] == "0"
    with pytest.raises(SystemExit):
        finetune.main(["--smoke", "--model-dir", str(tiny_dirs["gemma3"]), "--out", str(trained),
                       "--crisis-files", SHIPPED_CRISIS_FILES, "--seed", "1"])
    assert "changed: seed" in capsys.readouterr().err


def test_batches_group_similar_lengths_and_cover_every_item_once_an_epoch() -> None:
    import random

    from train.finetune import Encoded, grouped_batches

    items = [Encoded([0] * n, [-100] * n) for n in random.Random(1).sample(range(10, 400), 64)]
    batches = grouped_batches(items, 8, random.Random(0))
    epoch = [next(batches) for _ in range(8)]
    assert sorted(id(x) for b in epoch for x in b) == sorted(id(x) for x in items)
    spread = [max(len(x.ids) for x in b) - min(len(x.ids) for x in b) for b in epoch]
    assert max(spread) < 100  # a random batch of 8 from 10..400 spans about 300


def test_the_merged_checkpoint_computes_what_the_adapter_does(trained: Path, tiny_dirs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir, adapter = tiny_dirs["gemma3"], trained / "adapter"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged_dir = adapters.merged_checkpoint(base_dir, adapter, torch.float32, tmp_path)
    # the first start's merge prints nothing but the bot's own log lines
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    assert merged_dir.name.endswith(adapters.digest(adapter))
    assert adapters.merged_checkpoint(base_dir, adapter, torch.float32, tmp_path) == merged_dir  # built once
    ids = torch.randint(5, 500, (2, 12))
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        plain = base(ids).logits
        unmerged = PeftModel.from_pretrained(base, str(adapter)).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()(ids).logits
    assert not torch.allclose(plain, unmerged)  # the adapter changed the model...
    assert torch.allclose(merged, unmerged, atol=1e-4)  # ...and merging keeps exactly that change


def test_an_adapter_is_used_only_where_configured(trained: Path, tmp_path: Path) -> None:
    assert adapters.resolve("none", embedded=True) is None
    assert adapters.resolve("auto", embedded=False) is None  # a model.path checkpoint is served as it is
    assert adapters.resolve(str(trained / "adapter"), embedded=False) == trained / "adapter"
    with pytest.raises(EngineError, match="not a LoRA adapter"):
        adapters.resolve(str(tmp_path), embedded=False)


def test_a_configured_adapter_is_merged_at_load(trained: Path, tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from bot.model.loader import load_model

    settings = ModelSettings(path=str(tiny_dirs["gemma3"]), adapter=str(trained / "adapter"),
                             cache_dir=str(tmp_path), quantize="none", dtype="float32")
    loaded = load_model(settings)
    assert loaded.tuned and "adapter" in loaded.name
    assert (tmp_path / "merged").exists()


def test_heads_smoke_fits_fingerprinted_heads_and_a_foreign_head_is_refused(tiny_dirs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model
    from train import heads

    heads.main(["--smoke", "--model-dir", str(tiny_dirs["gemma3"]), "--out", str(tmp_path)])
    mood_files = [p for p in tmp_path.glob("*.pt") if p.name.count(".") == 1]
    crisis_files, handoff_files = list(tmp_path.glob("*.crisis.pt")), list(tmp_path.glob("*.handoff.pt"))
    assert len(mood_files) == 1 and len(crisis_files) == 1 and len(handoff_files) == 1
    mood, crisis, handoff = (Readout.load(p[0]) for p in (mood_files, crisis_files, handoff_files))
    assert mood.labels == ("positive", "negative", "neutral") and crisis.labels == ("crisis", "not_crisis")
    assert handoff.labels == ("person", "no_person") and 0 < handoff.threshold < 1
    assert 0 < crisis.threshold <= 0.5 and mood.temperature > 0
    assert len(mood.members) == 5 and not crisis.members  # the mood head is the networks' mean, crisis linear
    # the crisis head also reads the message's mean states (twice the features); the others do not
    assert crisis.pooled and not mood.pooled and not handoff.pooled
    assert crisis.mean.shape[-1] == 2 * mood.mean.shape[-1]
    assert Readout.load(crisis_files[0]).pooled  # kept through a save and a load
    (reply_file,) = tmp_path.glob("*.reply.pt")
    reply = Readout.load(reply_file)
    assert reply.labels == ("grade",) and reply.fingerprint == mood.fingerprint and "ridge decay" in reply.note

    settings = ModelSettings(path=str(tiny_dirs["gemma3"]), quantize="none", dtype="float32")
    loaded = load_model(settings)
    engine = ModelEngine(loaded, settings, SentimentSettings(readout=str(mood_files[0]), crisis_head=str(crisis_files[0]),
                                                             handoff_head=str(handoff_files[0])))
    assert 0.0 <= engine.crisis_score("hello") <= 1.0
    # one pass gives every head its features: with a head that reads the means, every text has them
    assert engine.features(["hello"]).shape[1] == 2 * len(engine.head_layers())
    trimmed = Readout.load(crisis_files[0])
    trimmed.pooled = False  # a file whose features no longer fit what it says it reads
    trimmed.save(tmp_path / "trimmed.crisis.pt")
    with pytest.raises(EngineError, match="trained for another model"):
        ModelEngine(loaded, settings, SentimentSettings(readout="none", crisis_head=str(tmp_path / "trimmed.crisis.pt")))
    assert engine.classify("hello").label.value in mood.labels
    assert engine.needs_person("where is my refund") in (True, False)
    assert ModelEngine(loaded, settings, SentimentSettings(handoff_head="none")).needs_person("hello") is None
    # the reply head needs the int8 decode loop, as the heads command built it
    served = ModelSettings(path=str(tiny_dirs["gemma3"]), reply_head=str(reply_file), max_new_tokens=6)
    served_model = load_model(served)
    chooser = ModelEngine(served_model, served, SentimentSettings(readout="none", crisis_head="none"))
    assert chooser.fast is not None and chooser.reply_head is not None
    rated: list[str] = []
    score = chooser.reply_score
    chooser.reply_score = lambda prompt, text: rated.append(text) or score(prompt, text)  # type: ignore[method-assign]
    history = [ChatTurn("user", "my cat is sick")]
    sent = chooser.generate(history, Strategy.COMFORT, "en", "")
    assert 1 <= len(rated) <= served.reply_branches and sent in rated  # a branch that decodes to nothing is not rated
    rated.clear()
    chooser.generate(history, Strategy.COMFORT, "en", "", attempt=1)  # the guard's retry is one greedy reply
    assert rated == []
    served_model.fingerprint = "other-weights"
    with pytest.raises(EngineError, match="the reply head .* was trained for the weights"):
        ModelEngine(served_model, served, SentimentSettings(readout="none", crisis_head="none"))
    loaded.fingerprint = "other-weights"
    with pytest.raises(EngineError, match="trained for the weights"):
        ModelEngine(loaded, settings, SentimentSettings(readout=str(mood_files[0]), crisis_head="none"))
    with pytest.raises(EngineError, match="the handoff head .* was trained for the weights"):
        ModelEngine(loaded, settings, SentimentSettings(readout="none", crisis_head="none",
                                                        handoff_head=str(handoff_files[0])))


def test_heads_rebuilds_only_the_named_heads_and_refuses_an_unknown_one(tiny_dirs: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    from train import heads

    heads.main(["--smoke", "--model-dir", str(tiny_dirs["gemma3"]), "--out", str(tmp_path), "--heads", "handoff"])
    assert [p.name.split(".", 1)[1] for p in tmp_path.glob("*.pt")] == ["handoff.pt"]
    with pytest.raises(SystemExit):
        heads.main(["--smoke", "--heads", "mood,tone"])


def test_the_reply_head_learns_to_order_two_replies_to_one_prompt() -> None:
    """The grade shows in the first feature under noise; cross-validation by prompt picks a decay and
    the head orders most pairs of replies to one prompt as their grades do."""
    from train import heads

    g = torch.Generator().manual_seed(0)
    grade = torch.randint(0, 5, (300,), generator=g).float() / 2
    x = torch.randn(300, 6, generator=g)
    x[:, 0] += 6 * grade
    prompt = [f"p{i // 3}" for i in range(300)]
    head = heads.reply_head(x, grade, prompt, (1, 2), "fp")
    assert head.labels == ("grade",) and "cross-validated" in head.note
    assert heads.ordered_pairs(head.logits(x)[:, 0], grade, prompt) > 0.9
    assert heads.ordered_pairs(-grade, grade, prompt) == 0.0 and heads.ordered_pairs(grade, grade, prompt) == 1.0


def test_the_handoff_threshold_keeps_most_messages_that_need_a_person() -> None:
    """Label 0 (a person) scores high on the first feature; the threshold keeps HANDOFF_RECALL of the
    validation rows that need one, and the note says how many of the others fall under it."""
    from train import heads

    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(100, 4, generator=g) + torch.tensor([3.0, 0, 0, 0]), torch.randn(400, 4, generator=g)])
    y = torch.tensor([0] * 100 + [1] * 400)
    head = heads.handoff_head(x[::2], y[::2], x[1::2], y[1::2], (0,), "fp")
    p = head.probs(x[1::2])[:, 0]
    kept = float((p[y[1::2] == 0] >= head.threshold).float().mean())
    assert kept >= heads.HANDOFF_RECALL
    assert float((p[y[1::2] == 1] < head.threshold).float().mean()) > 0.5
    assert "AUC" in head.note and heads.auc(torch.tensor([0.9, 0.1]), torch.tensor([True, False])) == 1.0


def test_the_networks_mood_head_learns_saves_and_refuses_a_misshapen_file(tmp_path: Path) -> None:
    """Three separable classes in 8 features: the networks learn them, stop early on their own rows,
    and survive a save and load; a network that does not fit the features is refused at load."""
    from train import heads

    torch.manual_seed(0)
    y = torch.arange(300) % 3
    x = torch.randn(300, 8) * 0.3
    x[torch.arange(300), y] += 2.0
    stop = torch.arange(300) % 10 == 0
    head = heads.mood_head(x, y, x[:60], y[:60], (0,), "fp", stop=stop)
    assert len(head.members) == 5 and head.weight.numel() == 0
    assert float((head.probs(x).argmax(1) == y).float().mean()) > 0.95
    head.save(tmp_path / "mood.pt")
    again = Readout.load(tmp_path / "mood.pt")
    assert torch.allclose(again.probs(x), head.probs(x))
    assert torch.allclose(head.probs(x).sum(1), torch.ones(300))
    linear = heads.mood_head(x, y, x[:60], y[:60], (0,), "fp", kind="linear")
    assert not linear.members and float((linear.probs(x).argmax(1) == y).float().mean()) > 0.95

    w1, b1, w2, b2 = head.members[0]
    head.members[0] = (w1[:, :4], b1, w2, b2)
    head.save(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit its 8 features"):
        Readout.load(tmp_path / "bad.pt")
    from bot.model.engine import _pick_readout

    with pytest.raises(EngineError, match="cannot be read: .*does not fit"):
        _pick_readout(str(tmp_path / "bad.pt"), "fp", 8, "mood")
    (tmp_path / "junk.pt").write_bytes(b"not a head")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"layers": [0]}, tmp_path / "partial.pt")
    for name, why in (("junk", "cannot be read"), ("empty", "cannot be read"), ("tensor", "holds a Tensor"),
                      ("partial", "missing mean, std")):
        with pytest.raises(EngineError, match=why):
            _pick_readout(str(tmp_path / f"{name}.pt"), "fp", 8, "mood")
    head.members[0] = (w1, b1[:3], w2, b2)  # inner widths that do not match: refused at load, not at the first message
    head.save(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit"):
        Readout.load(tmp_path / "bad.pt")


def test_networks_without_stopping_rows_keep_their_last_epoch(caplog: pytest.LogCaptureFixture) -> None:
    from train import heads

    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.arange(40) % 3
    state = torch.random.get_rng_state()
    with caplog.at_level("INFO", logger="train.heads"):
        heads.fit_networks(x, y, torch.zeros(40, dtype=torch.bool), 3, seeds=2, width=8, epochs=4)
    assert "no stopping rows" in caplog.text and "epoch 4, no stopping rows" in caplog.text
    assert torch.equal(torch.random.get_rng_state(), state)  # the seeds leave the caller's random state alone
    with pytest.raises(ValueError, match="at least two training rows"):
        heads.fit_networks(x[:3], y[:3], torch.tensor([True, True, False]), 3)


def test_the_sure_crisis_threshold_also_bounds_false_alarms_on_ordinary_messages() -> None:
    """Hard negatives alone would put the sure tier low; ordinary messages that score above it must
    not exceed their share, even at the cost of recall."""
    from train import heads

    g = torch.Generator().manual_seed(0)
    crises = torch.randn(60, 4, generator=g) + torch.tensor([3.0, 0, 0, 0])
    others = torch.randn(300, 4, generator=g) - torch.tensor([3.0, 0, 0, 0])
    x = torch.cat([crises, others])
    y = torch.tensor([0] * 60 + [1] * 300)
    # ordinary messages that look like crises on the first feature (they do in the real model:
    # "how long can cooked rice stay in the fridge")
    ordinary = torch.randn(200, 4, generator=g) + torch.tensor([1.5, 0, 0, 0])
    plain = heads.crisis_head(x, y, x, y, (0,), "fp")
    bounded = heads.crisis_head(x, y, x, y, (0,), "fp", ordinary_val=ordinary)
    assert plain.sure is not None and bounded.sure is not None

    def share(head: Readout) -> float:
        return float((head.probs(ordinary)[:, 0] >= head.sure).float().mean())

    assert share(plain) > heads.SURE_ORDINARY_FALSE_ALARMS
    assert share(bounded) <= heads.SURE_ORDINARY_FALSE_ALARMS and bounded.sure > plain.sure
    assert share(bounded) >= heads.SURE_ORDINARY_FALSE_ALARMS - 0.01  # the lowest such threshold, not any
    assert "bound on ordinary messages" in bounded.note and "bound" not in plain.note
    empty = heads.crisis_head(x, y, x, y, (0,), "fp", ordinary_val=torch.empty(0, 4))
    assert empty.sure == plain.sure
    assert bounded.threshold == plain.threshold  # the recall-first tier is not moved
    assert heads.lowest_threshold(torch.tensor([0.9, 0.8, 0.1, 0.2]), 0.25) == pytest.approx(0.8 * 1.001)


def test_cache_prune_removes_only_what_no_named_config_uses(trained: Path, tiny_dirs: dict[str, Path],
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess

    import yaml

    from bot.__main__ import main
    from bot.config import load_settings
    from bot.model.loader import load_model, locate

    cache = tmp_path / "cache"
    model = {"path": str(tiny_dirs["gemma3"]), "cache_dir": str(cache), "dtype": "float32"}
    configs = {}
    (tmp_path / "link").symlink_to(cache)  # the same folder, written another way
    for name, extra in {"tuned": {"adapter": str(trained / "adapter")}, "plain": {"cache_dir": str(tmp_path / "link")},
                        "broken": {"path": str(tmp_path / "nowhere")},
                        "server": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}}.items():
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump({"model": {**model, **extra}}))
    tuned = load_model(load_settings(configs["tuned"]).model)
    plain = load_model(load_settings(configs["plain"]).model)
    where = locate(load_settings(configs["tuned"]).model)
    assert where.served.parent == cache / "merged" and where.serving(cache).stem == tuned.cache_key
    snapshot = cache / "serving" / f"{tuned.cache_key}.pt"
    stamps = {p: p.stat().st_mtime_ns for p in (snapshot, where.served / "config.json")}

    finished = subprocess.Popen(["true"])
    finished.wait()
    crashed = cache / "serving" / f"half.pt.tmp{finished.pid}"
    stale = [cache / "merged" / "tiny+000000000000" / "model.safetensors", cache / "serving" / "gone-0123456789ab.pt",
             cache / "serving" / "gone-0123456789ab.tokenizer.json", cache / "prefix" / "gone-0123456789ab-feed.pt", crashed]
    kept = [cache / "prefix" / f"{tuned.cache_key}-feed.pt", cache / "serving" / f"next.pt.tmp{os.getpid()}",
            cache / "serving" / f"elsewhere.pt.tmp{finished.pid}",  # another container's build: recent, kept
            cache / "kernels" / "decode-000000000000.so", cache / "gguf" / "gemma-3-270m-q4_k_m.gguf",
            cache / "wheels" / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    os.utime(crashed, (1e9, 1e9))
    everything = sorted(p for p in cache.rglob("*"))

    assert main(["--config", str(configs["tuned"]), "cache"]) == 0  # a listing removes nothing
    listing = capsys.readouterr().out
    assert "in use" in listing and "unused" in listing and "building" in listing and "other" in listing
    assert sorted(cache.rglob("*")) == everything
    assert main(["--config", str(configs["broken"]), "cache", "--prune"]) == 2  # no model found: refuse
    assert "does not exist" in capsys.readouterr().err and sorted(cache.rglob("*")) == everything
    assert main(["--config", str(configs["server"]), "cache", "--prune"]) == 2  # its bots serve nothing from here
    assert "no named config serves a local model" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # no config.yaml here: a listing may use the defaults, a prune may not
    assert main(["cache", "--prune"]) == 2
    assert "config.yaml does not exist" in capsys.readouterr().err and sorted(cache.rglob("*")) == everything

    assert main(["--config", str(configs["tuned"]), "cache", "--prune", "--also", str(configs["plain"])]) == 0
    pruned = capsys.readouterr().out
    assert "freed" in pruned and "not here" not in pruned
    assert not any(p.exists() for p in stale) and not (cache / "merged" / "tiny+000000000000").exists()
    assert all(p.exists() for p in kept)
    assert (cache / "serving" / f"{plain.cache_key}.pt").exists()  # the other config's snapshot
    load_model(load_settings(configs["tuned"]).model)  # and the kept files serve without a rebuild
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    assert main(["--config", str(configs["tuned"]), "cache", "--prune"]) == 0
    assert not (cache / "serving" / f"{plain.cache_key}.pt").exists() and snapshot.exists()


def test_faq_match_smoke_fits_a_head_the_engine_reads(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from bot.model.engine import ModelEngine
    from bot.model.loader import load_model
    from train import faq_match

    faq_match.main(["--smoke", "--model-dir", str(tiny_dirs["gemma3"]), "--out", str(tmp_path)])
    (path,) = tmp_path.glob("*.match.pt")
    head = Readout.load(path)
    assert head.labels == ("answers", "other") and head.extra == ("bm25",)
    assert 0 < head.threshold <= head.sure < 1 and "validation businesses" in head.note
    settings = ModelSettings(path=str(tiny_dirs["gemma3"]), match_head=str(path))
    loaded = load_model(settings)
    engine = ModelEngine(loaded, settings, SentimentSettings(readout="none", crisis_head="none"))
    verdict = engine.faq_match("r u open at 9?", "We are open from 10 am to 9 pm.", 0.05)
    assert verdict is not None and 0.0 <= verdict.p <= 1.0
    assert verdict.answers == (verdict.p >= head.threshold) and verdict.surely == (verdict.p >= head.sure)
    assert ModelEngine(loaded, ModelSettings(path=str(tiny_dirs["gemma3"]), match_head="none"),
                       SentimentSettings(readout="none", crisis_head="none")).faq_match("hi", "hello", 0.5) is None
    # the BM25 score is one more feature: a head file without it does not fit the model's states
    head.extra = ()
    head.save(tmp_path / "short.match.pt")
    with pytest.raises(EngineError, match="trained for another model"):
        ModelEngine(loaded, ModelSettings(path=str(tiny_dirs["gemma3"]), match_head=str(tmp_path / "short.match.pt")),
                    SentimentSettings(readout="none", crisis_head="none"))


def test_faq_match_bars_keep_bm25s_precision() -> None:
    from train.faq_match import lowest_bar

    right = torch.tensor([True, True, True, False, True, False, False])
    bm25 = torch.tensor([0.30, 0.05, 0.22, 0.21, 0.25, 0.02, 0.01])  # from 0.2: 3 right of 4
    p = torch.tensor([0.90, 0.80, 0.70, 0.10, 0.60, 0.55, 0.30])
    # from 0.35 the head sends 4 right of 5: one more answered, and no less precise
    assert lowest_bar(p, bm25, right, 0.2) == 0.35
    assert lowest_bar(p, bm25, right, 0.25) == 0.6  # BM25 from 0.25 is never wrong: the head must not be either


def test_customer_questions_for_the_crisis_head_keep_validation_businesses_and_scored_texts_apart() -> None:
    from train import data as tdata

    questions = tdata.faq_questions()
    held = tdata.faq_banned()
    assert questions and not any(tdata.digest(text) in held for text, _ in questions)
    businesses = tdata.faq_businesses()
    val_texts = {str(q["q"]) for b in businesses if tdata.is_validation_business(str(b["business"])) for q in b["questions"]}
    # a quarter of the businesses, whole: no validation business's question is trained on
    assert 0.15 < sum(tdata.is_validation_business(str(b["business"])) for b in businesses) / len(businesses) < 0.4
    assert {text for text, val in questions if val} <= val_texts
    assert not {text for text, val in questions if not val} & val_texts


def test_preference_smoke_run_starts_from_an_adapter_and_keeps_its_shape(
        trained: Path, tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file

    from train import prefer

    out = tmp_path / "prefer"
    prefer.main(["--smoke", "--model-dir", str(tiny_dirs["gemma3"]), "--adapter", str(trained / "adapter"),
                 "--out", str(out), "--dtype", "float32"])
    greedy = [json.loads(line) for line in (out / "greedy.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(greedy) == 12 and all(isinstance(row["greedy"], str) for row in greedy)
    assert (out / "reference.pt").exists() and (out / "state.pt").exists()
    start = load_file(str(trained / "adapter" / adapters.WEIGHTS_FILE))
    if (out / "adapter").exists():  # a step bettered the start on validation: same tensors, new values
        tuned = load_file(str(out / "adapter" / adapters.WEIGHTS_FILE))
        assert tuned.keys() == start.keys() and all(tuned[k].shape == start[k].shape for k in start)
        assert any(not torch.equal(tuned[k], start[k]) for k in start)
        meta = json.loads((out / "train_meta.json").read_text())
        assert meta["pairs"] > 0 and meta["best"]["step"] >= 1


def test_preference_pairs_skip_a_greedy_reply_equal_to_the_written_one(tiny_dirs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    from train import data as tdata
    from train.prefer import pairs_of

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dirs["gemma3"]))
    ask = tdata.ReplyExample("x-1", "en", "plain", "when do you open?", "I'll ask a colleague to check.")
    same = tdata.ReplyExample("x-2", "en", "plain", "thanks!", "You're welcome!")
    pairs = pairs_of(tokenizer, [ask, same], {"x-1": "We open at 9.", "x-2": "You're welcome!"})
    assert len(pairs) == 1
    chosen, rejected = pairs[0]
    # the same prompt, two replies; the loss covers the reply tokens only
    prompt = chosen.labels.index(next(t for t in chosen.labels if t != -100))
    assert chosen.ids[:prompt] == rejected.ids[:prompt] and chosen.ids != rejected.ids
    assert all(t == -100 for t in rejected.labels[:prompt]) and rejected.labels[prompt:] == rejected.ids[prompt:]
