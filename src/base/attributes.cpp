#include "base/attributes.hpp"

#include "base/error.hpp"

namespace kiln {

Attribute Attribute::of_int(int64_t v) {
  Attribute a;
  a.kind = Kind::kInt;
  a.i = v;
  return a;
}
Attribute Attribute::of_float(float v) {
  Attribute a;
  a.kind = Kind::kFloat;
  a.f = v;
  return a;
}
Attribute Attribute::of_string(std::string v) {
  Attribute a;
  a.kind = Kind::kString;
  a.s = std::move(v);
  return a;
}
Attribute Attribute::of_ints(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Kind::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute Attribute::of_floats(std::vector<float> v) {
  Attribute a;
  a.kind = Kind::kFloats;
  a.floats = std::move(v);
  return a;
}
Attribute Attribute::of_strings(std::vector<std::string> v) {
  Attribute a;
  a.kind = Kind::kStrings;
  a.strings = std::move(v);
  return a;
}
Attribute Attribute::of_tensor(std::shared_ptr<const HostTensor> v) {
  Attribute a;
  a.kind = Kind::kTensor;
  a.tensor = std::move(v);
  return a;
}

bool Attribute::operator==(const Attribute& o) const {
  if (kind != o.kind) return false;
  switch (kind) {
    case Kind::kInt: return i == o.i;
    case Kind::kFloat: return f == o.f;
    case Kind::kString: return s == o.s;
    case Kind::kInts: return ints == o.ints;
    case Kind::kFloats: return floats == o.floats;
    case Kind::kStrings: return strings == o.strings;
    case Kind::kTensor:
      if (!tensor || !o.tensor) return tensor == o.tensor;
      return tensor->dtype == o.tensor->dtype && tensor->shape == o.tensor->shape &&
             tensor->bytes == o.tensor->bytes;
  }
  return false;
}

std::string_view attribute_kind_name(Attribute::Kind kind) {
  switch (kind) {
    case Attribute::Kind::kInt: return "int";
    case Attribute::Kind::kFloat: return "float";
    case Attribute::Kind::kString: return "string";
    case Attribute::Kind::kInts: return "ints";
    case Attribute::Kind::kFloats: return "floats";
    case Attribute::Kind::kStrings: return "strings";
    case Attribute::Kind::kTensor: return "tensor";
  }
  return "unknown";
}

void AttributeMap::set(std::string name, Attribute value) {
  for (auto& [key, existing] : items_) {
    if (key == name) {
      existing = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(name), std::move(value));
}

bool AttributeMap::has(std::string_view name) const { return find(name) != nullptr; }

void AttributeMap::erase(std::string_view name) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first == name) {
      items_.erase(it);
      return;
    }
  }
}

const Attribute* AttributeMap::find(std::string_view name) const {
  for (const auto& [key, value] : items_)
    if (key == name) return &value;
  return nullptr;
}

const Attribute& AttributeMap::get(std::string_view name) const {
  const Attribute* a = find(name);
  if (!a) fail(ErrorCode::kInvalidArgument, "missing required attribute '", name, "'");
  return *a;
}

const Attribute& AttributeMap::get_kind(std::string_view name, Attribute::Kind kind) const {
  const Attribute& a = get(name);
  if (a.kind != kind) {
    fail(ErrorCode::kInvalidArgument, "attribute '", name, "' should be of kind ",
         attribute_kind_name(kind), ", got ", attribute_kind_name(a.kind));
  }
  return a;
}

int64_t AttributeMap::get_int(std::string_view name) const { return get_kind(name, Attribute::Kind::kInt).i; }
int64_t AttributeMap::get_int_or(std::string_view name, int64_t fallback) const {
  return has(name) ? get_int(name) : fallback;
}
float AttributeMap::get_float(std::string_view name) const {
  return get_kind(name, Attribute::Kind::kFloat).f;
}
float AttributeMap::get_float_or(std::string_view name, float fallback) const {
  return has(name) ? get_float(name) : fallback;
}
const std::string& AttributeMap::get_string(std::string_view name) const {
  return get_kind(name, Attribute::Kind::kString).s;
}
std::string AttributeMap::get_string_or(std::string_view name, std::string fallback) const {
  return has(name) ? get_string(name) : fallback;
}
const std::vector<int64_t>& AttributeMap::get_ints(std::string_view name) const {
  return get_kind(name, Attribute::Kind::kInts).ints;
}
std::vector<int64_t> AttributeMap::get_ints_or(std::string_view name, std::vector<int64_t> fallback) const {
  return has(name) ? get_ints(name) : fallback;
}
const std::vector<float>& AttributeMap::get_floats(std::string_view name) const {
  return get_kind(name, Attribute::Kind::kFloats).floats;
}
const std::shared_ptr<const HostTensor>& AttributeMap::get_tensor(std::string_view name) const {
  return get_kind(name, Attribute::Kind::kTensor).tensor;
}

}  // namespace kiln
