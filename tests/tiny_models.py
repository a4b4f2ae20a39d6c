"""Tiny randomly initialised Qwen2 and Gemma3 checkpoints built inside the tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from bot import prompts

QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer() -> PreTrainedTokenizerFast:
    corpus = [prompts.CLASSIFY_PREFIX, " positive negative neutral ", "User: Assistant: 用户: 助手:"] * 20
    corpus += [text for pairs in prompts.EXAMPLES.values() for pair in pairs for text in pair]
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<eos>", "<bos>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")


def int8_gemma(seed: int = 0, **sizes: int) -> Gemma3ForCausalLM:
    """A tiny random Gemma 3 quantized to int8, as the fast path serves one; by default six layers
    (five sliding-window ones and a full one) with a window of 8, so that prompts pass it."""
    from bot.model.quant import quantize

    torch.manual_seed(seed)
    shape = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
                 head_dim=32, sliding_window=8, max_position_embeddings=256) | sizes
    config = Gemma3TextConfig(num_key_value_heads=1, eos_token_id=1, pad_token_id=0, bos_token_id=2, **shape)
    model = Gemma3ForCausalLM(config).eval()
    quantize(model, "int8")
    return model


def build_tiny(family: str, directory: Path) -> Path:
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    vocab = len(tokenizer)
    if family == "qwen2":
        tokenizer.chat_template = QWEN_TEMPLATE
        config = Qwen2Config(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        model = Qwen2ForCausalLM(config)
    elif family == "gemma3":
        config = Gemma3TextConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=32,
            max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        )
        model = Gemma3ForCausalLM(config)
    else:
        raise ValueError(family)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
