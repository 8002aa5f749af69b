// libkiln_plugins.so: kiln's own plugin library (docs/plugins.md, "kiln's plugin library"). Every
// op is in namespace "kiln"; each lives in its own folder beside this file. The library registers
// its creators when loaded (constructor: linked in, LD_PRELOAD) and from kiln_plugin_init
// (kiln_load_plugin_library, --plugins); registering twice is harmless.
#include "batched_nms/batched_nms.hpp"
#include "batched_nms/torchvision_nms.hpp"
#include "deform_conv/deform_conv.hpp"
#include "deform_conv/torchvision_deform_conv2d.hpp"
#include "non_max_suppression/non_max_suppression.hpp"
#include "roi_align/roi_align.hpp"
#include "roi_align/torchvision_roi_align.hpp"

namespace {

const kiln_plugin_creator* const kCreators[] = {
    &kiln::plugins_lib::kNonMaxSuppressionCreator, &kiln::plugins_lib::kBatchedNmsCreator,
    &kiln::plugins_lib::kBatchedNmsPaddedCreator, &kiln::plugins_lib::kRoiAlignCreator,
    &kiln::plugins_lib::kDeformConvCreator,
    // torchvision's op signatures, for kiln.compile's torchvision::nms / roi_align / deform_conv2d
    &kiln::plugins_lib::kTorchvisionNmsCreator, &kiln::plugins_lib::kTorchvisionRoiAlignCreator,
    &kiln::plugins_lib::kTorchvisionDeformConv2dCreator};

}  // namespace

extern "C" __attribute__((visibility("default"))) kiln_status
kiln_plugin_init(uint32_t runtime_abi_version) {
  (void)runtime_abi_version;  // the runtime checks each creator's abi_version itself
  for (const kiln_plugin_creator* creator : kCreators) {
    const kiln_status status = kiln_register_plugin_creator(creator);
    if (status != KILN_OK) return status;
  }
  return KILN_OK;
}

namespace {
// Registration when linked in or preloaded; a failure is reported again by kiln_plugin_init when
// the library is loaded with kiln_load_plugin_library.
__attribute__((constructor)) void register_on_load() {
  (void)kiln_plugin_init(KILN_PLUGIN_ABI_VERSION);
}
}  // namespace
