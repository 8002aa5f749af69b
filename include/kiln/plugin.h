/* kiln plugin ABI: how a plugin library gives kiln ops its core does not have.
 *
 * C only, so a plugin built with another compiler or C++ standard library loads: every type here is
 * a plain struct of fixed-width integers, floats and pointers, every function pointer is a C
 * function, and nothing (no exception, no C++ object) crosses the boundary. docs/plugins.md walks
 * through writing, building and loading a plugin; include/kiln/plugin.hpp is an optional C++
 * helper.
 *
 * A plugin library describes each op it provides with a kiln_plugin_creator (namespace, name,
 * version, the fields it accepts, and its functions) and registers it with
 * kiln_register_plugin_creator, in two ways, so that it works however it is loaded:
 *   - from a load-time constructor (__attribute__((constructor)) or a C++ static initialiser):
 *     linking the library in, LD_PRELOAD;
 *   - from its exported function kiln_plugin_init, which kiln_load_plugin_library
 *     (include/kiln/kiln.h) calls after dlopen.
 * Registering the same creator (same address) twice is harmless, so a library may do both.
 *
 * Lifetime: a creator and everything it points to (strings, field specs) must stay valid while
 * the library is loaded; kiln never unloads a plugin library it loaded. An instance (create)
 * lives until destroy; kiln may create several instances of one creator at once and call one
 * instance from several threads at once, so an instance's functions must not modify it.
 *
 * Errors: every function that can fail returns a kiln_status and, on failure, writes a
 * NUL-terminated message into `error->message` (at most KILN_PLUGIN_ERROR_CAPACITY bytes with the
 * NUL). kiln turns it into a kiln error naming the node or layer, the plugin, its library and the
 * call: "node 'n1' (Plugin): plugin kiln.test::ScaledAdd v2 (libkiln_test_plugin.so) infer:
 * <message>". A function must not throw (a C++ plugin catches its exceptions) nor abort. */
