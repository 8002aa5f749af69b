/* A plugin library for kiln's tests, written in C against include/kiln/plugin.h alone:
 *   kiln.test::ScaledAdd v1: Y = A + alpha * B (float32, A and B of one shape; field alpha)
 *   kiln.test::ScaledAdd v2: Y = A + alpha * B + beta (fields alpha, beta); plugin ABI version 2,
 *     with a CPU-only workspace
 *   kiln.test::KeepPositive v1: Y = the elements of X above `threshold`, in order (1-D, its
 *     length depends on the data, at most numel(X)); uses a workspace.
 *
 * It registers its creators from a constructor (linked in or LD_PRELOAD) and from
 * kiln_plugin_init (kiln_load_plugin_library); registering twice is harmless. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/plugin.h"

#if defined(__GNUC__)
#define EXPORT __attribute__((visibility("default")))
#else
#define EXPORT
#endif

static kiln_status fail_with(kiln_plugin_error* error, kiln_status status, const char* message) {
  snprintf(error->message, sizeof error->message, "%s", message);
  return status;
}

static int64_t numel(const int64_t* shape, int32_t ndim) {
  int64_t n = 1;
  for (int32_t d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

/* ---- ScaledAdd ------------------------------------------------------------------------------ */

typedef struct scaled_add {
  float alpha;
  float beta;
  int with_beta;
  kiln_plugin_field fields[2];
} scaled_add;

static kiln_status scaled_add_create(const kiln_plugin_field* fields, int32_t num_fields,
                                     void** instance, kiln_plugin_error* error, int with_beta) {
  scaled_add* self = (scaled_add*)calloc(1, sizeof(scaled_add));
  if (!self) return fail_with(error, KILN_ERROR_OUT_OF_MEMORY, "out of memory");
  self->alpha = 1.0f;
  self->with_beta = with_beta;
  for (int32_t i = 0; i < num_fields; ++i) {
    if (strcmp(fields[i].name, "alpha") == 0) self->alpha = fields[i].f;
    if (strcmp(fields[i].name, "beta") == 0) self->beta = fields[i].f;
  }
  if (self->alpha != self->alpha) {
    free(self);
    return fail_with(error, KILN_ERROR_INVALID_ARGUMENT, "alpha must not be NaN");
  }
  self->fields[0].name = "alpha";
  self->fields[0].kind = KILN_PLUGIN_FIELD_FLOAT;
  self->fields[0].f = self->alpha;
  self->fields[1].name = "beta";
  self->fields[1].kind = KILN_PLUGIN_FIELD_FLOAT;
  self->fields[1].f = self->beta;
  *instance = self;
  return KILN_OK;
}

static kiln_status scaled_add_create_v1(const kiln_plugin_field* f, int32_t n, void** instance,
                                        kiln_plugin_error* e) {
  return scaled_add_create(f, n, instance, e, 0);
}

static kiln_status scaled_add_create_v2(const kiln_plugin_field* f, int32_t n, void** instance,
                                        kiln_plugin_error* e) {
  return scaled_add_create(f, n, instance, e, 1);
}

static void destroy(void* instance) {
  free(instance);
}

static kiln_status scaled_add_fields(void* instance, const kiln_plugin_field** fields,
                                     int32_t* num_fields, kiln_plugin_error* error) {
  scaled_add* self = (scaled_add*)instance;
  (void)error;
  *fields = self->fields;
  *num_fields = self->with_beta ? 2 : 1;
  return KILN_OK;
}

static kiln_status float_only(void* instance, const kiln_dtype* dtypes, int32_t num_inputs,
                              kiln_plugin_error* error) {
  (void)instance;
  for (int32_t i = 0; i < num_inputs; ++i) {
    if (dtypes[i] != KILN_FLOAT32)
      return fail_with(error, KILN_ERROR_UNSUPPORTED, "takes float32 inputs only");
  }
  return KILN_OK;
}

static kiln_status scaled_add_infer(void* instance, const kiln_plugin_tensor_desc* inputs,
                                    int32_t num_inputs, kiln_plugin_output_desc* outputs,
                                    int32_t num_outputs, kiln_plugin_error* error) {
  (void)instance;
  if (num_inputs != 2 || num_outputs != 1) {
    return fail_with(error, KILN_ERROR_INVALID_ARGUMENT, "takes 2 inputs and gives 1 output");
  }
  if (inputs[0].ndim != inputs[1].ndim)
    return fail_with(error, KILN_ERROR_INVALID_ARGUMENT, "A and B differ in rank");
  for (int32_t d = 0; d < inputs[0].ndim; ++d) {
    if (inputs[0].shape[d] >= 0 && inputs[1].shape[d] >= 0 &&
        inputs[0].shape[d] != inputs[1].shape[d]) {
      char message[128];
      snprintf(message, sizeof message, "A and B differ in dimension %d (%lld vs %lld)", (int)d,
               (long long)inputs[0].shape[d], (long long)inputs[1].shape[d]);
      return fail_with(error, KILN_ERROR_INVALID_ARGUMENT, message);
    }
  }
  outputs[0].dtype = KILN_FLOAT32;
  outputs[0].ndim = inputs[0].ndim;
  for (int32_t d = 0; d < inputs[0].ndim; ++d) {
    outputs[0].dims[d].kind = KILN_PLUGIN_DIM_COPY;
    outputs[0].dims[d].input = 0;
    outputs[0].dims[d].input_dim = d;
  }
  return KILN_OK;
}

