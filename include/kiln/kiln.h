/* kiln runtime, C API.
 *
 * Every call returns a kiln_status; on failure kiln_last_error() gives a message that names the
 * problem (file, binding, node, expected vs got). No C++ exception crosses this boundary: an
 * allocation that fails is KILN_ERROR_OUT_OF_MEMORY and any other unexpected exception
 * KILN_ERROR_INTERNAL, with a message that starts with the call's name ("kiln_context_execute: out
 * of memory (std::bad_alloc)").
 *
 * Handles are opaque; each *_load / *_create has a matching *_release. Every call checks its
 * handle against the handles the API has returned and not released: NULL, a released handle, a
 * pointer kiln never returned and an engine passed as a context (or the reverse) are
 * KILN_ERROR_INVALID_ARGUMENT, and releasing such a handle releases nothing and leaves the reason
 * in kiln_last_error(). Undefined (not detected): using a handle whose address a later *_load /
 * *_create has returned again (the call then acts on the new handle); releasing a handle while
 * another thread is inside a call with it; using the strings, shapes and output pointers a call
 * returned after their handle is released (or, for outputs, after the next execute); tensors whose
 * `shape` or `data` do not point to `ndim` dimensions and the bytes they describe.
 *
 * Threads: an engine may be shared by any number of threads, each running its own context. A
 * context is used by one thread at a time; two threads inside calls on one context at once is
 * undefined. */
#ifndef KILN_KILN_H_
#define KILN_KILN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_status {
  KILN_OK = 0,
  KILN_ERROR_INVALID_ARGUMENT = 1,
  KILN_ERROR_NOT_FOUND = 2,
  KILN_ERROR_UNSUPPORTED = 3,
  KILN_ERROR_CORRUPT_FILE = 4,
  KILN_ERROR_INCOMPATIBLE = 5,
  KILN_ERROR_DEVICE = 6,
  KILN_ERROR_OUT_OF_MEMORY = 7,
  KILN_ERROR_IO = 8,
  KILN_ERROR_INTERNAL = 9
} kiln_status;

/* Element types; the values equal ONNX's TensorProto.DataType. */
typedef enum kiln_dtype {
  KILN_FLOAT32 = 1,
  KILN_UINT8 = 2,
  KILN_INT8 = 3,
  KILN_UINT16 = 4,
  KILN_INT16 = 5,
  KILN_INT32 = 6,
  KILN_INT64 = 7,
  KILN_BOOL = 9,
  KILN_FLOAT16 = 10,
  KILN_FLOAT64 = 11,
  KILN_UINT32 = 12,
  KILN_UINT64 = 13,
  KILN_BFLOAT16 = 16,
  KILN_FLOAT8E4M3FN = 17,
  KILN_FLOAT8E4M3FNUZ = 18,
  KILN_FLOAT8E5M2 = 19,
  KILN_FLOAT8E5M2FNUZ = 20,
  /* One element per byte: int4/int2 as int8 values, uint4/uint2 as uint8 values, float4e2m1 as its
     4-bit code, float8e8m0 as its exponent code (kiln reads only the low 4/2 bits of the 4/2-bit
     types, and writes int4/int2 sign-extended). */
  KILN_UINT4 = 21,
  KILN_INT4 = 22,
  KILN_FLOAT4E2M1 = 23,
  KILN_FLOAT8E8M0 = 24,
  KILN_UINT2 = 25,
  KILN_INT2 = 26
} kiln_dtype;

/* A dense row-major tensor. For inputs, `data` is read; for outputs returned by the runtime it
 * stays valid until the next execute on the same context or its release. */
typedef struct kiln_tensor {
  kiln_dtype dtype;
  int32_t ndim;
  const int64_t* shape;
  void* data;
} kiln_tensor;

typedef struct kiln_engine kiln_engine;
typedef struct kiln_context kiln_context;

/* The message of the last failed call on this thread ("" if none). Valid until the next call. */
const char* kiln_last_error(void);
/* The runtime's version, e.g. "0.1.0", and the newest engine format it reads, e.g. "1.0". */
const char* kiln_runtime_version(void);
const char* kiln_engine_format_version(void);

