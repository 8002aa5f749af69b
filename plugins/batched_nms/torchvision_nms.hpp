// kiln::TorchvisionNms: torchvision.ops.nms with torchvision's op signature, for kiln.compile's
// mapping of torchvision::nms (inputs dets [N, 4] xyxy, scores [N]; field iou_threshold). Output:
// keep [num_kept] int64 by decreasing score, data-dependent (at most N). BatchedNMS with one class.
#pragma once

#include "common/plugin_support.hpp"

namespace kiln::plugins_lib {

extern const kiln_plugin_creator kTorchvisionNmsCreator;

}  // namespace kiln::plugins_lib
