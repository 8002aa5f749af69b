# libkiln_torch.so: the PyTorch integration (src/torch/), built against the torch of
# ${Python3_EXECUTABLE}. Included from CMakeLists.txt when KILN_WITH_TORCH is on (or AUTO and the
# interpreter imports torch).
#
# find_package(Torch) is deliberately not used: with CUDA wheels it runs CUDA/cuDNN detection
# of its own. We only need torch's headers, three libraries and its C++ ABI setting, which the
# Python package reports itself.

# Sets KILN_TORCH_FOUND and, when found, KILN_TORCH_INCLUDE_DIRS, KILN_TORCH_LIBRARY_DIR,
# KILN_TORCH_LIBRARIES, KILN_TORCH_CXX11_ABI and KILN_TORCH_VERSION.
function(kiln_query_python_torch)
  set(KILN_TORCH_FOUND FALSE PARENT_SCOPE)
  if(NOT Python3_EXECUTABLE)
    find_package(Python3 COMPONENTS Interpreter)
  endif()
  if(NOT Python3_EXECUTABLE)
    return()
  endif()
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c
      "import os, torch; d = os.path.dirname(torch.__file__); print(torch.__version__); print(os.path.join(d, 'include')); print(os.path.join(d, 'lib')); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE _out ERROR_VARIABLE _err RESULT_VARIABLE _rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(STATUS "kiln: ${Python3_EXECUTABLE} cannot import torch: libkiln_torch.so is not built")
    return()
  endif()
  string(REPLACE "\n" ";" _lines "${_out}")
  list(GET _lines 0 _version)
  list(GET _lines 1 _include)
  list(GET _lines 2 _libdir)
  list(GET _lines 3 _abi)
  set(_libraries "")
  foreach(name torch torch_cpu c10)
    if(NOT EXISTS ${_libdir}/lib${name}.so)
      message(STATUS "kiln: ${_libdir}/lib${name}.so missing: libkiln_torch.so is not built")
      return()
    endif()
    list(APPEND _libraries ${_libdir}/lib${name}.so)
  endforeach()
  set(KILN_TORCH_FOUND TRUE PARENT_SCOPE)
  set(KILN_TORCH_VERSION ${_version} PARENT_SCOPE)
  set(KILN_TORCH_INCLUDE_DIRS ${_include} ${_include}/torch/csrc/api/include PARENT_SCOPE)
  set(KILN_TORCH_LIBRARY_DIR ${_libdir} PARENT_SCOPE)
  set(KILN_TORCH_LIBRARIES ${_libraries} PARENT_SCOPE)
  set(KILN_TORCH_CXX11_ABI ${_abi} PARENT_SCOPE)
endfunction()

if(KILN_WITH_TORCH STREQUAL "AUTO")
  kiln_query_python_torch()
elseif(KILN_WITH_TORCH)
  kiln_query_python_torch()
  if(NOT KILN_TORCH_FOUND)
    message(FATAL_ERROR "KILN_WITH_TORCH=ON but ${Python3_EXECUTABLE} cannot import torch; "
                        "set -DPython3_EXECUTABLE to a Python with torch, or -DKILN_WITH_TORCH=OFF")
  endif()
else()
  set(KILN_TORCH_FOUND FALSE)
endif()

# libkiln_torch.so passes std::string and std::vector between torch and kiln's runtime, so both
# sides must use the same libstdc++ ABI; kiln builds with the default (the C++11 ABI).
if(KILN_TORCH_FOUND AND NOT KILN_TORCH_CXX11_ABI)
  set(_kiln_abi_message "torch ${KILN_TORCH_VERSION} was built with _GLIBCXX_USE_CXX11_ABI=0, kiln with the "
                        "C++11 ABI: libkiln_torch.so is not built (use a torch built with the C++11 ABI, "
                        "as the PyPI wheels are since torch 2.7)")
  if(KILN_WITH_TORCH STREQUAL "AUTO")
    message(WARNING "kiln: ${_kiln_abi_message}")
    set(KILN_TORCH_FOUND FALSE)
  else()
    message(FATAL_ERROR "kiln: ${_kiln_abi_message}")
  endif()
endif()

if(KILN_TORCH_FOUND)
  message(STATUS "kiln: libkiln_torch.so against torch ${KILN_TORCH_VERSION} (${KILN_TORCH_LIBRARY_DIR}, "
                 "_GLIBCXX_USE_CXX11_ABI=${KILN_TORCH_CXX11_ABI})")
  file(GLOB KILN_TORCH_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/torch/*.cpp)
  add_library(kiln_torch SHARED ${KILN_TORCH_SOURCES})
  kiln_target_defaults(kiln_torch)
  # SYSTEM: torch's headers do not pass our -Werror.
  target_include_directories(kiln_torch SYSTEM PRIVATE ${KILN_TORCH_INCLUDE_DIRS})
  target_compile_definitions(kiln_torch PRIVATE _GLIBCXX_USE_CXX11_ABI=${KILN_TORCH_CXX11_ABI})
  # Only the runtime and torch: never libkiln.so (the builder), protobuf or ONNX.
  target_link_libraries(kiln_torch PRIVATE kiln_runtime ${KILN_TORCH_LIBRARIES} ${CMAKE_DL_LIBS})
  target_link_options(kiln_torch PRIVATE -Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/kiln_exports.map)
  set_target_properties(kiln_torch PROPERTIES
    LIBRARY_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/lib
    LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/kiln_exports.map
    # Our own directory first (libkiln_runtime.so sits next to us, also when copied elsewhere),
    # then torch's, so a program that links us finds libtorch without LD_LIBRARY_PATH.
    BUILD_RPATH "$ORIGIN;${KILN_TORCH_LIBRARY_DIR}")
endif()
