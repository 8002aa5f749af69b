// One registration function per op family; each lives in src/ops/<family>.cpp.
#pragma once

#include "ops/op_registry.hpp"

namespace kiln::ops {

void register_conv_ops(OpRegistry& registry);           // Conv
void register_gemm_ops(OpRegistry& registry);           // Gemm, MatMul
void register_normalization_ops(OpRegistry& registry);  // BatchNormalization, LayerNormalization
void register_pooling_ops(OpRegistry& registry);        // MaxPool, AveragePool, LpPool, Global*Pool
void register_softmax_ops(OpRegistry& registry);        // Softmax
void register_reduce_ops(OpRegistry& registry);         // ReduceMean, ReduceSum, ReduceMax
void register_resize_ops(OpRegistry& registry);         // Resize
void register_elementwise_ops(
    OpRegistry& registry);  // unary, binary, activations, Clip, Where, compare, Cast
void register_shape_ops(OpRegistry& registry);  // Reshape, Flatten, Squeeze, Unsqueeze, Shape,
                                                // Identity, Dropout, Expand, ConstantOfShape, Range
void register_data_movement_ops(
    OpRegistry& registry);                          // Transpose, Concat, Split, Slice, Gather, Pad
void register_attention_ops(OpRegistry& registry);  // FusedAttention (kiln extension)
void register_fused_ops(OpRegistry& registry);      // kiln's fused ops (FusedElementwise)
void register_index_ops(OpRegistry& registry);      // CumSum, CumProd, ArgMax, ArgMin, TopK
void register_bitwise_ops(OpRegistry& registry);    // BitwiseAnd/Or/Xor/Not, BitShift (integers)
void register_grid_sample_ops(OpRegistry& registry);  // GridSample
void register_det_ops(OpRegistry& registry);          // Det
void register_recurrent_ops(OpRegistry& registry);    // RNN, GRU, LSTM
void register_spectral_ops(OpRegistry& registry);     // DFT, STFT, MelWeightMatrix
void register_conv_transpose_ops(OpRegistry& registry);  // ConvTranspose
void register_group_normalization_ops(
    OpRegistry& registry);                            // InstanceNormalization, GroupNormalization
void register_space_depth_ops(OpRegistry& registry);  // DepthToSpace, SpaceToDepth
void register_einsum_ops(OpRegistry& registry);       // Einsum (lowered by the builder; no kernels)
void register_col2im_ops(OpRegistry& registry);        // Col2Im
void register_onnx_attention_ops(OpRegistry& registry);  // Attention (opset 23; lowered for CUDA)
void register_quantize_ops(OpRegistry& registry);  // QuantizeLinear, DequantizeLinear
// MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv, DynamicQuantizeLinear
void register_integer_linear_ops(OpRegistry& registry);
void register_rotary_embedding_ops(OpRegistry& registry);  // RotaryEmbedding (opset 23)
void register_linear_attention_ops(OpRegistry& registry);  // LinearAttention (opset 27)
void register_causal_conv_ops(OpRegistry& registry);       // CausalConvWithState (opset 27)
void register_swiglu_ops(OpRegistry& registry);            // SwiGLU (opset 28)
void register_tensor_scatter_ops(OpRegistry& registry);    // TensorScatter (opset 24)
void register_bitcast_ops(OpRegistry& registry);           // BitCast (opset 26)
// NonZero, Unique, Compress, NonMaxSuppression (output sizes depend on input data)
void register_data_dependent_ops(OpRegistry& registry);
void register_optimizer_ops(OpRegistry& registry);  // Adagrad, Adam, Momentum (preview.training)
void register_roi_align_ops(OpRegistry& registry);    // RoiAlign
void register_deform_conv_ops(OpRegistry& registry);  // DeformConv (opset 19)
void register_ml_ops(OpRegistry& registry);  // ai.onnx.ml Binarizer, ArrayFeatureExtractor
// Plugin, PluginDataDependent: layers run by a plugin library (src/plugins/plugin_layer.hpp)
void register_plugin_ops(OpRegistry& registry);

}  // namespace kiln::ops
