"""The one model: loading (GGUF, checkpoint, adapter merge), quantization, the serving snapshot,
mood and crisis heads, generation, and the engine facade the rest of the bot uses.

    loader.py    find, convert, merge and load the weights (never downloads)
    adapters.py  the shipped LoRA adapter, merged into the weights once
    quant.py     weight-only int8/int4 layers and the typed plan a snapshot replays
    snapshot.py  the quantized model saved once and memory-mapped back
    light.py     that snapshot served without transformers' modeling code (Gemma 3, int8)
    tokenizer.py the Gemma tokenizer on the `tokenizers` library alone
    vocab.py     the output shortlist of the tokens Chinese and English replies use
    cache.py     the one atomic save every cached file and folder goes through
    heads.py     the mood (five small networks) and crisis (linear) heads over the hidden states
    mood.py      prompt scoring: cached prefix, hidden states, label-token probabilities
    fast.py      the project's own decode loop: static KV cache, shortlist output layer
    generate.py  the decode call with deadline and stop strings
    engine.py    ModelEngine (the public facade) and AsyncEngine (one worker thread, timeouts)
"""
