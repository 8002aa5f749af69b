// The case registry and value generators of the backend-ops conformance test
// (backend_ops_cases.hpp says how cases are written and registered).
#include "backend_ops_cases.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "base/half.hpp"

namespace kiln::conformance {
namespace {

std::map<std::string, std::vector<OpCase>>& case_table() {
  static std::map<std::string, std::vector<OpCase>> table;
  return table;
}

std::vector<std::string>& duplicates() {
  static std::vector<std::string> ops;
  return ops;
}

template <typename T>
T saturate(double value) {
  if (std::isnan(value)) return T{0};
  const double low = static_cast<double>(std::numeric_limits<T>::lowest());
  const double high = static_cast<double>(std::numeric_limits<T>::max());
  if (value <= low) return std::numeric_limits<T>::lowest();
  if (value >= high) return std::numeric_limits<T>::max();
  return static_cast<T>(value);
}

bool is_integer_dtype(DType dtype) {
  switch (dtype) {
    case DType::kInt8:
    case DType::kInt16:
    case DType::kInt32:
    case DType::kInt64:
    case DType::kUInt8:
    case DType::kUInt16:
    case DType::kUInt32:
    case DType::kUInt64:
      return true;
    default:
      return false;
  }
}

}  // namespace

CaseInput input(Shape shape, Fill fill) {
  return {CaseInput::Kind::kRuntime, std::move(shape), std::nullopt, std::move(fill)};
}
CaseInput input(Shape shape, DType dtype, Fill fill) {
  return {CaseInput::Kind::kRuntime, std::move(shape), dtype, std::move(fill)};
}
CaseInput constant(Shape shape, Fill fill) {
  return {CaseInput::Kind::kConstant, std::move(shape), std::nullopt, std::move(fill)};
}
CaseInput constant(Shape shape, DType dtype, Fill fill) {
  return {CaseInput::Kind::kConstant, std::move(shape), dtype, std::move(fill)};
}
CaseInput i64(Shape shape, std::vector<int64_t> v) {
  std::vector<double> as_double(v.begin(), v.end());
  return constant(std::move(shape), DType::kInt64, values(std::move(as_double)));
}
CaseInput absent() {
  return {CaseInput::Kind::kAbsent};
}

void set_element(HostTensor& t, int64_t i, double value) {
  switch (t.dtype) {
    case DType::kFloat32:
      t.data<float>()[i] = static_cast<float>(value);
      break;
    case DType::kFloat64:
      t.data<double>()[i] = value;
      break;
    case DType::kFloat16:
      t.data<uint16_t>()[i] = float_to_half(static_cast<float>(value));
      break;
    case DType::kBFloat16:
      t.data<uint16_t>()[i] = float_to_bfloat16(static_cast<float>(value));
      break;
    case DType::kInt8:
      t.data<int8_t>()[i] = saturate<int8_t>(value);
      break;
    case DType::kInt16:
      t.data<int16_t>()[i] = saturate<int16_t>(value);
      break;
    case DType::kInt32:
      t.data<int32_t>()[i] = saturate<int32_t>(value);
      break;
    case DType::kInt64:
      t.data<int64_t>()[i] = saturate<int64_t>(value);
      break;
    case DType::kUInt8:
      t.data<uint8_t>()[i] = saturate<uint8_t>(value);
      break;
    case DType::kUInt16:
      t.data<uint16_t>()[i] = saturate<uint16_t>(value);
      break;
    case DType::kUInt32:
      t.data<uint32_t>()[i] = saturate<uint32_t>(value);
      break;
    case DType::kUInt64:
      t.data<uint64_t>()[i] = saturate<uint64_t>(value);
      break;
    case DType::kBool:
      t.data<uint8_t>()[i] = value != 0.0 ? 1 : 0;
      break;
    default:
      fail(ErrorCode::kInternal, "conformance case: no setter for dtype ", dtype_name(t.dtype));
  }
}

void random_values(HostTensor& t, std::mt19937& rng) {
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  std::uniform_int_distribution<int> small(1, 5);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float r = real(rng);
    if (t.dtype == DType::kBool) {
      set_element(t, i, small(rng) > 3 ? 1.0 : 0.0);
    } else if (is_integer_dtype(t.dtype)) {
      set_element(t, i, small(rng));
    } else {
      set_element(t, i, r);
    }
  }
}

Fill values(std::vector<double> v) {
  return [v = std::move(v)](HostTensor& t, std::mt19937&) {
    KILN_ASSERT(static_cast<int64_t>(v.size()) == t.numel(), "conformance case: ", v.size(),
                " values for ", t.numel(), " elements");
    for (size_t i = 0; i < v.size(); ++i) set_element(t, static_cast<int64_t>(i), v[i]);
  };
}

Fill uniform(double low, double high) {
  return [low, high](HostTensor& t, std::mt19937& rng) {
    if (is_integer_dtype(t.dtype) || t.dtype == DType::kBool) {
      std::uniform_int_distribution<int64_t> dist(static_cast<int64_t>(std::ceil(low)),
                                                  static_cast<int64_t>(std::floor(high)));
      for (int64_t i = 0; i < t.numel(); ++i) set_element(t, i, static_cast<double>(dist(rng)));
    } else {
      std::uniform_real_distribution<double> dist(low, high);
      for (int64_t i = 0; i < t.numel(); ++i) set_element(t, i, dist(rng));
    }
  };
}

Fill distinct_index_tuples(std::vector<int64_t> bounds) {
  return [bounds = std::move(bounds)](HostTensor& t, std::mt19937& rng) {
    const auto k = static_cast<int64_t>(bounds.size());
    KILN_ASSERT(!t.shape.empty() && t.shape.back() == k, "conformance case: index tuples of ", k,
                " entries for shape ", shape_to_string(t.shape));
    const int64_t rows = t.numel() / k;
    const int64_t space =
        std::accumulate(bounds.begin(), bounds.end(), int64_t{1}, std::multiplies<>());
    KILN_ASSERT(rows <= space, "conformance case: ", rows, " distinct tuples asked of ", space);
    std::vector<int64_t> flat(static_cast<size_t>(space));
    std::iota(flat.begin(), flat.end(), int64_t{0});
    std::shuffle(flat.begin(), flat.end(), rng);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t rest = flat[static_cast<size_t>(r)];
      for (int64_t j = k - 1; j >= 0; --j) {
        set_element(t, r * k + j, static_cast<double>(rest % bounds[static_cast<size_t>(j)]));
        rest /= bounds[static_cast<size_t>(j)];
      }
    }
  };
}

AttributeMap attrs(std::initializer_list<std::pair<std::string, Attribute>> items) {
  AttributeMap map;
  for (const auto& [name, value] : items) map.set(name, value);
  return map;
}

bool register_op_cases(const std::string& op, std::vector<OpCase> cases) {
  auto [it, inserted] = case_table().emplace(op, std::move(cases));
  if (!inserted) duplicates().push_back(op);
  return inserted;
}

const std::map<std::string, std::vector<OpCase>>& registered_op_cases() {
  return case_table();
}

const std::vector<std::string>& duplicate_case_registrations() {
  return duplicates();
}

}  // namespace kiln::conformance
