"""The one model: loading (GGUF, checkpoint, adapter merge), quantization, the serving snapshot,
mood and crisis heads, generation, and the engine facade the rest of the bot uses.

    loader.py    find, convert, merge and load the weights (never downloads)
    adapters.py  the shipped LoRA adapter, merged into the weights once
    quant.py     weight-only int8/int4 layers and the typed plan a snapshot replays
    snapshot.py  the quantized model saved once and memory-mapped back
    cache.py     the one atomic save every cached file and folder goes through
    heads.py     the linear mood and crisis heads over the model's hidden states
    mood.py      prompt scoring: cached prefix, hidden states, label-token probabilities
    generate.py  the decode call with deadline and stop strings
    engine.py    ModelEngine (the public facade) and AsyncEngine (one worker thread, timeouts)
"""
