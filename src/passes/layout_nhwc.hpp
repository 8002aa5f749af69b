// Keeps fp16/bf16 activations NHWC between convolutions on the CUDA backend, so that cuDNN's
// tensor-core convolutions need no NCHW <-> NHWC transposes of their own around every call; and
// float32 ones on the CPU backend, whose oneDNN convolutions would otherwise reorder around each.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Finds connected regions of 4-D tensors around fp16/bf16 2-D Convs (constant weights) that flow
// through layout-agnostic ops: unary elementwise ops, Clip, narrowing Casts, binary/variadic
// elementwise ops (other operands being region tensors, scalars or constants, which are re-laid
// out), the pooling ops (ReduceMean/ReduceMax over H and W with keepdims, as torch exports adaptive
// pooling, become GlobalAveragePool/GlobalMaxPool), Pad with constant pads and channel Concat. A
// region holding at least two Convs is converted, and so is one holding a single Conv whose
// entering tensors all come from Transposes to NCHW and whose tensors are read outside it only by
// Transposes to NHWC (the inserted transposes then cancel the model's own): Convs and pools get kiln_layout = "NHWC", Conv
// weights are permuted to [M, kH, kW, C/group] once, constants broadcasting against NCHW become
// NHWC, Concat's axis moves to 3, and Transposes are inserted where tensors enter the region (perm
// [0, 2, 3, 1], value
// "<name>.nhwc") and where region tensors are read outside it or are graph outputs (perm [0, 3, 1,
// 2], writing the original value, whose name and NCHW shape stay). Requires inferred shapes;
// re-infers them. Other regions holding a depthwise Conv (group > 1, one input channel per group)
// stay NCHW unless `include_depthwise`. With `include_float32`, float32 Convs start regions too
// (the CPU target: oneDNN's convolutions run NHWC natively). Returns the number of Convs converted.
int convert_conv_regions_to_nhwc(ir::Graph& graph, bool include_depthwise = false,
                                 bool include_float32 = false);

// Whether `node` is a depthwise Conv as the pass above sees one: group > 1 and one input channel
// per group (W's dim 1 is 1; its last dim once the conv is NHWC, kiln_layout = "NHWC").
bool is_depthwise_conv(const ir::Graph& graph, const ir::Node& node);

}  // namespace kiln::passes
