// Moves a convolution's bias and residual into generated kernels (CUDA).
//
// cuDNN's convolution API adds a bias and a residual inside the convolution only in its fused
// conv + bias + activation call, which kiln uses when a ReLU follows (conv_fusion). Any other
// convolution with a bias runs cudnnConvolutionForward and then cudnnAddTensor, one more pass
// over the output in a generic cuDNN kernel; one with a fused residual first copies the residual
// into the output and has the convolution blend into it (conv_kernels.cpp). Pointwise work after
// a convolution becomes part of a generated kernel anyway (fusion grouping), where an add costs
// no memory traffic. So
//   Y = Conv(X, W, B [, R]) -> readers
// becomes
//   Y' = Conv(X, W) -> Add(Y', B') [-> Add(., R)] = Y -> readers
// with B' the bias as a constant broadcasting over the channel axis: [C, 1, ..., 1] for an NCHW
// conv, [C] for an NHWC one (kiln_layout = "NHWC", channels last), in the bias's dtype.
//
// A Conv is rewritten when it has no fused activation (kiln_activation), is not depthwise (kiln's
// depthwise kernel adds bias and residual itself), its bias, if any, is a constant [C], and either
// it has a fused residual (input 3; the Adds replace the copy and the blend, whatever reads Y), or
// it has a bias and every reader of Y (one at least; Y not a graph output) is an op that fusion
// grouping takes (codegen::is_groupable_op). When the readers end up in different groups, one of
// them computes the Add and writes Y for the others: no more traffic than cudnnAddTensor's. Y
// keeps its value id, name and shape.
#pragma once

#include <cstddef>

#include "ir/graph.hpp"

namespace kiln::passes {

// Needs: shapes inferred, layouts chosen (after layout_nhwc). Returns the number of Convs rewritten.
size_t move_conv_bias_into_pointwise_readers(ir::Graph& graph);

}  // namespace kiln::passes