/* Loads and verifies an engine. On success *out owns a new handle. */
kiln_status kiln_engine_load_file(const char* path, kiln_engine** out);
kiln_status kiln_engine_load_bytes(const void* data, size_t size, kiln_engine** out);
/* As above, asking for a device: for a CUDA engine `device` is the GPU's CUDA ordinal (its
 * architecture must be the engine's; an ordinal the machine lacks is KILN_ERROR_DEVICE), or -1 for
 * the most compatible GPU (the current device when it fits), which is what the calls above do.
 * A cpu engine takes only -1 (else KILN_ERROR_INCOMPATIBLE); device < -1 is
 * KILN_ERROR_INVALID_ARGUMENT. */
kiln_status kiln_engine_load_file_on_device(const char* path, int device, kiln_engine** out);
kiln_status kiln_engine_load_bytes_on_device(const void* data, size_t size, int device, kiln_engine** out);
/* Releases the handle; contexts created from it keep the engine alive. NULL is ignored; a handle
 * that is not live (released already) is left alone and kiln_last_error() says so. */
void kiln_engine_release(kiln_engine* engine);

/* Bindings: is_input selects inputs (1) or outputs (0). The strings and shape stay valid while
 * the engine lives. Dynamic dimensions are -1. */
kiln_status kiln_engine_num_bindings(const kiln_engine* engine, int is_input, size_t* count);
kiln_status kiln_engine_binding(const kiln_engine* engine, int is_input, size_t index,
                                const char** name, kiln_dtype* dtype, int32_t* ndim,
                                const int64_t** shape);
/* "cpu" or "cuda"; the metadata JSON the builder recorded. Valid while the engine lives. */
kiln_status kiln_engine_backend(const kiln_engine* engine, const char** backend);
kiln_status kiln_engine_metadata(const kiln_engine* engine, const char** json);

/* A new context (its own activation memory) for running `engine`; any thread may create one. */
kiln_status kiln_context_create(const kiln_engine* engine, kiln_context** out);
/* NULL is ignored; a handle that is not live is left alone and kiln_last_error() says so. */
void kiln_context_release(kiln_context* context);

/* Runs the engine on host tensors and returns once the outputs are on the host (read them with
 * kiln_context_output). names[i] binds inputs[i]; every input must be bound once. `stream` must be
 * NULL (else KILN_ERROR_INVALID_ARGUMENT): a CUDA engine runs this call on the context's own stream
 * and synchronises it; to enqueue on a CUDA stream of your own, use kiln_context_execute_bound. */
kiln_status kiln_context_execute(kiln_context* context, size_t num_inputs,
                                 const char* const* names, const kiln_tensor* inputs,
                                 void* stream);
/* Runs the engine on caller-provided buffers in the engine's memory: device pointers on the
 * engine's GPU for CUDA engines (`stream` is the cudaStream_t to enqueue on, NULL for the legacy
 * default stream), host pointers for CPU engines (`stream` must be NULL, else
 * KILN_ERROR_INVALID_ARGUMENT). Every input and every
 * output is bound once by name; output shapes must be the ones the engine computes for these
 * inputs, except for outputs whose shape depends on the input data (NonZero, Unique, Compress,
 * NonMaxSuppression, or layers after them; CPU engines only): there the buffer's shape is its
 * capacity (same dtype and rank), which must hold the output's upper bound for these inputs (or
 * the actual result where no bound is known before the run); the result is written row-major from
 * the buffer's start and kiln_context_output_shape gives its shape. For CUDA engines the call
 * returns once the work is enqueued: it does not synchronise. */
kiln_status kiln_context_execute_bound(kiln_context* context, size_t num_inputs,
                                       const char* const* input_names, const kiln_tensor* inputs,
                                       size_t num_outputs, const char* const* output_names,
                                       const kiln_tensor* outputs, void* stream);
/* CUDA engines: capture each set of input shapes into a CUDA graph and replay it (1, default)
 * or launch every kernel on each call (0). No effect on CPU engines. */
