"""Helpers for the tests of libkiln_plugins.so (plugins/, tests/python/test_kiln_plugins_*.py):
one-node ONNX models in the plugins' domain, built by kiln with the library loaded, and the same
node in the default domain run by ONNX Runtime as the reference; NumPy references and input makers
that several of those test modules use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import kiln

DOMAIN = "kiln"
_LOADED: set[str] = set()


def plugin_library(build_dir: Path) -> str:
    path = build_dir / "lib" / "libkiln_plugins.so"
    assert path.is_file(), f"{path} not built (target kiln_plugins)"
    return str(path)


def load(build_dir: Path) -> str:
    path = plugin_library(build_dir)
    if path not in _LOADED:
        assert kiln.load_plugin_library(path) == path
        _LOADED.add(path)
    return path


def one_node_model(op: str, inputs: dict, outputs: list[str], attrs: dict, *, domain: str = DOMAIN,
                   constants: dict | None = None, opset: int = 19) -> onnx.ModelProto:
    """A model of one node `op`. `inputs` maps a graph input's name to an array (its dtype and shape
    make the input's type; None: an absent optional input, ""); `constants` become initializers."""
    constants = constants or {}
    names, graph_inputs = [], []
    for name, value in inputs.items():
        if value is None:
            names.append("")
            continue
        names.append(name)
        if name not in constants:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    node = helper.make_node(op, names, outputs, domain=domain, name="node", **attrs)
    graph = helper.make_graph([node], op, graph_inputs,
                              [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs],
                              initializer=[numpy_helper.from_array(v, name) for name, v in constants.items()])
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports)


def run_kiln(build_dir: Path, op: str, inputs: dict, outputs: list[str], attrs: dict, *,
             constants: dict | None = None) -> dict:
    """Builds the one-node model with the plugin library loaded and runs it on the CPU."""
    load(build_dir)
    model = one_node_model(op, inputs, outputs, attrs, constants=constants)
    engine = kiln.Engine(kiln.build_onnx(model))
    constants = constants or {}
    feeds = {k: v for k, v in inputs.items() if v is not None and k not in constants}
    return engine.run(feeds)


def run_ort(op: str, inputs: dict, outputs: list[str], attrs: dict, *, opset: int = 19) -> list:
    """The same node in the default domain, run by ONNX Runtime."""
    import onnxruntime as ort

    model = one_node_model(op, inputs, outputs, attrs, domain="", opset=opset)
    for out in model.graph.output:  # ORT wants typed outputs only when it cannot infer them
        out.ClearField("type")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: v for k, v in inputs.items() if v is not None}
    return session.run(outputs, feeds)


def reference_batched_nms(boxes, scores, idxs, iou_threshold, top_k=-1):
    """torchvision semantics: per class, greedy in order of decreasing score, a box is dropped when its
    IoU with a kept box of its class is above the threshold; the kept indices sorted by decreasing
    score. Documented choices where torchvision leaves it open: equal scores in increasing index,
    NaN scores never kept."""
    boxes = boxes.astype(np.float64)
    order = [i for i in np.argsort(-scores.astype(np.float64), kind="stable") if not np.isnan(scores[i])]
    kept = []
    for i in order:
        if 0 <= top_k <= len(kept):
            break
        suppressed = False
        for j in kept:
            if idxs[j] != idxs[i]:
                continue
            ix1, iy1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            ix2, iy2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(ix2 - ix1, 0) * max(iy2 - iy1, 0)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            union = area(boxes[i]) + area(boxes[j]) - inter
            if inter > 0 and union > 0 and inter / union > iou_threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return np.array(kept, np.int64)


def batched_nms_inputs(rng, n, classes, dtype=np.float32, idx_dtype=np.int64):
    """BatchedNMS inputs: n xyxy boxes, distinct scores, class ids in [0, classes)."""
    xy = rng.uniform(0, 20, (n, 2))
    wh = rng.uniform(1, 8, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(dtype)
    scores = (rng.permutation(n) / max(n, 1)).astype(dtype)
    return {"boxes": boxes, "scores": scores, "idxs": rng.integers(0, classes, n).astype(idx_dtype)}


def declare_torchvision_nms(cpu_impl):
    """Declares torchvision::nms (its schema, a fake with a data-dependent size, `cpu_impl` as its
    CPU kernel) for child scripts where torchvision does not import beside the CPU torch. Returns the
    library, which must stay alive while the op is used."""
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", cpu_impl, "CPU")

    @torch.library.register_fake("torchvision::nms", lib=lib)
    def _fake(dets, scores, iou_threshold):
        return dets.new_empty((torch.library.get_ctx().new_dynamic_size(),), dtype=torch.int64)

    return lib


def make_boxes(rng, batches, count, center_point_box):
    """ONNX NonMaxSuppression boxes [batches, count, 4] in the layout center_point_box names."""
    xy = rng.uniform(0, 10, (batches, count, 2))
    wh = rng.uniform(0.5, 4, (batches, count, 2))
    if center_point_box:
        return np.concatenate([xy + wh / 2, wh], axis=2).astype(np.float32)
    # [y1, x1, y2, x2], with some boxes given with their corners swapped (ONNX allows either order)
    boxes = np.concatenate([xy[..., ::-1], (xy + wh)[..., ::-1]], axis=2)
    swap = rng.random((batches, count)) < 0.2
    boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
    return boxes.astype(np.float32)


def make_scores(rng, batches, classes, count):
    """ONNX NonMaxSuppression scores [batches, classes, count]."""
    # Distinct scores (exact in float16 too), so the order does not depend on tie-breaking.
    return np.stack([np.stack([rng.permutation(count) / max(count, 1) for _ in range(classes)])
                     for _ in range(batches)]).astype(np.float32)
