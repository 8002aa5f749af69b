// The CPU target's activation fusion: activations that follow a Conv become its kiln_activation,
// which the CPU convolution applies to its output while that is still in cache, instead of a layer
// that reads and writes the whole tensor again (MobileNetV2's ReLU6 Clips, EfficientNet's SiLUs).
// The CUDA target keeps Relu alone (cuDNN's epilogue); this pass runs for the CPU target only.
#pragma once

#include "ir/graph.hpp"

namespace kiln::passes {

// Conv (with or without the residual conv_fusion gave it, no kiln_activation yet) whose output's
// only reader is
// - Clip with constant scalar min/max (or none), not NaN: kiln_activation "Clip" with attributes
//   kiln_clip_min / kiln_clip_max (absent: unbounded);
// - Sigmoid, Tanh or HardSwish: that name;
// - or read by exactly a Sigmoid and a Mul of the output by that Sigmoid (the Sigmoid read by the
//   Mul alone): "Silu", x * sigmoid(x).
// Intermediates must not be graph outputs; float32 tensors only. Returns the number of fusions.
int fuse_cpu_conv_activations(ir::Graph& graph);

}  // namespace kiln::passes