kiln_status kiln_context_set_cuda_graphs(kiln_context* context, int enabled);
/* CPU engines: the number of threads one call's kernels split their work over, the calling
 * thread included (intra-op parallelism). 0 restores the default: the CPUs this process may run
 * on divided by the number of live CPU contexts, at least 1, worked out at each call, so
 * contexts running at once on different threads share the cores instead of oversubscribing them
 * (kiln keeps OpenBLAS at one thread per call). A default count of two or more is a guess about
 * the machine's load, so such a context times its calls on all its threads and on the calling
 * thread alone and runs the faster; a count set here is used on every call. Takes 0 to 1024; anything else fails with
 * KILN_ERROR_INVALID_ARGUMENT and leaves the setting unchanged. No effect on CUDA engines. */
kiln_status kiln_context_set_threads(kiln_context* context, int threads);
/* Writes to *threads the thread count the context's next call uses (the default resolved; 1 for
 * CUDA engines). Fails with KILN_ERROR_INVALID_ARGUMENT for a null pointer. */
kiln_status kiln_context_threads(const kiln_context* context, int* threads);

/* Multi-device safe mode (process-wide, off by default): see kiln::set_multi_device_safe_mode.
 * Returns the previous mode. */
int kiln_set_multi_device_safe_mode(int enabled);
int kiln_get_multi_device_safe_mode(void);

/* The output named `name` from the last execute; *out's pointers stay valid until the next
 * execute or the context's release. */
kiln_status kiln_context_output(const kiln_context* context, const char* name, kiln_tensor* out);
/* The shape output `name` got in the last execute of either kind (the actual shape of a
 * data-dependent output); *shape stays valid until the next execute or the context's release. */
kiln_status kiln_context_output_shape(const kiln_context* context, const char* name, int32_t* ndim,
                                      const int64_t** shape);

/* Loads the plugin library at `path` (include/kiln/plugin.h; dlopen, kept loaded for the process's
 * life) and registers its plugin creators: those its constructors registered and those its exported
 * kiln_plugin_init registers. Loading a library already loaded is harmless. Engines that name one of
 * its plugins then load. Failures: KILN_ERROR_NOT_FOUND when it cannot be loaded (the loader's
 * message), KILN_ERROR_INCOMPATIBLE for a plugin of another ABI version, KILN_ERROR_INVALID_ARGUMENT
 * for a NULL path, a library that is no kiln plugin, or a creator that conflicts with one already
 * registered under the same namespace, name and version (the message names both libraries). */
kiln_status kiln_load_plugin_library(const char* path);

/* Describes the plugin creator registered under (`plugin_namespace`, `name`) at `version`, or at
 * its highest registered version when `version` is 0, as one JSON object in *json:
 *   {"namespace": ..., "name": ..., "version": N, "library": "libfoo.so", "data_dependent_shapes":
 *    false, "fields": [{"name": ..., "kind": "int|float|string|ints|floats|strings",
 *    "required": true}, ...]}
 * ("ai.onnx" and "" are one namespace, reported as ""). For front ends that map their own ops to
 * plugins (kiln.compile maps torch.library custom ops this way). *json stays valid until this
 * thread's next call of this function. Failures: KILN_ERROR_NOT_FOUND when no such creator is
 * registered (the message lists the versions that are); KILN_ERROR_INVALID_ARGUMENT for a NULL
 * argument or a negative version. */
kiln_status kiln_describe_plugin(const char* plugin_namespace, const char* name, int32_t version,
                                 const char** json);

/* Whether `backend` ("cpu", "cuda") of this runtime has a kernel for op `op` (an ONNX op type as
 * docs/ops.md lists it, or "Plugin") with inputs of `input_dtypes` (kiln_dtype codes, which are
 * ONNX's TensorProto codes; -1 for an absent optional input) and outputs of `output_dtypes`
 * (num_outputs may be 0 when unknown). Answers from the kernels' registrations, without building
 * anything: *reason is "" when it has, else why not (e.g. "input 0 'input0' is float64; the cuda
 * kernel takes float32, float16, bfloat16"); attributes and shapes are not considered. *reason
 * stays valid until this thread's next call of this function. Failures: KILN_ERROR_NOT_FOUND for a
 * backend this runtime lacks (the message lists those it has); KILN_ERROR_INVALID_ARGUMENT for a
 * NULL argument or a code that is no kiln dtype. */
kiln_status kiln_backend_supports(const char* backend, const char* op, const int32_t* input_dtypes,
                                  size_t num_inputs, const int32_t* output_dtypes, size_t num_outputs,
                                  const char** reason);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_H_ */
