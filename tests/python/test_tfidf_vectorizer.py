"""TfIdfVectorizer on the CPU against ONNX Runtime and ONNX's reference evaluator, over random token
rows and pools: 1-D and 2-D inputs, int32 and int64 tokens, gram lengths 1-3, skips 0-3, the three
modes, weights, and output coordinates in any order (the official backend cases cover seven fixed
pools). Models the two references disagree on are refused by name (tests/unit has those cases)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import run_ort


def _model(x_shape, x_type, **attrs):
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], name="tfidf", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x_type, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def _random_pool(rng, max_gram, vocabulary):
    """Distinct n-grams of each length 1..max_gram, laid out as pool_int64s / ngram_counts."""
    pool, counts = [], []
    for n in range(1, max_gram + 1):
        counts.append(len(pool))
        grams = {tuple(int(t) for t in rng.integers(0, vocabulary, n)) for _ in range(int(rng.integers(1, 6)))}
        for gram in sorted(grams):
            pool.extend(gram)
    return pool, counts, _count_ngrams(pool, counts)


def _count_ngrams(pool, counts):
    grams = []
    for k, start in enumerate(counts):
        end = counts[k + 1] if k + 1 < len(counts) else len(pool)
        grams += [pool[i:i + k + 1] for i in range(start, end, k + 1)]
    return len(grams)


@pytest.mark.parametrize("seed", range(48))
def test_tfidf_vectorizer_matches_onnx_runtime_and_the_reference(seed):
    rng = np.random.default_rng(seed)
    max_gram = int(rng.integers(1, 4))
    min_gram = int(rng.integers(1, max_gram + 1))
    vocabulary = int(rng.integers(2, 6))  # few tokens, so that n-grams repeat
    pool, counts, ngrams = _random_pool(rng, max_gram, vocabulary)
    mode = ["TF", "IDF", "TFIDF"][seed % 3]
    # Coordinates: a permutation (with spare columns) or the identity; weights only with the
    # identity, where ONNX's specification and its implementations agree.
    if seed % 2:
        indexes = [int(i) for i in rng.permutation(ngrams + 2)[:ngrams]]
        attrs = {}
    else:
        indexes = list(range(ngrams))
        attrs = {"weights": [float(w) for w in rng.uniform(0.5, 3.0, ngrams).round(2)]}
    attrs.update(mode=mode, min_gram_length=min_gram, max_gram_length=max_gram,
                 max_skip_count=int(rng.integers(0, 4)), pool_int64s=pool, ngram_counts=counts,
                 ngram_indexes=indexes)
    shape = [int(rng.integers(1, 12))] if seed % 4 < 2 else [int(rng.integers(1, 4)), int(rng.integers(1, 12))]
    dtype, onnx_type = (np.int32, TensorProto.INT32) if seed % 3 else (np.int64, TensorProto.INT64)
    x = rng.integers(0, vocabulary, shape).astype(dtype)
    model = _model(shape, onnx_type, **attrs)

    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y"]
    want_ort = run_ort(model, {"x": x})["y"]
    assert got.dtype == np.float32 and got.shape == want_ort.shape
    # ONNX Runtime's TFIDF products can be 1 unit in the last place off the rounded count * weight
    # (6 * 0.88: 5.2800002 where the rounded product, kiln's and the reference's, is 5.2799997).
    np.testing.assert_allclose(got, want_ort, rtol=3e-7, atol=0)
    # The reference evaluator (onnx 1.x) fails on IDF and TFIDF without weights (len(None)).
    if mode == "TF" or "weights" in attrs:
        want_reference = ReferenceEvaluator(model).run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, want_reference)


def test_string_pools_and_disagreeing_weights_are_refused_by_name():
    base = dict(mode="TF", min_gram_length=1, max_gram_length=1, max_skip_count=0, ngram_counts=[0],
                ngram_indexes=[0, 1])
    with pytest.raises(kiln.KilnError, match=r"tfidf.*pool_strings.*string tensors"):
        kiln.build_onnx(_model([3], TensorProto.INT64, pool_strings=["a", "b"], **base), target="cpu")
    permuted = dict(base, mode="TFIDF", ngram_indexes=[1, 0], pool_int64s=[4, 5], weights=[1.0, 2.0])
    with pytest.raises(kiln.KilnError, match=r"tfidf.*weights\[0\] = 1 scales n-gram 0"):
        kiln.build_onnx(_model([3], TensorProto.INT64, **permuted), target="cpu")