static kiln_status scaled_add_execute(void* instance, const kiln_plugin_tensor* inputs,
                                      int32_t num_inputs, kiln_plugin_tensor* outputs,
                                      int32_t num_outputs, void* workspace,
                                      kiln_plugin_error* error) {
  const scaled_add* self = (const scaled_add*)instance;
  (void)num_inputs;
  (void)num_outputs;
  (void)workspace;
  (void)error;
  const float* a = (const float*)inputs[0].data;
  const float* b = (const float*)inputs[1].data;
  float* y = (float*)outputs[0].data;
  const int64_t n = numel(outputs[0].shape, outputs[0].ndim);
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + self->alpha * b[i] + self->beta;
  return KILN_OK;
}

/* Version 2 is an ABI version 2 creator whose workspace depends on the backend: 64 bytes of host
 * scratch for the CPU, and a refusal when asked for any backend it has no execute function of
 * (kiln must not ask). Its execute checks it got the scratch. */
static kiln_status scaled_add_workspace(void* instance, kiln_plugin_backend backend,
                                        const kiln_plugin_tensor_desc* inputs, int32_t num_inputs,
                                        const kiln_plugin_tensor_desc* outputs, int32_t num_outputs,
                                        int64_t* bytes, kiln_plugin_error* error) {
  (void)instance;
  (void)inputs;
  (void)num_inputs;
  (void)outputs;
  (void)num_outputs;
  if (backend != KILN_PLUGIN_BACKEND_CPU) {
    return fail_with(error, KILN_ERROR_INVALID_ARGUMENT, "asked for the workspace of a backend it lacks");
  }
  *bytes = 64;
  return KILN_OK;
}

static kiln_status scaled_add_execute_with_workspace(void* instance, const kiln_plugin_tensor* inputs,
                                                     int32_t num_inputs, kiln_plugin_tensor* outputs,
                                                     int32_t num_outputs, void* workspace,
                                                     kiln_plugin_error* error) {
  if (workspace == NULL || (uintptr_t)workspace % 64 != 0) {
    return fail_with(error, KILN_ERROR_INTERNAL, "no 64-byte aligned workspace");
  }
  memset(workspace, 0xff, 64); /* all of it is ours */
  return scaled_add_execute(instance, inputs, num_inputs, outputs, num_outputs, NULL, error);
}

static const kiln_plugin_field_spec scaled_add_v1_specs[] = {{"alpha", KILN_PLUGIN_FIELD_FLOAT, 1}};
static const kiln_plugin_field_spec scaled_add_v2_specs[] = {{"alpha", KILN_PLUGIN_FIELD_FLOAT, 1},
                                                             {"beta", KILN_PLUGIN_FIELD_FLOAT, 0}};

static const kiln_plugin_creator scaled_add_v1 = {KILN_PLUGIN_ABI_VERSION,
                                                  "kiln.test",
                                                  "ScaledAdd",
                                                  1,
                                                  scaled_add_v1_specs,
                                                  1,
                                                  0,
                                                  scaled_add_create_v1,
                                                  destroy,
                                                  scaled_add_fields,
                                                  float_only,
                                                  scaled_add_infer,
                                                  NULL,
                                                  scaled_add_execute,
                                                  NULL};
static const kiln_plugin_creator scaled_add_v2 = {2, /* ABI version 2: workspace knows the backend */
                                                  "kiln.test",
                                                  "ScaledAdd",
                                                  2,
                                                  scaled_add_v2_specs,
                                                  2,
                                                  0,
                                                  scaled_add_create_v2,
                                                  destroy,
                                                  scaled_add_fields,
                                                  float_only,
                                                  scaled_add_infer,
                                                  scaled_add_workspace,
                                                  scaled_add_execute_with_workspace,
                                                  NULL};

/* ---- KeepPositive --------------------------------------------------------------------------- */

typedef struct keep_positive {
  float threshold;
  kiln_plugin_field field;
} keep_positive;

