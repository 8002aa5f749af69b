"""CUDA conformance cases for elementwise predicates (format: tests/gpu/test_cuda_conformance.py)."""

CASES = [
    ("isnan_f32", "IsNaN", [("x", "float32", [3, 17])], {}, 18),
    ("isnan_f16", "IsNaN", [("x", "float16", [1000])], {}, 18),
    ("isinf_both", "IsInf", [("x", "float32", [5, 7])], {}, 18),
    ("isinf_positive_only", "IsInf", [("x", "float32", [5, 7])], {"detect_negative": 0}, 18),
    ("isinf_none", "IsInf", [("x", "float32", [4])], {"detect_negative": 0, "detect_positive": 0}, 18),
    ("not_bool", "Not", [("x", "bool", [2, 3, 9])], {}, 18),
]
