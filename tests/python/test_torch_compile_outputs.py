"""kiln.compile on modules whose outputs are containers (the model zoo's transformers outputs):
dicts, ModelOutput-like pytree nodes, and key/value caches whose rebuilding runs tensor ops.

Small stand-ins for transformers' classes (CI has no transformers): a cache whose unflatten
concatenates onto an empty tensor it creates, as DynamicCache's does, and an encoder-decoder pair
of them.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.utils._pytree as pytree

import kiln
from kiln._output_containers import _register_encoder_decoder_cache, register_output_containers


class ConcatCache:
    """Keys and values per layer, rebuilt (like transformers' DynamicCache) by concatenating the
    given tensors onto empty ones created on the spot."""

    def __init__(self, pairs=()):
        self.keys, self.values = [], []
        for k, v in pairs:
            self.keys.append(torch.cat([torch.tensor([], dtype=k.dtype), k], dim=-2))
            self.values.append(torch.cat([torch.tensor([], dtype=v.dtype), v], dim=-2))


pytree.register_pytree_node(
    ConcatCache,
    lambda c: (list(c.keys) + list(c.values), len(c.keys)),
    lambda leaves, n: ConcatCache(zip(leaves[:n], leaves[n:])),
    serialized_type_name="test_torch_compile_outputs.ConcatCache")


class PairCache:
    """An encoder-decoder cache: two ConcatCaches (EncoderDecoderCache's shape)."""

    def __init__(self, self_attention_cache, cross_attention_cache):
        self.self_attention_cache = self_attention_cache
        self.cross_attention_cache = cross_attention_cache


class CachingDecoder(nn.Module):
    """Two attention-free 'layers' whose keys/values are projections of the hidden state; returns
    a dict with the hidden state and the caches."""

    def __init__(self, dim=8, layers=2, encoder_decoder=False):
        super().__init__()
        self.key = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.value = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.encoder_decoder = encoder_decoder

    def forward(self, x):
        pairs = []
        # The eager cache starts from empty tensors too, as DynamicLayer's lazy initialisation does.
        for key, value in zip(self.key, self.value):
            k = torch.cat([torch.tensor([]), key(x)], dim=-2)
            v = torch.cat([torch.tensor([]), value(x)], dim=-2)
            pairs.append((k, v))
            x = torch.tanh(x + k * v)
        cache = ConcatCache(pairs)
        if self.encoder_decoder:
            cache = PairCache(cache, ConcatCache([(2 * k, 3 * v) for k, v in pairs]))
        return {"last_hidden_state": x, "cache": cache}


def _cache_leaves(cache):
    if isinstance(cache, PairCache):
        return _cache_leaves(cache.self_attention_cache) + _cache_leaves(
            cache.cross_attention_cache)
    return list(cache.keys) + list(cache.values)


@pytest.fixture(scope="module", autouse=True)
def pair_cache_registered():
    _register_encoder_decoder_cache(PairCache)
    yield
    pytree._deregister_pytree_node(PairCache)


@pytest.mark.parametrize("encoder_decoder", [False, True])
def test_cache_output_compiles_into_one_engine(encoder_decoder):
    """The retrace of run_decompositions would rebuild the cache and add the empty tensors its
    unflatten creates as constants the verifier rejects; kiln decomposes with a flat output
    structure and puts the model's back."""
    torch.manual_seed(0)
    model = CachingDecoder(encoder_decoder=encoder_decoder).eval()
    x = torch.randn(2, 5, 8)
    compiled = kiln.compile(model, x)
    report = compiled.kiln_report
    assert report.fully_compiled and len(report.engines) == 1, report
    layers = 2 * (2 if encoder_decoder else 1)
    assert len(report.engines[0].outputs) == 1 + 2 * layers
    with torch.no_grad():
        want = model(x)
        got = compiled(x)
    assert set(got) == {"last_hidden_state", "cache"}
    assert type(got["cache"]) is type(want["cache"])
    torch.testing.assert_close(got["last_hidden_state"], want["last_hidden_state"],
                               atol=2e-5, rtol=1e-5)
    got_leaves, want_leaves = _cache_leaves(got["cache"]), _cache_leaves(want["cache"])
    assert len(got_leaves) == len(want_leaves) == 2 * layers
    for g, w in zip(got_leaves, want_leaves):
        torch.testing.assert_close(g, w, atol=2e-5, rtol=1e-5)


def test_registration_needs_transformers_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, "transformers.cache_utils", raising=False)
    assert register_output_containers() == []


def test_encoder_decoder_cache_registered_after_dynamic_cache(monkeypatch):
    """With a transformers whose DynamicCache is a pytree node already, EncoderDecoderCache is
    registered (once) over its two halves."""
    fake = types.ModuleType("transformers.cache_utils")

    class EncoderDecoderCache(PairCache):
        pass

    fake.DynamicCache = ConcatCache  # registered above
    fake.EncoderDecoderCache = EncoderDecoderCache
    monkeypatch.setitem(sys.modules, "transformers.cache_utils", fake)
    try:
        assert register_output_containers() == ["EncoderDecoderCache"]
        assert register_output_containers() == []
        cache = EncoderDecoderCache(ConcatCache([(torch.ones(1, 2, 3), torch.zeros(1, 2, 3))]),
                                    ConcatCache([(torch.ones(1, 1, 3), torch.ones(1, 1, 3))]))
        leaves, spec = pytree.tree_flatten(cache)
        assert [tuple(t.shape) for t in leaves] == [(1, 2, 3)] * 2 + [(1, 1, 3)] * 2
        rebuilt = pytree.tree_unflatten(leaves, spec)
        assert type(rebuilt) is EncoderDecoderCache
        assert torch.equal(rebuilt.cross_attention_cache.keys[0], torch.ones(1, 1, 3))
    finally:
        pytree._deregister_pytree_node(EncoderDecoderCache)


class VarPositional(nn.Module):
    """forward(self, x, *rest): a wrapper calling a model with keyword inputs has this
    shape (the zoo's KeywordCall); torch.export wants the dynamic shapes of *inputs as one
    tuple."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x, *rest):
        y = self.linear(x)
        for r in rest:
            y = y + self.linear(r)
        return {"y": y, "parts": [self.linear(r) for r in rest]}


def test_dynamic_batch_with_var_positional_forward():
    torch.manual_seed(0)
    model = VarPositional().eval()
    inputs = tuple(torch.randn(2, 4) for _ in range(3))
    compiled = kiln.compile(model, inputs, dynamic_batch=(1, 2, 5))
    assert compiled.kiln_report.fully_compiled, compiled.kiln_report
    for batch in (2, 5):
        grown = tuple(torch.randn(batch, 4) for _ in range(3))
        with torch.no_grad():
            got, want = compiled(*grown), model(*grown)
        torch.testing.assert_close(got["y"], want["y"], atol=2e-5, rtol=1e-5)
        assert len(got["parts"]) == 2
        for g, w in zip(got["parts"], want["parts"]):
            torch.testing.assert_close(g, w, atol=2e-5, rtol=1e-5)


def test_an_engine_output_sized_by_the_data_comes_back_in_its_actual_shape():
    # torch.where's indices are a NonZero in the engine; the engine's output of them has no size
    # bound before the run, so the CPU engine allocates it and execute_engine returns it at the size
    # the run produced (it once failed: "Trying to create tensor with negative dimension -1").
    class Filter(nn.Module):
        def forward(self, boxes, scores):
            keep = torch.where(scores > 0.5)[0]
            return boxes[keep] * 2

    gen = torch.Generator().manual_seed(0)
    boxes, scores = torch.rand(60, 4, generator=gen), torch.rand(60, generator=gen)
    compiled = kiln.compile(Filter(), (boxes, scores))
    assert compiled.kiln_report.engines, compiled.kiln_report
    sizes = set()
    for threshold_share in (0.0, 0.3, 0.9):
        scores = torch.rand(60, generator=gen) * (1 - threshold_share) + threshold_share
        got = compiled(boxes, scores)
        assert torch.equal(got, Filter()(boxes, scores))
        sizes.add(got.shape[0])
    assert len(sizes) > 1, sizes