static kiln_status keep_positive_create(const kiln_plugin_field* fields, int32_t num_fields,
                                        void** instance, kiln_plugin_error* error) {
  keep_positive* self = (keep_positive*)calloc(1, sizeof(keep_positive));
  if (!self) return fail_with(error, KILN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (int32_t i = 0; i < num_fields; ++i) {
    if (strcmp(fields[i].name, "threshold") == 0) self->threshold = fields[i].f;
  }
  self->field.name = "threshold";
  self->field.kind = KILN_PLUGIN_FIELD_FLOAT;
  self->field.f = self->threshold;
  *instance = self;
  return KILN_OK;
}

static kiln_status keep_positive_fields(void* instance, const kiln_plugin_field** fields,
                                        int32_t* num_fields, kiln_plugin_error* error) {
  (void)error;
  *fields = &((keep_positive*)instance)->field;
  *num_fields = 1;
  return KILN_OK;
}

static kiln_status keep_positive_infer(void* instance, const kiln_plugin_tensor_desc* inputs,
                                       int32_t num_inputs, kiln_plugin_output_desc* outputs,
                                       int32_t num_outputs, kiln_plugin_error* error) {
  (void)instance;
  if (num_inputs != 1 || num_outputs != 1) {
    return fail_with(error, KILN_ERROR_INVALID_ARGUMENT, "takes 1 input and gives 1 output");
  }
  int64_t bound = 1;
  for (int32_t d = 0; d < inputs[0].ndim; ++d)
    bound = inputs[0].shape[d] < 0 || bound < 0 ? -1 : bound * inputs[0].shape[d];
  outputs[0].dtype = KILN_FLOAT32;
  outputs[0].ndim = 1;
  /* With a dynamic input dimension the bound is unknown at build time; kiln asks again at run time.
   */
  outputs[0].dims[0].kind = KILN_PLUGIN_DIM_DATA_DEPENDENT;
  outputs[0].dims[0].value = bound < 0 ? 0 : bound;
  return KILN_OK;
}

static kiln_status keep_positive_workspace(void* instance, const kiln_plugin_tensor_desc* inputs,
                                           int32_t num_inputs,
                                           const kiln_plugin_tensor_desc* outputs,
                                           int32_t num_outputs, int64_t* bytes,
                                           kiln_plugin_error* error) {
  (void)instance;
  (void)num_inputs;
  (void)outputs;
  (void)num_outputs;
  (void)error;
  *bytes = numel(inputs[0].shape, inputs[0].ndim) * (int64_t)sizeof(int64_t);
  return KILN_OK;
}

static kiln_status keep_positive_execute(void* instance, const kiln_plugin_tensor* inputs,
                                         int32_t num_inputs, kiln_plugin_tensor* outputs,
                                         int32_t num_outputs, void* workspace,
                                         kiln_plugin_error* error) {
  const keep_positive* self = (const keep_positive*)instance;
  (void)num_inputs;
  (void)num_outputs;
  const int64_t n = numel(inputs[0].shape, inputs[0].ndim);
  if (n > 0 && workspace == NULL) return fail_with(error, KILN_ERROR_INTERNAL, "no workspace");
  /* The workspace holds the kept indices first, to exercise it. */
  int64_t* kept = (int64_t*)workspace;
  int64_t count = 0;
  const float* x = (const float*)inputs[0].data;
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] > self->threshold) kept[count++] = i;
  }
  float* y = (float*)outputs[0].data;
  for (int64_t i = 0; i < count; ++i) y[i] = x[kept[i]];
  outputs[0].shape[0] = count;
  return KILN_OK;
}

static const kiln_plugin_field_spec keep_positive_specs[] = {
    {"threshold", KILN_PLUGIN_FIELD_FLOAT, 0}};

/* An ABI version 1 creator (built before the workspace call said the backend): kiln calls its
 * workspace through the version 1 signature. */
static const kiln_plugin_creator keep_positive_v1 = {1,
                                                     "kiln.test",
                                                     "KeepPositive",
                                                     1,
                                                     keep_positive_specs,
                                                     1,
                                                     1,
                                                     keep_positive_create,
                                                     destroy,
                                                     keep_positive_fields,
                                                     float_only,
                                                     keep_positive_infer,
                                                     (kiln_plugin_workspace_fn)(void (*)(void))keep_positive_workspace,
                                                     keep_positive_execute,
                                                     NULL};

/* ---- registration -----------------------------------------------------------------------------
 */

EXPORT kiln_status kiln_plugin_init(uint32_t runtime_abi_version) {
  (void)runtime_abi_version;
  const kiln_plugin_creator* creators[] = {&scaled_add_v1, &scaled_add_v2, &keep_positive_v1};
  for (size_t i = 0; i < sizeof creators / sizeof creators[0]; ++i) {
    const kiln_status status = kiln_register_plugin_creator(creators[i]);
    if (status != KILN_OK) return status;
  }
  return KILN_OK;
}

__attribute__((constructor)) static void register_on_load(void) {
  /* A failure is reported again (with its message) when a loader calls kiln_plugin_init. */
  (void)kiln_plugin_init(KILN_PLUGIN_ABI_VERSION);
}