#ifndef KILN_PLUGIN_H_
#define KILN_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. A plugin stores it in kiln_plugin_creator.abi_version. Any
 * change to a struct or a function's meaning in this header increments it. The runtime takes
 * creators of every version from KILN_PLUGIN_ABI_OLDEST_VERSION to its own, calling each through
 * that version's contract, and refuses others (KILN_ERROR_INCOMPATIBLE, naming the plugin, its ABI
 * version and the runtime's).
 *   1: the first.
 *   2: `workspace` is told which backend will execute (kiln_plugin_workspace_fn's `backend`). */
#define KILN_PLUGIN_ABI_VERSION 2
#define KILN_PLUGIN_ABI_OLDEST_VERSION 1

/* The most dimensions a plugin output may have (kiln's engine format allows 16). */
#define KILN_PLUGIN_MAX_RANK 16
#define KILN_PLUGIN_ERROR_CAPACITY 1024

typedef struct kiln_plugin_error {
  char message[KILN_PLUGIN_ERROR_CAPACITY];
} kiln_plugin_error;

/* A field's kind; the values equal the engine format's attribute kinds (docs/engine-format.md). */
typedef enum kiln_plugin_field_kind {
  KILN_PLUGIN_FIELD_INT = 1,    /* int64 */
  KILN_PLUGIN_FIELD_FLOAT = 2,  /* float32 */
  KILN_PLUGIN_FIELD_STRING = 3, /* UTF-8 */
  KILN_PLUGIN_FIELD_INTS = 4,
  KILN_PLUGIN_FIELD_FLOATS = 5,
  KILN_PLUGIN_FIELD_STRINGS = 6
} kiln_plugin_field_kind;

/* One field a creator accepts. The builder refuses a node attribute that is not listed here, or has
 * another kind, and a node that lacks a field marked `required`. */
typedef struct kiln_plugin_field_spec {
  const char* name; /* non-empty, unique per creator, not starting with "kiln_" */
  kiln_plugin_field_kind kind;
  int32_t required; /* nonzero: a node must give it */
} kiln_plugin_field_spec;

/* A field's value. Only the members for `kind` are meaningful: `i` (INT), `f` (FLOAT), `s`
 * (STRING), `ints`/`count` (INTS), `floats`/`count` (FLOATS), `strings`/`count` (STRINGS). The
 * pointers belong to whoever passes the field and stay valid only during the call it is passed to
 * (or, from kiln_plugin_fields_fn, until the instance is destroyed). */
typedef struct kiln_plugin_field {
  const char* name;
  kiln_plugin_field_kind kind;
  int64_t i;
  float f;
  const char* s;
  const int64_t* ints;
  const float* floats;
  const char* const* strings;
  int64_t count;
} kiln_plugin_field;

/* What the builder knows of an input: its dtype and shape; a dimension is -1 where it is dynamic
 * (build time only: at run time every dimension is known). */
typedef struct kiln_plugin_tensor_desc {
  kiln_dtype dtype;
  int32_t ndim;
  const int64_t* shape;
} kiln_plugin_tensor_desc;

/* How an output dimension is decided (kiln_plugin_output_desc.dims). */
typedef enum kiln_plugin_dim_kind {
  /* `value` is the size; -1 when it cannot be known yet (it was computed from a dynamic input
     dimension: kiln asks again at run time with every dimension known). */
  KILN_PLUGIN_DIM_VALUE = 0,
  /* The size of dimension `input_dim` of input `input` (dynamic when that one is). */
  KILN_PLUGIN_DIM_COPY = 1,
  /* Known only once the plugin ran (it depends on input data), at most `value` (>= 0). Needs
     kiln_plugin_creator.data_dependent_shapes; execute writes the actual size. */
  KILN_PLUGIN_DIM_DATA_DEPENDENT = 2
} kiln_plugin_dim_kind;

typedef struct kiln_plugin_dim {
  kiln_plugin_dim_kind kind;
  int64_t value;     /* VALUE: the size; DATA_DEPENDENT: the upper bound */
  int32_t input;     /* COPY: input index */
  int32_t input_dim; /* COPY: dimension of that input */
} kiln_plugin_dim;

typedef struct kiln_plugin_output_desc {
  kiln_dtype dtype;
  int32_t ndim; /* 0..KILN_PLUGIN_MAX_RANK */
  kiln_plugin_dim dims[KILN_PLUGIN_MAX_RANK];
} kiln_plugin_output_desc;

/* A tensor at run time: dense, row-major, `data` a host pointer (execute_cpu) or a device pointer
 * on the engine's GPU (execute_cuda). Inputs are read only. An absent optional input has data ==
 * NULL. For an output with a data-dependent dimension the buffer holds the upper bound's bytes and
 * execute overwrites shape[] with the actual sizes (row-major from the buffer's start). */
typedef struct kiln_plugin_tensor {
  kiln_dtype dtype;
  int32_t ndim;
  int64_t* shape;
  void* data;
} kiln_plugin_tensor;

/* ---- the functions a creator provides ---------------------------------------------------------
 *
 * `instance` is what create returned. Inputs: `num_inputs` as in the node (absent optional inputs
 * have ndim == -1 in descriptions, data == NULL at run time). */

/* Needs: `fields` as validated against the creator's field specs (every listed kind matches, every
 * required field present; fields the node left out are absent). Returns KILN_OK and *instance (any
 * value, NULL included), or a failure (an invalid field value) with `error` set. */
typedef kiln_status (*kiln_plugin_create_fn)(const kiln_plugin_field* fields, int32_t num_fields,
                                             void** instance, kiln_plugin_error* error);
/* Releases what create made. Never fails. */
typedef void (*kiln_plugin_destroy_fn)(void* instance);
/* The instance's fields as they are to be stored in the engine (the plugin may add defaults or
 * normalise values); the engine is rebuilt from them at load with create. Returns KILN_OK with
 * *fields / *num_fields valid until destroy. */
typedef kiln_status (*kiln_plugin_fields_fn)(void* instance, const kiln_plugin_field** fields,
                                             int32_t* num_fields, kiln_plugin_error* error);
/* Whether the instance runs with these input dtypes (absent inputs: KILN_FLOAT32, ignore them).
 * Returns KILN_OK when it does; KILN_ERROR_UNSUPPORTED with `error` saying which dtypes it takes.
 */
typedef kiln_status (*kiln_plugin_supports_fn)(void* instance, const kiln_dtype* input_dtypes,
                                               int32_t num_inputs, kiln_plugin_error* error);
/* Output dtypes and dims from the inputs' descriptions (dims may be -1 at build time). Fills
 * outputs[0..num_outputs); `num_outputs` is the node's output count, which the plugin must refuse
 * when it is not one it produces. Called at build time and, for engines with dynamic shapes, at
 * run time with every dimension known; it must give the same answer for the same inputs. Returns
 * KILN_OK, or a failure (unsupported rank, shape mismatch, wrong input or output count). */
typedef kiln_status (*kiln_plugin_infer_fn)(void* instance, const kiln_plugin_tensor_desc* inputs,
                                            int32_t num_inputs, kiln_plugin_output_desc* outputs,
                                            int32_t num_outputs, kiln_plugin_error* error);
/* Which implementation of a plugin runs a layer: execute_cpu (host memory) or execute_cuda. */
typedef enum kiln_plugin_backend {
  KILN_PLUGIN_BACKEND_CPU = 0,
  KILN_PLUGIN_BACKEND_CUDA = 1
} kiln_plugin_backend;

/* Scratch bytes the execute call of `backend` needs for these shapes (every dimension known;
 * outputs at their upper bounds). kiln passes that call a buffer at least this large, aligned to 64
 * bytes (NULL when 0): host memory for KILN_PLUGIN_BACKEND_CPU, device memory for
 * KILN_PLUGIN_BACKEND_CUDA. kiln asks only for a backend whose execute function the creator has.
 * Returns KILN_OK with *bytes >= 0. */
typedef kiln_status (*kiln_plugin_workspace_fn)(void* instance, kiln_plugin_backend backend,
                                                const kiln_plugin_tensor_desc* inputs,
                                                int32_t num_inputs,
                                                const kiln_plugin_tensor_desc* outputs,
                                                int32_t num_outputs, int64_t* bytes,
                                                kiln_plugin_error* error);
/* The workspace call of ABI version 1 creators, which does not say the backend: kiln calls a
 * version 1 creator's `workspace` member through this type (the same bytes for either backend). */
typedef kiln_status (*kiln_plugin_workspace_v1_fn)(void* instance,
                                                   const kiln_plugin_tensor_desc* inputs,
                                                   int32_t num_inputs,
                                                   const kiln_plugin_tensor_desc* outputs,
                                                   int32_t num_outputs, int64_t* bytes,
                                                   kiln_plugin_error* error);
/* Runs the op on host memory: reads inputs, writes every element of every output (and, for
 * data-dependent dimensions, the outputs' shape[]). Returns KILN_OK, or a failure with `error`. */
typedef kiln_status (*kiln_plugin_execute_cpu_fn)(void* instance, const kiln_plugin_tensor* inputs,
                                                  int32_t num_inputs, kiln_plugin_tensor* outputs,
                                                  int32_t num_outputs, void* workspace,
                                                  kiln_plugin_error* error);
/* Enqueues the op on `stream` (a cudaStream_t of the engine's GPU, which is current) with device
 * pointers; `workspace` is device memory. Same contract as execute_cpu otherwise. kiln calls it for
 * a plugin layer of a cuda engine; a plugin without it (NULL) cannot be built into one (the build
 * fails naming the plugin and the backend).
 *   - Creators without data_dependent_shapes: kiln may call it while `stream` is being captured
 *     into a CUDA graph (then replayed with the same pointers and shapes), so it must only enqueue
 *     work: no synchronisation, no device<->host copy it waits for, no allocation.
 *   - Creators with data_dependent_shapes: never called under capture. It writes the outputs'
 *     shape[] before returning, so it synchronises `stream` itself where the sizes are on the
 *     device (ideally one small device->host copy of the count); kiln plans the rest of the
 *     engine from them. */
typedef kiln_status (*kiln_plugin_execute_cuda_fn)(void* instance, const kiln_plugin_tensor* inputs,
                                                   int32_t num_inputs, kiln_plugin_tensor* outputs,
                                                   int32_t num_outputs, void* workspace,
                                                   void* stream, kiln_plugin_error* error);

/* One op a plugin provides. (namespace, name, version) identifies it: an ONNX node of domain
 * `plugin_namespace` and op type `name` maps to it ("" or "ai.onnx" namespace: a standard op kiln's
 * core lacks). Required: abi_version, name, create, destroy, fields, infer and at least one of
 * execute_cpu / execute_cuda; supports and workspace may be NULL (any dtype; no scratch). */
typedef struct kiln_plugin_creator {
  uint32_t abi_version; /* KILN_PLUGIN_ABI_VERSION (or an older version the runtime takes) */
  const char* plugin_namespace;
  const char* name;
  /* >= 1; a node takes the highest unless it asks (int attribute kiln_plugin_version) */
  int32_t version;
  const kiln_plugin_field_spec* field_specs;
  int32_t num_field_specs;
  /* Nonzero when some output dimension may be KILN_PLUGIN_DIM_DATA_DEPENDENT. */
  int32_t data_dependent_shapes;
  kiln_plugin_create_fn create;
  kiln_plugin_destroy_fn destroy;
  kiln_plugin_fields_fn fields;
  kiln_plugin_supports_fn supports;
  kiln_plugin_infer_fn infer;
  /* A version 1 creator stores its kiln_plugin_workspace_v1_fn here, cast (in C, through
   * void (*)(void) to keep -Wcast-function-type quiet). */
  kiln_plugin_workspace_fn workspace;
  kiln_plugin_execute_cpu_fn execute_cpu;
  kiln_plugin_execute_cuda_fn execute_cuda;
} kiln_plugin_creator;

/* Provided by libkiln_runtime.so. Registers `creator` in the process-wide plugin registry,
 * remembering the library file that holds it (found from the creator's address).
 * Returns KILN_OK when registered, or when this very creator (same address) is already registered.
 * Failures (kiln_last_error() says why): KILN_ERROR_INCOMPATIBLE for another abi_version;
 * KILN_ERROR_INVALID_ARGUMENT for a NULL creator, a missing required member, bad field specs or
 * version < 1; KILN_ERROR_INVALID_ARGUMENT naming both libraries when a different creator already
 * has this (namespace, name, version). Thread-safe. */
kiln_status kiln_register_plugin_creator(const kiln_plugin_creator* creator);

/* What a plugin library exports for kiln_load_plugin_library: registers its creators (with
 * kiln_register_plugin_creator, whose status it returns when one fails). `runtime_abi_version` is
 * the runtime's KILN_PLUGIN_ABI_VERSION, for a library that supports several. */
#define KILN_PLUGIN_INIT_SYMBOL "kiln_plugin_init"
typedef kiln_status (*kiln_plugin_init_fn)(uint32_t runtime_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* KILN_PLUGIN_H_ */
