// Node/layer attributes: a small ordered name -> value map with typed, error-reporting getters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/host_tensor.hpp"

namespace kiln {

struct Attribute {
  // The numeric values are stored in engine files: never renumber.
  enum class Kind : uint8_t { kInt = 1, kFloat = 2, kString = 3, kInts = 4, kFloats = 5, kStrings = 6, kTensor = 7 };

  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0.0f;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  std::shared_ptr<const HostTensor> tensor;

  static Attribute of_int(int64_t v);
  static Attribute of_float(float v);
  static Attribute of_string(std::string v);
  static Attribute of_ints(std::vector<int64_t> v);
  static Attribute of_floats(std::vector<float> v);
  static Attribute of_strings(std::vector<std::string> v);
  static Attribute of_tensor(std::shared_ptr<const HostTensor> v);

  bool operator==(const Attribute& other) const;
};

std::string_view attribute_kind_name(Attribute::Kind kind);

// Insertion-ordered; names are unique (set() replaces). Getters throw kiln::Error
// (kInvalidArgument) naming the attribute and the expected vs actual kind when the kind is wrong;
// the *_or variants return the default when the attribute is absent.
class AttributeMap {
 public:
  void set(std::string name, Attribute value);
  bool has(std::string_view name) const;
  void erase(std::string_view name);
  const Attribute* find(std::string_view name) const;
  // Throws kInvalidArgument "missing required attribute 'name'" when absent.
  const Attribute& get(std::string_view name) const;

  int64_t get_int(std::string_view name) const;
  int64_t get_int_or(std::string_view name, int64_t fallback) const;
  float get_float(std::string_view name) const;
  float get_float_or(std::string_view name, float fallback) const;
  const std::string& get_string(std::string_view name) const;
  std::string get_string_or(std::string_view name, std::string fallback) const;
  const std::vector<int64_t>& get_ints(std::string_view name) const;
  std::vector<int64_t> get_ints_or(std::string_view name, std::vector<int64_t> fallback) const;
  const std::vector<float>& get_floats(std::string_view name) const;
  const std::shared_ptr<const HostTensor>& get_tensor(std::string_view name) const;

  const std::vector<std::pair<std::string, Attribute>>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  bool operator==(const AttributeMap& other) const { return items_ == other.items_; }

 private:
  const Attribute& get_kind(std::string_view name, Attribute::Kind kind) const;
  std::vector<std::pair<std::string, Attribute>> items_;
};

}  // namespace kiln
