// torch's current CUDA stream, found without CUDA headers, so that the same source builds against
// CPU and CUDA builds of torch (and across torch versions):
// - c10::Stream::native_handle() (torch >= 2.11 or so), through c10's device guard registry, which
//   a CUDA build of torch fills in when libtorch_cuda loads;
// - else aoti_torch_get_current_cuda_stream, the C function of torch's AOTInductor shim that
//   libtorch_cuda.so exports (a stable C ABI), looked up with dlsym.
#pragma once

namespace kiln::torch_integration {

// The raw cudaStream_t (as void*) torch would use on cuda:`device_index` right now. Throws
// c10::Error when this torch has no CUDA support.
void* current_cuda_stream(int device_index);

}  // namespace kiln::torch_integration
