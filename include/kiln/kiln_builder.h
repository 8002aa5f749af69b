/* kiln builder, C API (used by the Python package through ctypes). Same error conventions as
 * kiln.h: a kiln_status, and kiln_last_error() for the message. */
#ifndef KILN_KILN_BUILDER_H_
#define KILN_KILN_BUILDER_H_

#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds an engine from an ONNX file or bytes. `config_json` is NULL or a JSON object with any of:
 *   "precision": "fp32"|"tf32"|"fp16"|"bf16", "target": "cpu"|"cuda", "device": int,
 *   "workspace_limit": int, "timing_cache": "FILE", "kernel_cache": "DIR" or "off",
 *   "cuda_arch": int (build for sm_<cuda_arch> without that GPU, untuned; see BuilderConfig),
 *   "explain": bool (record pass and fusion decisions in the metadata), "allow_host_layers": bool
 *   (default true; false: a layer no cuda kernel takes fails the build instead of running on the
 *   host, see BuilderConfig), "metadata": {...},
 *   "profiles": {"input_name": {"min": [..], "opt": [..], "max": [..]}, ...}.
 * "workspace_limit" takes only its default, 1073741824 (any other value is KILN_ERROR_UNSUPPORTED):
 * kernels get a fixed 1 GiB of scratch memory that an engine cannot change yet.
 * On success *engine points to *size bytes to be freed with kiln_free. */
kiln_status kiln_build_onnx_file(const char* onnx_path, const char* config_json, void** engine,
                                 size_t* size);
kiln_status kiln_build_onnx_bytes(const void* onnx, size_t onnx_size, const char* base_dir,
                                  const char* config_json, void** engine, size_t* size);
void kiln_free(void* buffer);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_BUILDER_H_ */
