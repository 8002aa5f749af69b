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

# ---- special values: NaN, infinities, signed zeros and denormals --------------------------------
# The formulas come from one table (src/ops/scalar_math.h), with PyTorch's NaN rules; here CUDA must
# match the CPU on them (NaN where the CPU has NaN, the same infinities, denormal results not
# flushed), and tests/python/test_elementwise_special_values.py checks the CPU engine against
# PyTorch on the same cases. Binary ops see every pair of values ([n, 1] against [1, n]).
NAN, INF = float("nan"), float("inf")
SPECIAL_F32 = [NAN, INF, -INF, -0.0, 0.0, 1e-40, -1e-40, 1e-45, -100.0, -3.7, -2.5, -1.0, -0.5, -1e-3,
               0.25, 0.5, 0.9, 1.5, 2.5, 7.0, 100.0]
# float16 tensors: 6e-8 and -1e-6 are float16 denormals.
SPECIAL_F16 = [NAN, INF, -INF, -0.0, 0.0, 6e-8, -1e-6, 1e-5, -100.0, -3.7, -2.5, -1.0, -0.5, 0.25, 0.5,
               1.5, 2.5, 7.0, 100.0]
# float32 without float32 denormals: these cases also run in fp16 engines (test_cuda_conformance.py
# keeps inputs an fp16 engine would change out of those).
SPECIAL_F32_NO_DENORMALS = [v for v in SPECIAL_F32 if not 0 < abs(v) < 1e-30]
SPECIAL_DTYPES = {"f32": ("float32", SPECIAL_F32), "f16": ("float16", SPECIAL_F16),
                  "f32_no_denormals": ("float32", SPECIAL_F32_NO_DENORMALS)}
FP16_ENGINE_TAGS = ("f32", "f16", "f32_no_denormals")  # for ops the fp16 engine suite checks

# (op, attrs, opset, dtypes)
SPECIAL_UNARY = [
    (op, {}, 18, FP16_ENGINE_TAGS) for op in ("Relu", "Sigmoid", "Tanh", "Erf", "HardSwish")
] + [
    (op, {}, 18, ("f32", "f16"))
    for op in ("Sqrt", "Reciprocal", "Neg", "Exp", "Log", "Abs", "Sign", "Round", "Softplus", "Mish")
] + [
    (op, {}, 20, ("f32", "f16")) for op in ("IsNaN", "IsInf")  # float16 since opset 20
] + [
    (op, {}, 18, ("f32",))
    for op in ("Floor", "Ceil", "Softsign", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
               "Acosh", "Atanh", "Identity", "Selu", "ThresholdedRelu", "Celu")
] + [
    ("LeakyRelu", {}, 18, FP16_ENGINE_TAGS),
    ("LeakyRelu", {"alpha": 0.2}, 18, ("f32",)),
    ("Elu", {}, 18, ("f32", "f16")),
    ("Elu", {"alpha": 0.5}, 18, ("f32",)),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}, 18, ("f32",)),
    ("Celu", {"alpha": 0.5}, 18, ("f32",)),
    ("ThresholdedRelu", {"alpha": 0.3}, 18, ("f32",)),
    ("HardSigmoid", {}, 18, FP16_ENGINE_TAGS),
    ("HardSigmoid", {"alpha": 0.5, "beta": 0.25}, 18, ("f32",)),
    ("Gelu", {}, 20, FP16_ENGINE_TAGS),
    ("Gelu", {"approximate": "tanh"}, 20, FP16_ENGINE_TAGS),
    ("IsInf", {"detect_negative": 0}, 20, ("f32",)),
    ("IsInf", {"detect_positive": 0}, 20, ("f32",)),
]
SPECIAL_BINARY = [
    (op, {}, 18, FP16_ENGINE_TAGS) for op in ("Add", "Sub", "Mul")
] + [
    (op, {}, 18, ("f32", "f16")) for op in ("Div", "Pow", "Min", "Max", "Equal", "Less", "GreaterOrEqual")
] + [
    (op, {}, 18, ("f32",)) for op in ("Greater", "LessOrEqual", "Sum", "Mean")
] + [
    ("Mod", {"fmod": 1}, 18, ("f32", "f16")),
    ("Mod", {}, 18, ("f32",)),  # fmod=0 on floats: kiln's floor remainder (Python's %)
]


def _case_id(op: str, attrs: dict, tag: str) -> str:
    suffix = "".join(f"_{k}{v}" for k, v in sorted(attrs.items()))
    return f"special_{op.lower()}{suffix}_{tag}"


def _special_cases() -> list:
    cases = []
    for op, attrs, opset, tags in SPECIAL_UNARY:
        for tag in tags:
            dtype, values = SPECIAL_DTYPES[tag]
            cases.append((_case_id(op, attrs, tag), op, [("x", dtype, values, "values")], attrs, opset))
    for op, attrs, opset, tags in SPECIAL_BINARY:
        for tag in tags:
            dtype, values = SPECIAL_DTYPES[tag]
            column, row = [[v] for v in values], [values]
            cases.append((_case_id(op, attrs, tag), op, [("a", dtype, column, "values"), ("b", dtype, row, "values")],
                          attrs, opset))
    for tag in ("f32", "f16", "f32_no_denormals"):
        dtype, values = SPECIAL_DTYPES[tag]
        grid = [[v] * len(values) for v in values]  # x[i, j] = values[i] against slope[j]
        if tag != "f32_no_denormals":  # (PRelu is not among the fp16 engine suite's ops)
            cases.append((f"special_prelu_{tag}", "PRelu",
                          [("x", dtype, grid, "values"), ("slope", dtype, values, "values")], {}, 18))
        condition = [i % 2 == 0 for i in range(len(values))]
        cases.append((f"special_where_{tag}", "Where", [("c", "bool", condition, "values"), ("a", dtype, values, "values"),
                                                        ("b", dtype, values[::-1], "values")], {}, 18))
        for name, low, high in (("min_max", -1.0, 1.0), ("min_only", 0.5, None), ("max_only", None, -0.5),
                                ("min_above_max", 1.0, -1.0), ("nan_min", NAN, 1.0)):
            if tag != "f32" and name not in ("min_max", "nan_min"):
                continue
            bounds = [None if v is None else (("min", "max")[i], dtype, v, "const") for i, v in enumerate((low, high))]
            while bounds and bounds[-1] is None:
                bounds.pop()
            cases.append((f"special_clip_{name}_{tag}", "Clip", [("x", dtype, values, "values")] + bounds, {}, 18))
    return cases


SPECIAL_CASES = _special_cases()
CASES += SPECIAL_CASES
