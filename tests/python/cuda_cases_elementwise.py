"""CUDA conformance cases for elementwise predicates (format: tests/gpu/test_cuda_conformance.py)."""

CASES = [
    ("isnan_f32", "IsNaN", [("x", "float32", [3, 17])], {}, 18),
    ("isnan_f16", "IsNaN", [("x", "float16", [1000])], {}, 18),
    ("isinf_both", "IsInf", [("x", "float32", [5, 7])], {}, 18),
    ("isinf_positive_only", "IsInf", [("x", "float32", [5, 7])], {"detect_negative": 0}, 18),
    ("isinf_none", "IsInf", [("x", "float32", [4])], {"detect_negative": 0, "detect_positive": 0}, 18),
    ("not_bool", "Not", [("x", "bool", [2, 3, 9])], {}, 18),
] + [
    (f"unary_{op.lower()}", op, [("x", "float32", [3, 41])], {}, 18)
    for op in ("Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Softsign", "Mish",
               "Celu", "ThresholdedRelu", "Softplus")
] + [
    ("celu_alpha", "Celu", [("x", "float32", [64])], {"alpha": 0.5}, 18),
    ("thresholded_relu_alpha", "ThresholdedRelu", [("x", "float32", [64])], {"alpha": 0.3}, 18),
    ("mish_f16", "Mish", [("x", "float16", [2, 300])], {}, 18),
    ("mean_two_broadcast", "Mean", [("a", "float32", [3, 1, 5]), ("b", "float32", [4, 1])], {}, 18),
    ("prelu_channel_slope", "PRelu", [("x", "float32", [2, 3, 4, 5]), ("slope", "float32", [3, 1, 1])], {}, 18),
    ("prelu_f16", "PRelu", [("x", "float16", [7, 9]), ("slope", "float16", [9])], {}, 18),
]
