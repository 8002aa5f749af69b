# Writes a C++ source defining `std::string_view NAMESPACE::FUNCTION()` that returns the bytes of
# INPUT, declared in the header INCLUDE. Run as a build step:
#   cmake -DINPUT=... -DOUTPUT=... -DINCLUDE=... -DNAMESPACE=... -DFUNCTION=... -P embed_text.cmake
# The text goes in as one raw string literal; OUTPUT is rewritten only when it changes.
foreach(var INPUT OUTPUT INCLUDE NAMESPACE FUNCTION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_text.cmake: ${var} is not set")
  endif()
endforeach()

file(READ "${INPUT}" text)
set(delimiter "kiln_embedded")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "embed_text.cmake: ${INPUT} contains the raw string terminator )${delimiter}\"")
endif()

file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by cmake/embed_text.cmake at build time; do not edit.
#include \"${INCLUDE}\"

namespace ${NAMESPACE} {

std::string_view ${FUNCTION}() {
  static constexpr char kText[] = R\"${delimiter}(${text})${delimiter}\";
  return {kText, sizeof(kText) - 1};
}

}  // namespace ${NAMESPACE}
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
