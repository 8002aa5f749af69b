/* kiln C API example: load an engine with the runtime library alone, list its bindings, run it
 * once on generated float32 inputs and print the outputs.
 *
 * usage: kiln_c_example ENGINE.kiln
 *
 * Dynamic dimensions are given the size 1 (the C API reports -1 for them; an engine built with a
 * profile whose minimum is larger needs other sizes). Inputs of other dtypes are zero-filled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/kiln.h"

static size_t dtype_size(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_FLOAT64:
    case KILN_INT64:
      return 8;
    case KILN_FLOAT32:
    case KILN_INT32:
      return 4;
    case KILN_FLOAT16:
    case KILN_BFLOAT16:
    case KILN_INT16:
      return 2;
    default:
      return 1;
  }
}

static void print_shape(int32_t ndim, const int64_t* shape) {
  printf("[");
  for (int32_t d = 0; d < ndim; ++d) printf(d ? ", %lld" : "%lld", (long long)shape[d]);
  printf("]");
}

/* Prints the message of the failed call and returns 1 (the process exit status). */
static int report(const char* what, kiln_status status) {
  fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status, kiln_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s ENGINE.kiln\n", argv[0]);
    return 2;
  }
  printf("kiln runtime %s (engine format %s)\n", kiln_runtime_version(),
         kiln_engine_format_version());

  kiln_engine* engine = NULL;
  kiln_status status = kiln_engine_load_file(argv[1], &engine);
  if (status != KILN_OK) return report("kiln_engine_load_file", status);
  const char* backend = NULL;
  kiln_engine_backend(engine, &backend);
  printf("engine %s, backend %s\n", argv[1], backend);

  size_t num_inputs = 0;
  kiln_engine_num_bindings(engine, 1, &num_inputs);
  const char** names = calloc(num_inputs ? num_inputs : 1, sizeof(*names));
  kiln_tensor* inputs = calloc(num_inputs ? num_inputs : 1, sizeof(*inputs));
  int64_t** shapes = calloc(num_inputs ? num_inputs : 1, sizeof(*shapes));
  for (size_t i = 0; i < num_inputs; ++i) {
    kiln_dtype dtype;
    int32_t ndim = 0;
    const int64_t* binding_shape = NULL;
    kiln_engine_binding(engine, 1, i, &names[i], &dtype, &ndim, &binding_shape);
    printf("input  %s: dtype %d, shape ", names[i], (int)dtype);
    print_shape(ndim, binding_shape);
    printf("\n");

    shapes[i] = calloc(ndim ? (size_t)ndim : 1, sizeof(int64_t));
    size_t count = 1;
    for (int32_t d = 0; d < ndim; ++d) {
      shapes[i][d] = binding_shape[d] < 0 ? 1 : binding_shape[d];
      count *= (size_t)shapes[i][d];
    }
    void* data = calloc(count ? count : 1, dtype_size(dtype));
    if (dtype == KILN_FLOAT32) {
      float* values = data;
      for (size_t k = 0; k < count; ++k) values[k] = (float)(k % 8) * 0.25f - 1.0f;
    }
    inputs[i].dtype = dtype;
    inputs[i].ndim = ndim;
    inputs[i].shape = shapes[i];
    inputs[i].data = data;
  }

  kiln_context* context = NULL;
  status = kiln_context_create(engine, &context);
  if (status != KILN_OK) return report("kiln_context_create", status);
  status = kiln_context_execute(context, num_inputs, names, inputs, NULL);
  if (status != KILN_OK) return report("kiln_context_execute", status);

  size_t num_outputs = 0;
  kiln_engine_num_bindings(engine, 0, &num_outputs);
  for (size_t o = 0; o < num_outputs; ++o) {
    const char* name = NULL;
    kiln_dtype dtype;
    int32_t ndim = 0;
    const int64_t* binding_shape = NULL;
    kiln_engine_binding(engine, 0, o, &name, &dtype, &ndim, &binding_shape);
    kiln_tensor out;
    status = kiln_context_output(context, name, &out);
    if (status != KILN_OK) return report("kiln_context_output", status);
    printf("output %s: dtype %d, shape ", name, (int)out.dtype);
    print_shape(out.ndim, out.shape);
    if (out.dtype == KILN_FLOAT32) {
      size_t count = 1;
      for (int32_t d = 0; d < out.ndim; ++d) count *= (size_t)out.shape[d];
      printf(", values");
      for (size_t k = 0; k < count && k < 8; ++k) printf(" %.4f", ((const float*)out.data)[k]);
      if (count > 8) printf(" ...");
    }
    printf("\n");
  }

  /* Errors never abort: a bad call returns a status and kiln_last_error() says why. */
  kiln_tensor missing;
  status = kiln_context_output(context, "no_such_output", &missing);
  printf("asking for 'no_such_output': status %d: %s\n", (int)status, kiln_last_error());

  kiln_context_release(context);
  kiln_engine_release(engine);
  for (size_t i = 0; i < num_inputs; ++i) {
    free(inputs[i].data);
    free(shapes[i]);
  }
  free(shapes);
  free(inputs);
  free(names);
  return 0;
}
