"""kiln.compile(dynamic_shapes=...): dynamic dims other than the batch (a sequence length shared by
input_ids and attention_mask), the engine profiles derived from torch.export's symbols, and the
errors that name the input and dim. CPU engines, small modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import kiln

ATOL, RTOL = 2e-5, 1e-5
VOCAB, WIDTH, HEADS, MAX_POSITIONS = 50, 16, 2, 64


class TinyEncoder(nn.Module):
    """Embedding + positions + one self-attention layer with an additive padding mask."""

    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Embedding(MAX_POSITIONS, WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.out = nn.Linear(WIDTH, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)

    def forward(self, input_ids, attention_mask):
        batch, length = input_ids.shape
        x = self.tokens(input_ids) + self.positions(torch.arange(length))
        head = WIDTH // HEADS
        q, k, v = self.qkv(x).view(batch, length, 3, HEADS, head).permute(2, 0, 3, 1, 4)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -1e9
        scores = torch.softmax(q @ k.transpose(-1, -2) / head ** 0.5 + bias, dim=-1)
        attended = (scores @ v).transpose(1, 2).reshape(batch, length, WIDTH)
        return self.norm(x + self.out(attended))


def _inputs(batch: int, length: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.int64)
    mask[0, max(1, length // 2):] = 0  # padding in the first sequence
    return ids, mask


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TinyEncoder().eval()


SEQ = kiln.DynamicDim("seq", 2, 8, 32)


@pytest.fixture(scope="module")
def seq_compiled(encoder):
    """Dynamic sequence length only (static batch 2)."""
    return kiln.compile(encoder, _inputs(2, 8), dynamic_shapes=[{1: SEQ}, {1: SEQ}],
                        require_full_compilation=True)


@pytest.mark.parametrize("length", [2, 5, 8, 17, 32])
def test_dynamic_sequence_length_matches_eager(encoder, seq_compiled, length):
    ids, mask = _inputs(2, length, seed=length)
    with torch.no_grad():
        expected = encoder(ids, mask)
    torch.testing.assert_close(seq_compiled(ids, mask), expected, atol=ATOL, rtol=RTOL)


def test_engine_inputs_take_the_shared_sequence_profile(seq_compiled):
    report = seq_compiled.kiln_report
    assert report.fully_compiled and len(report.engines) == 1
    engine = seq_compiled._kiln_engine_0
    # Both engine inputs (ids and mask) carry the one "seq" range on dim 1; the batch is static.
    assert engine.input_min_shapes() == [[2, 2], [2, 2]]
    assert engine.input_max_shapes() == [[2, 32], [2, 32]]
    [seq] = report.dynamic_dims
    assert (seq.name, seq.min, seq.opt, seq.max) == ("seq", 2, 8, 32)
    assert seq.uses == ["input 0 (input_ids) dim 1", "input 1 (attention_mask) dim 1"]
    assert "dynamic dim seq in [2, 32] (opt 8)" in str(report)


def test_sequence_outside_the_range_is_refused(seq_compiled):
    ids, mask = _inputs(2, 33)
    with pytest.raises(Exception, match=r"<= 32"):
        seq_compiled(ids, mask)


@pytest.mark.parametrize("format", ["exported_program", "torchscript"])
def test_saved_module_keeps_the_dynamic_sequence(encoder, seq_compiled, format, tmp_path):
    path = tmp_path / f"encoder.{format}"
    kiln.save(seq_compiled, path, format=format)
    loaded = kiln.load(path)
    for length in (3, 20):
        ids, mask = _inputs(2, length, seed=length)
        with torch.no_grad():
            expected = encoder(ids, mask)
        torch.testing.assert_close(loaded(ids, mask), expected, atol=ATOL, rtol=RTOL)


def test_dynamic_batch_and_sequence_together(encoder):
    """``dynamic_batch`` (the shorthand) combines with a dynamic sequence keyed by input name;
    batch and length vary independently."""
    compiled = kiln.compile(encoder, _inputs(2, 8), dynamic_batch=(1, 2, 4),
                            dynamic_shapes={"input_ids": {1: SEQ}, "attention_mask": {-1: SEQ}})
    for batch, length in [(1, 5), (4, 8), (3, 32), (2, 2)]:
        ids, mask = _inputs(batch, length, seed=batch * 100 + length)
        with torch.no_grad():
            expected = encoder(ids, mask)
        torch.testing.assert_close(compiled(ids, mask), expected, atol=ATOL, rtol=RTOL)
    dims = {d.name: (d.min, d.opt, d.max) for d in compiled.kiln_report.dynamic_dims}
    assert dims == {"batch": (1, 2, 4), "seq": (2, 8, 32)}
    assert compiled.kiln_report.dynamic_batch == (1, 2, 4)


def test_tuple_ranges_on_a_single_input():
    """A (min, opt, max) tuple: a dim of its own (no name needed), here dims 0 and 2 of one
    input; dim 2 feeds a reshape into (batch x length) rows, an expression of two symbols."""

    class Rows(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            rows = x.transpose(1, 2).reshape(-1, 4)
            return torch.relu(self.linear(rows)).sum(-1)

    torch.manual_seed(1)
    model = Rows().eval()
    compiled = kiln.compile(model, torch.randn(2, 4, 6),
                            dynamic_shapes=[{0: (1, 2, 3), 2: (2, 6, 9)}])
    for shape in [(1, 4, 2), (3, 4, 9), (2, 4, 5)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(compiled(x), expected, atol=ATOL, rtol=RTOL)
    names = [d.name for d in compiled.kiln_report.dynamic_dims]
    assert names == ["x_dim0", "x_dim2"]


# ---- errors ----------------------------------------------------------------------------------


def test_range_must_be_ordered(encoder):
    with pytest.raises(kiln.DynamicShapeError,
                       match=r"input 0 \(input_ids\) dim 1: .*min <= opt <= max.*\(2, 40, 32\)"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes=[{1: (2, 40, 32)}, None])
    with pytest.raises(kiln.DynamicShapeError, match=r"DynamicDim 'seq'.*min <= opt <= max"):
        kiln.DynamicDim("seq", 8, 4, 16)


def test_dim_index_out_of_range(encoder):
    with pytest.raises(kiln.DynamicShapeError,
                       match=r"input 1 \(attention_mask\) dim 2: out of range, the input has "
                             r"2 dim\(s\)"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes=[None, {2: (2, 8, 32)}])


def test_example_outside_its_range(encoder):
    with pytest.raises(kiln.DynamicShapeError,
                       match=r"'attention_mask_dim1'.*input 1 \(attention_mask\) dim 1 has size "
                             r"8 in the example inputs, outside \[9, 32\]"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes={1: {1: (9, 12, 32)}})


def test_unknown_input_name_and_wrong_entry_count(encoder):
    with pytest.raises(kiln.DynamicShapeError, match=r"no input named 'mask'"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes={"mask": {1: SEQ}})
    with pytest.raises(kiln.DynamicShapeError, match=r"1 entries for 2 input"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes=[{1: SEQ}])


def test_one_name_with_two_ranges_is_refused(encoder):
    with pytest.raises(kiln.DynamicShapeError, match=r"'seq' has two ranges"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes=[
            {1: SEQ}, {1: kiln.DynamicDim("seq", 2, 8, 16)}])


def test_separate_dims_that_the_code_ties_name_both(encoder):
    """Two anonymous ranges for ids' and mask's length: the attention adds them, so torch.export
    needs them equal; the error says to share one DynamicDim."""
    with pytest.raises(kiln.DynamicShapeError,
                       match=r"'input_ids_dim1' \(2, 8, 32\) \(input 0 \(input_ids\) dim 1\): "
                             r"the traced code needs it equal to 'attention_mask_dim1'"):
        kiln.compile(encoder, _inputs(2, 8), dynamic_shapes=[{1: (2, 8, 32)}, {1: (2, 8, 32)}])


def test_specialised_dim_is_a_clear_error():
    class FixedLength(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], 2, 4) * 2  # only a length of 8 fits

    with pytest.raises(kiln.DynamicShapeError,
                       match=r"'x_dim1' \(2, 8, 32\) \(input 0 \(x\) dim 1\): the traced code "
                             r"fixes it to size 8"):
        kiln.compile(FixedLength(), torch.randn(2, 8), dynamic_shapes=[{1: (2, 8, 32)}])


def test_dynamic_batch_shorthand_errors_still_name_the_input():
    model = nn.Linear(4, 4).eval()
    with pytest.raises(kiln.DynamicShapeError, match=r"input 0 \(input\) dim 0 has size 6.*"
                                                      r"outside \[1, 4\]"):
        kiln.compile(model, torch.randn(6, 4), dynamic_batch=(1, 2, 4))
    with pytest.raises(kiln.DynamicShapeError, match="dynamic_batch and dynamic_shapes both"):
        kiln.compile(model, torch.randn(2, 4), dynamic_batch=(1, 2, 4),
                     dynamic_shapes=[{0: (1, 2, 8)}])
