# Fails when libkiln_runtime.so names a forbidden library (the builder, ONNX, protobuf, torch, Python,
# NVRTC, any CUDA library, oneDNN) in its dynamic section, or (NVRTC, which
# only the builder loads, with dlopen) refers to one of its symbols.
execute_process(COMMAND readelf -d ${LIBRARY} OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${LIBRARY} failed")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*" needed "${dynamic}")
message(STATUS "libkiln_runtime.so needs:\n${needed}")
if(NOT needed)
  message(FATAL_ERROR "readelf showed no NEEDED entries: the check is not looking at a real library")
endif()
# kiln_plugins: kiln's plugin library depends on the runtime, never the reverse. The CUDA libraries
# (runtime, cuBLAS/cuBLASLt, cuDNN, driver) and kiln's cuda backend are loaded (dlopen) on the first
# cuda engine, never linked, so a CPU deployment needs none of them. oneDNN (libdnnl) and kiln's
# oneDNN convolution are loaded at the first convolution when present, never linked.
foreach(forbidden protobuf onnx torch c10 libkiln.so python nvrtc kiln_plugins libcudart libcublas libcudnn
                  libcuda.so kiln_backend_cuda libdnnl kiln_cpu_onednn)
  string(FIND "${needed}" "${forbidden}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "libkiln_runtime.so depends on '${forbidden}':\n${needed}")
  endif()
endforeach()
execute_process(COMMAND readelf --dyn-syms -W ${LIBRARY} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf --dyn-syms ${LIBRARY} failed")
endif()
string(REGEX MATCHALL "[^\n]* nvrtc[A-Za-z]*[^\n]*" nvrtc_symbols "${symbols}")
if(nvrtc_symbols)
  message(FATAL_ERROR "libkiln_runtime.so refers to NVRTC symbols:\n${nvrtc_symbols}")
endif()
