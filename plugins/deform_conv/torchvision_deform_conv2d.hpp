// kiln::TorchvisionDeformConv2d: torchvision.ops.deform_conv2d with torchvision's op signature, for
// kiln.compile's mapping of torchvision::deform_conv2d: inputs input, weight, offset, mask, bias
// (in that order; torchvision passes placeholders for an absent mask or bias); int fields
// stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w (defaults 1, 1, 0, 0, 1, 1), groups,
// offset_groups (default 1), use_mask (0: mask is ignored). Runs kiln::DeformConv's kernels.
#pragma once

#include "deform_conv/deform_conv.hpp"

namespace kiln::plugins_lib {

extern const kiln_plugin_creator kTorchvisionDeformConv2dCreator;

}  // namespace kiln::plugins_lib
