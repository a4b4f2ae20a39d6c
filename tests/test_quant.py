from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from bot.config import ModelSettings
from bot.model.loader import load_model
from bot.model.quant import DENSE_ABOVE_ROWS, FileRows, Int4Linear, Int8Embedding, Int8Linear, quantize


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantized_linear_layers_stay_close_to_dense(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    dense = nn.Linear(256, 128, bias=True).to(dtype)
    x = torch.randn(1, 3, 256, dtype=dtype)  # one row at a time: the quantized path
    expected = dense(x).float()
    for layer, tolerance in ((Int8Linear(dense, dtype), 0.02), (Int4Linear(dense, dtype, keep_dense=False), 0.15)):
        got = layer(x[:, :1]).float()
        error = (got - expected[:, :1]).norm() / expected[:, :1].norm()
        assert error < tolerance, (type(layer).__name__, float(error))
    many = torch.randn(DENSE_ABOVE_ROWS + 1, 256, dtype=dtype)
    assert torch.equal(Int4Linear(dense, dtype)(many), dense(many))  # many rows: the dense weight


def test_quantize_swaps_layers_and_ties_the_embedding(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    loaded = load_model(ModelSettings(path=str(tiny_dirs["gemma3"]), dtype="float32", quantize="none", cache_dir=str(tmp_path)))
    model = loaded.model
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.inference_mode():
        before = model(ids).logits
    assert "int4" in quantize(model, "int4")[0]
    assert isinstance(model.lm_head, Int8Linear)
    assert isinstance(model.get_decoder().embed_tokens, Int8Embedding)
    assert any(isinstance(m, Int4Linear) for m in model.modules())
    with torch.inference_mode():
        after = model(ids).logits
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    # random weights use the whole int4 grid, so this is a loose bound; real GGUF blocks fit it closely
    assert float((after - before).norm() / before.norm()) < 0.25
    assert out.shape[1] == ids.shape[1] + 3


def test_quantize_none_keeps_dense_weights(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    loaded = load_model(ModelSettings(path=str(tiny_dirs["qwen2"]), dtype="float32", quantize="none", cache_dir=str(tmp_path)))
    assert loaded.quantization == "dense weights"
    assert not any(isinstance(m, (Int4Linear, Int8Linear)) for m in loaded.model.modules())


def test_file_rows_read_a_memory_mapped_matrix_without_touching_the_mapping(tmp_path: Path) -> None:
    torch.manual_seed(0)
    matrix = torch.randint(-127, 128, (300, 48), dtype=torch.int8)
    path = tmp_path / "snap.pt"
    torch.save({"w": matrix, "other": torch.ones(7)}, path)
    mapped = torch.load(path, mmap=True, weights_only=True)["w"]
    reader = FileRows.of(mapped)
    assert reader is not None
    ids = torch.tensor([[0, 299, 5], [5, 17, 123]])
    assert torch.equal(reader(ids), matrix[ids])
    head = Int8Linear(nn.Linear(48, 300, bias=False), torch.float32)
    head.weight_q = mapped
    head.__dict__["file_rows"] = reader
    q, scales = head.rows(ids)
    assert torch.equal(q, matrix[ids]) and torch.equal(scales, head.scales[ids])
    embed = Int8Embedding(head, 2.0)
    assert torch.equal(embed(ids), matrix[ids].float() * head.scales[ids].unsqueeze(-1) * 2.0)
    assert FileRows.of(matrix) is None  # not memory-mapped: indexing is the way
    with pytest.raises(IndexError):
        reader(torch.tensor([300]))  # past the matrix: an error, as indexing gives, not the next bytes of the file
    assert reader(torch.tensor([], dtype=torch.long)).shape == (0, 48)
    twin = copy.deepcopy(head)
    assert twin.__dict__["file_rows"] is reader  # shared, so no copy closes the original's descriptor
    del twin
    assert torch.equal(reader(ids), matrix[ids])
    # a snapshot replaced on disk after it was mapped (as bot/model/cache.py replaces files) must
    # not be read through its path
    torch.save({"w": torch.zeros_like(matrix)}, tmp_path / "new.pt")
    (tmp_path / "new.pt").replace(path)
    assert FileRows.of(mapped) is None
    assert torch.equal(reader(ids), matrix[ids])  # the reader made before still reads the mapped file
