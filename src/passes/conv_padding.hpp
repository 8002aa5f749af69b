// cuDNN convolutions pad each spatial axis symmetrically. A Conv whose padding is asymmetric
// (explicit pads, or auto_pad SAME_* with an even window) gets an explicit zero Pad node for the
// difference, and keeps the symmetric part in its own pads.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Requires inferred shapes; a Conv whose input spatial dims are dynamic and whose auto_pad needs
// them is left alone (the backend then reports it). Returns the number of Pad nodes inserted.
int make_conv_padding_symmetric(ir::Graph& graph);

}  // namespace kiln::passes
