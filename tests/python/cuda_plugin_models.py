"""Small models with libkiln_plugins.so layers (domain "kiln") beside core ops, shared by the CUDA
plugin-layer tests: tests/python/test_cuda_plugin_layers.py cross-compiles them for the cuda target
and runs them on the CPU (CI); tests/gpu/test_cuda_plugins.py runs them on the GPU against the CPU.

MODELS maps a name to (model builder, feeds(seed) -> inputs, has a data-dependent layer)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DOMAIN = "kiln"
NMS_BOXES = 48
NMS_MAX_PER_CLASS = 40


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "cuda_plugins", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(DOMAIN, 1)])


def nms_feeds(seed: int, count: int = NMS_BOXES, spread: float = 10.0) -> dict:
    """ONNX NMS inputs: boxes [1, count, 4] as [y1, x1, y2, x2], scores [1, 2, count], distinct.
    A smaller `spread` packs the boxes closer, so more are suppressed (the kept count varies)."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, spread, (1, count, 2))
    wh = rng.uniform(0.5, 4, (1, count, 2))
    boxes = np.concatenate([xy[..., ::-1], (xy + wh)[..., ::-1]], axis=2).astype(np.float32)
    scores = np.stack([np.stack([rng.permutation(count) / max(count, 1) for _ in range(2)])]).astype(np.float32)
    return {"boxes": boxes, "scores": scores}


def nms_model(with_consumer: bool = True) -> onnx.ModelProto:
    """selected = kiln::NonMaxSuppression(boxes, scores; max 40 per class, IoU 0.5, score > 0.2):
    [K, 3] int64, K known only once it ran (data-dependent, bound 2 * 40). With `with_consumer`,
    also doubled = Cast(selected, float) * 2: a core layer after the data-dependent one, planned
    from the real K (a second runtime segment)."""
    constants = [numpy_helper.from_array(np.array([NMS_MAX_PER_CLASS], np.int64), "max_output"),
                 numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
                 numpy_helper.from_array(np.array([0.2], np.float32), "score_threshold")]
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_output", "iou", "score_threshold"],
                              ["selected"], domain=DOMAIN, name="nms")]
    outputs = ["selected"]
    if with_consumer:
        constants.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
        nodes += [helper.make_node("Cast", ["selected"], ["selected_f"], to=TensorProto.FLOAT, name="cast"),
                  helper.make_node("Mul", ["selected_f", "two"], ["doubled"], name="double")]
        outputs.append("doubled")
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, NMS_BOXES, 4]),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, NMS_BOXES])]
    return _model(nodes, inputs, outputs, constants)


def roi_align_model() -> onnx.ModelProto:
    """Y = Relu(kiln::RoiAlign(X [1, 4, 16, 16], rois [5, 4], batch_indices [5])), [5, 4, 3, 3]."""
    nodes = [helper.make_node("RoiAlign", ["X", "rois", "batch_indices"], ["pooled"], domain=DOMAIN, name="roi",
                              output_height=3, output_width=3, sampling_ratio=2, spatial_scale=0.5),
             helper.make_node("Relu", ["pooled"], ["Y"], name="relu")]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 16, 16]),
              helper.make_tensor_value_info("rois", TensorProto.FLOAT, [5, 4]),
              helper.make_tensor_value_info("batch_indices", TensorProto.INT64, [5])]
    return _model(nodes, inputs, ["Y"])


def roi_align_feeds(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-2, 30, (5, 2))
    wh = rng.uniform(0.5, 12, (5, 2))
    return {"X": rng.standard_normal((1, 4, 16, 16)).astype(np.float32),
            "rois": np.concatenate([xy, xy + wh], axis=1).astype(np.float32),
            "batch_indices": np.zeros(5, np.int64)}


def deform_conv_model() -> onnx.ModelProto:
    """Y = Relu(kiln::DeformConv(X [1, 4, 8, 8], W [6, 4, 3, 3] constant, offset [1, 18, 8, 8]; pads 1))."""
    w = np.random.default_rng(7).standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3
    nodes = [helper.make_node("DeformConv", ["X", "W", "offset"], ["conv"], domain=DOMAIN, name="deform",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["Y"], name="relu")]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 8, 8]),
              helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1, 18, 8, 8])]
    return _model(nodes, inputs, ["Y"], [numpy_helper.from_array(w, "W")])


def deform_conv_feeds(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"X": rng.standard_normal((1, 4, 8, 8)).astype(np.float32),
            "offset": rng.uniform(-2, 2, (1, 18, 8, 8)).astype(np.float32)}


PADDED_BOXES = 40
PADDED_KEEP = 12


def batched_nms_padded_model() -> onnx.ModelProto:
    """keep [12] int64 (padded with -1), count [] int64 = kiln::BatchedNMSPadded(boxes [40, 4],
    scores [40], idxs [40]); keep_f = Cast(keep, float) + 1: fixed shapes only, so the engine stays
    one segment and CUDA-graph captured."""
    constants = [numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    nodes = [helper.make_node("BatchedNMSPadded", ["boxes", "scores", "idxs"], ["keep", "count"], domain=DOMAIN,
                              name="nms", iou_threshold=0.4, max_output=PADDED_KEEP),
             helper.make_node("Cast", ["keep"], ["keep_cast"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Add", ["keep_cast", "one"], ["keep_f"], name="add")]
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [PADDED_BOXES, 4]),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, [PADDED_BOXES]),
              helper.make_tensor_value_info("idxs", TensorProto.INT64, [PADDED_BOXES])]
    return _model(nodes, inputs, ["keep", "count", "keep_f"], constants)


def batched_nms_padded_feeds(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 20, (PADDED_BOXES, 2))
    wh = rng.uniform(1, 8, (PADDED_BOXES, 2))
    return {"boxes": np.concatenate([xy, xy + wh], axis=1).astype(np.float32),
            "scores": (rng.permutation(PADDED_BOXES) / PADDED_BOXES).astype(np.float32),
            "idxs": rng.integers(0, 3, PADDED_BOXES).astype(np.int64)}


# name -> (model builder, feeds(seed), whose layers include a data-dependent plugin layer)
MODELS = {
    "nms": (nms_model, nms_feeds, True),
    "roi_align": (roi_align_model, roi_align_feeds, False),
    "deform_conv": (deform_conv_model, deform_conv_feeds, False),
    "batched_nms_padded": (batched_nms_padded_model, batched_nms_padded_feeds, False),
}
