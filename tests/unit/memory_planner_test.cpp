#include "runtime/memory_planner.hpp"

#include <gtest/gtest.h>

#include <random>

namespace kiln {
namespace {

bool overlaps(uint64_t a, uint64_t asize, uint64_t b, uint64_t bsize) { return a < b + bsize && b < a + asize; }

TEST(MemoryPlanner, ReusesMemoryOfDeadBuffers) {
  std::vector<BufferRequest> requests = {{100, 0, 1}, {100, 1, 2}, {100, 2, 3}};
  ArenaPlan plan = plan_arena(requests, 64);
  // Buffers 0 and 2 never live together, so they can share; 1 overlaps both.
  EXPECT_EQ(plan.total_size, 256u);
  EXPECT_EQ(plan.offsets[0], plan.offsets[2]);
  EXPECT_NE(plan.offsets[0], plan.offsets[1]);
}

TEST(MemoryPlanner, OffsetsAreAligned) {
  std::vector<BufferRequest> requests = {{3, 0, 5}, {5, 0, 5}, {7, 0, 5}};
  ArenaPlan plan = plan_arena(requests, 256);
  for (uint64_t offset : plan.offsets) EXPECT_EQ(offset % 256, 0u);
  EXPECT_EQ(plan.total_size, 768u);
}

TEST(MemoryPlanner, NeverOverlapsLiveTensorsOnRandomGraphs) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    const int steps = 1 + static_cast<int>(rng() % 40);
    std::vector<BufferRequest> requests(1 + rng() % 60);
    uint64_t sum = 0;
    for (BufferRequest& r : requests) {
      r.size = rng() % 5000;
      r.first_use = static_cast<int32_t>(rng() % steps);
      r.last_use = r.first_use + static_cast<int32_t>(rng() % (steps - r.first_use));
      sum += (r.size + 63) / 64 * 64;
    }
    ArenaPlan plan = plan_arena(requests, 64);
    EXPECT_LE(plan.total_size, sum);
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_LE(plan.offsets[i] + requests[i].size, plan.total_size);
      for (size_t j = i + 1; j < requests.size(); ++j) {
        const BufferRequest& a = requests[i];
        const BufferRequest& b = requests[j];
        if (a.size == 0 || b.size == 0) continue;
        const bool live_together = a.first_use <= b.last_use && b.first_use <= a.last_use;
        if (live_together) {
          EXPECT_FALSE(overlaps(plan.offsets[i], a.size, plan.offsets[j], b.size))
              << "trial " << trial << " buffers " << i << " and " << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kiln
