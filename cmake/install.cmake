# `cmake --install <build> --prefix P [--component C]`: an installed kiln that out-of-tree code
# builds against (examples/custom_plugin) and deploys with.
#   runtime: include/kiln/*.h(pp), lib/libkiln_runtime.so, lib/libkiln_plugins.so,
#            lib/libkiln_backend_cuda.so (CUDA builds; loaded on the first cuda engine),
#            lib/cmake/kiln/kilnConfig*.cmake
#   builder: lib/libkiln.so, bin/kiln
#   torch:   lib/libkiln_torch.so (when built)
# find_package(kiln) then gives the imported targets kiln::runtime and kiln::builder (when
# installed). The libraries find each other through RPATH $ORIGIN, so keep them in one lib/.
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/kiln DESTINATION include COMPONENT runtime
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
set_property(TARGET kiln_runtime kiln APPEND PROPERTY INSTALL_RPATH "$ORIGIN")
install(TARGETS kiln_runtime LIBRARY DESTINATION lib COMPONENT runtime)
# The cuda backend beside the runtime, which loads it from its own directory on the first cuda
# engine: a CPU-only deployment may leave it (and the CUDA libraries) out. It finds the runtime
# through $ORIGIN, and cuBLASLt and cuDNN where this build found them (PyPI's nvidia-* wheels are
# not on the loader's path); a machine that has them elsewhere finds them through its own loader path.
if(TARGET kiln_backend_cuda)
  set_property(TARGET kiln_backend_cuda APPEND PROPERTY INSTALL_RPATH "$ORIGIN" ${_kiln_cudnn_dir}
               ${_kiln_cublaslt_dir})
  install(TARGETS kiln_backend_cuda LIBRARY DESTINATION lib COMPONENT runtime)
endif()
# The oneDNN convolution beside the runtime, which loads it at the first convolution when present
# (a deployment without oneDNN leaves it out and runs the reference convolution).
if(TARGET kiln_cpu_onednn)
  set_property(TARGET kiln_cpu_onednn APPEND PROPERTY INSTALL_RPATH "$ORIGIN")
  install(TARGETS kiln_cpu_onednn LIBRARY DESTINATION lib COMPONENT runtime)
endif()
install(TARGETS kiln LIBRARY DESTINATION lib COMPONENT builder)
if(TARGET kiln_cli)
  set_property(TARGET kiln_cli APPEND PROPERTY INSTALL_RPATH "$ORIGIN/../lib")
  install(TARGETS kiln_cli RUNTIME DESTINATION bin COMPONENT builder)
endif()
# kiln's plugin library beside the runtime it links (RPATH $ORIGIN finds it there).
set_property(TARGET kiln_plugins APPEND PROPERTY INSTALL_RPATH "$ORIGIN")
install(TARGETS kiln_plugins LIBRARY DESTINATION lib COMPONENT runtime)
if(TARGET kiln_torch)
  set_property(TARGET kiln_torch APPEND PROPERTY INSTALL_RPATH "$ORIGIN")
  install(TARGETS kiln_torch LIBRARY DESTINATION lib COMPONENT torch)
endif()

configure_file(${PROJECT_SOURCE_DIR}/cmake/kilnConfig.cmake.in
               ${PROJECT_BINARY_DIR}/cmake/kilnConfig.cmake @ONLY)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/kilnConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/kilnConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/kilnConfigVersion.cmake
        DESTINATION lib/cmake/kiln COMPONENT runtime)
