#include "runtime/memory_planner.hpp"

#include <algorithm>
#include <numeric>

#include "base/error.hpp"

namespace kiln {
namespace {
// Sizes come from untrusted shapes: a sum that wraps would place buffers on top of each other.
uint64_t checked_sum(uint64_t a, uint64_t b) {
  uint64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    fail(ErrorCode::kInvalidArgument, "memory plan: ", a, " + ", b, " bytes overflows 64-bit sizes");
  }
  return sum;
}
uint64_t align_up(uint64_t value, uint64_t alignment) {
  return checked_sum(value, alignment - 1) & ~(alignment - 1);
}
}  // namespace

ArenaPlan plan_arena(std::span<const BufferRequest> requests, uint64_t alignment) {
  KILN_ASSERT(alignment > 0 && (alignment & (alignment - 1)) == 0, "alignment ", alignment);
  ArenaPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return requests[a].size > requests[b].size;
  });

  struct Placed {
    uint64_t begin, end;
    int32_t first, last;
  };
  std::vector<Placed> placed;
  placed.reserve(requests.size());
  std::vector<std::pair<uint64_t, uint64_t>> conflicts;
  for (size_t index : order) {
    const BufferRequest& r = requests[index];
    KILN_ASSERT(r.first_use <= r.last_use, "buffer ", index, " dies before it is written");
    if (r.size == 0) continue;
    const uint64_t size = align_up(r.size, alignment);
    conflicts.clear();
    for (const Placed& p : placed) {
      if (p.first <= r.last_use && r.first_use <= p.last) conflicts.emplace_back(p.begin, p.end);
    }
    std::sort(conflicts.begin(), conflicts.end());
    uint64_t offset = 0;
    for (const auto& [begin, end] : conflicts) {
      if (checked_sum(offset, size) <= begin) break;  // fits in the gap before this block
      offset = std::max(offset, end);
    }
    plan.offsets[index] = offset;
    const uint64_t end = checked_sum(offset, size);
    placed.push_back({offset, end, r.first_use, r.last_use});
    plan.total_size = std::max(plan.total_size, end);
  }
  return plan;
}

}  // namespace kiln
