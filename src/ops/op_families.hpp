// The op families: each src/ops/<family>_ops.cpp defines `void register_<family>_ops(OpRegistry&
// registry)`, which adds its ops. op_families() is their table, generated at build time from those
// definitions (src/base/family_registration.hpp says how), so adding a family edits no list.
#pragma once

#include <span>

#include "base/family_registration.hpp"
#include "ops/op_registry.hpp"

namespace kiln::ops {

using OpFamily = Family<OpRegistry>;

// Every op family in src/ops, sorted by name; op_registry() registers them all.
std::span<const OpFamily> op_families();

}  // namespace kiln::ops
