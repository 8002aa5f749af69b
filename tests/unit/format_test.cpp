// Engine file format: round trips, zero-copy weights and a verifier that treats the bytes as
// hostile (truncation, corruption, crafted counts, version rules).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/attributes.hpp"
#include "format/checksum.hpp"
#include "format/engine_container.hpp"
#include "format/engine_io.hpp"
#include "format/engine_model.hpp"
#include "format/engine_schema.hpp"
#include "format/wire_format.hpp"
#include "format_test_support.hpp"

namespace kiln::format {
namespace {

using namespace format_testing;

// ---- tests --------------------------------------------------------------------------------------

TEST(FormatTestChecksum, MatchesReferenceXxh64Vectors) {
  // Expected values computed with the reference xxHash library (python-xxhash 3.x).
  auto bytes_of = [](std::string_view text) { return Bytes(text.begin(), text.end()); };
  EXPECT_EQ(xxh64(Bytes{}), 0xef46db3751d8e999ULL);
  EXPECT_EQ(xxh64(bytes_of("a")), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(xxh64(bytes_of("abc")), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(xxh64(bytes_of("abc"), 0x1234567890abcdefULL), 0x735174907585e19dULL);
  const Bytes text37 = bytes_of("0123456789abcdefghijklmnopqrstuvwxyz0");
  EXPECT_EQ(xxh64(text37), 0x38d93cca53eee0f0ULL);
  EXPECT_EQ(xxh64(text37, 0x1234567890abcdefULL), 0x47ca0f468cfc5c74ULL);
  Bytes long_input;
  for (int r = 0; r < 3; ++r)
    for (int i = 0; i < 256; ++i) long_input.push_back(static_cast<uint8_t>(i));
  for (char c : std::string("kiln")) long_input.push_back(static_cast<uint8_t>(c));
  EXPECT_EQ(xxh64(long_input), 0x676d284efb0c502bULL);
  EXPECT_EQ(xxh64(long_input, 0x1234567890abcdefULL), 0xee0e5e5e185a2219ULL);
}

TEST(FormatTestRoundTrip, EveryFieldKindSurvives) {
  const EngineModel original = make_full_model();
  const Bytes file = write_engine(original);
  const EngineModel back = read(file);
  EXPECT_EQ(back.version.major, kFormatMajor);
  EXPECT_EQ(back.version.minor, kFormatMinor);
  expect_models_equal(original, back);
  // The attribute tensor's contents, not just its presence.
  const auto& value = back.layers[0].attrs.get_tensor("value");
  ASSERT_TRUE(value);
  EXPECT_EQ(value->dtype, DType::kInt32);
  EXPECT_EQ(value->shape, (Shape{2, 3}));
  EXPECT_EQ(value->data<int32_t>()[5], 43);
  EXPECT_EQ(back.layers[0].attrs.get_float("alpha"), -0.25f);
  EXPECT_TRUE(std::signbit(back.layers[0].attrs.get_floats("scales")[2]));
  // Writing what was read gives the same bytes (the encoding is deterministic).
  EXPECT_EQ(write_engine(back), file);
}

TEST(FormatTestRoundTrip, WriterStampsCurrentVersion) {
  EngineModel model = make_small_model();
  model.version = FormatVersion{7, 9};
  const Bytes file = write_engine(model);
  const EngineHeader header = read_engine_header(file, "x");
  EXPECT_EQ(header.version.major, kFormatMajor);
  EXPECT_EQ(header.version.minor, kFormatMinor);
  EXPECT_EQ(header.producer, "kiln small");
  EXPECT_EQ(header.file_size, file.size());
}

TEST(FormatTestRoundTrip, EmptyModelAndLongProducer) {
  EngineModel model;
  model.producer = std::string(100, 'p');  // longer than the header's 32-byte producer field
  const Bytes file = write_engine(model);
  const EngineModel back = read(file);
  expect_models_equal(model, back);
  EXPECT_EQ(read_engine_header(file, "x").producer, std::string(32, 'p'));
}

TEST(FormatTestRoundTrip, ReadEngineFileAndMissingFile) {
  const EngineModel original = make_full_model();
  const auto path = std::filesystem::temp_directory_path() /
                    ("kiln_format_test_" + std::to_string(::getpid()) + ".engine");
  {
    const Bytes file = write_engine(original);
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(file.data()),
              static_cast<std::streamsize>(file.size()));
  }
  const EngineModel back = read_engine_file(path.string());
  std::filesystem::remove(path);
  expect_models_equal(original, back);
  try {
    read_engine_file(path.string());
    FAIL() << "expected kNotFound";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

TEST(FormatTestWeights, AlignedAndZeroCopy) {
  const EngineModel original = make_full_model();
  auto bytes = share(write_engine(original));
  const uint8_t* begin = bytes->data();
  const uint8_t* end = begin + bytes->size();
  EngineModel model = read_engine(bytes, "mem");
  ASSERT_EQ(model.weights.size(), original.weights.size());
  EXPECT_GE(model.weights.data(), begin);
  EXPECT_LE(model.weights.data() + model.weights.size(), end);
  EXPECT_EQ((model.weights.data() - begin) % kWeightAlignment, 0u);
  for (const TensorDesc& t : model.tensors) {
    if (t.kind != TensorKind::kWeight) continue;
    EXPECT_EQ((model.weights.data() + t.weight_offset - begin) % kWeightAlignment, 0u) << t.name;
  }
  // The model keeps the bytes alive on its own.
  std::weak_ptr<const Bytes> watch = bytes;
  bytes.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(model.weights[65], original.weights[65]);
  model = EngineModel{};
  EXPECT_TRUE(watch.expired());
}

TEST(FormatTestWriter, RejectsInconsistentModels) {
  auto expect_invalid = [](const std::function<void(EngineModel&)>& mutate, const char* needle) {
    EngineModel model = make_full_model();
    mutate(model);
    try {
      write_engine(model);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_invalid([](EngineModel& m) { m.layers[1].inputs[0] = 6; }, "tensor index 6");
  expect_invalid([](EngineModel& m) { m.layers[1].outputs[0] = -1; }, "tensor index -1");
  expect_invalid([](EngineModel& m) { m.layers[0].outputs[0] = 1; }, "of kind weight");
  expect_invalid([](EngineModel& m) { m.tensors[2].weight_offset = 32; }, "not a multiple of 64");
  expect_invalid([](EngineModel& m) { m.tensors[2].weight_offset = 192; }, "weights blob");
  expect_invalid([](EngineModel& m) { m.tensors[1].weight_size = 20; }, "does not match");
  expect_invalid([](EngineModel& m) { m.tensors[3].shape = {-2}; }, "dimension 0 is -2");
  expect_invalid([](EngineModel& m) { m.tensors[3].shape = Shape(17, 1); }, "rank 17");
  expect_invalid([](EngineModel& m) { m.tensors[0].dtype = static_cast<DType>(8); }, "dtype");  // STRING
  expect_invalid([](EngineModel& m) { m.tensors[0].dtype = static_cast<DType>(14); }, "dtype");  // COMPLEX64
  expect_invalid([](EngineModel& m) { m.memory_plan.offsets.pop_back(); }, "one per tensor");
  expect_invalid([](EngineModel& m) { m.memory_plan.alignment = 48; }, "power of two");
  expect_invalid([](EngineModel& m) { m.inputs[0].ranges[0] = {5, 4, 8}; }, "min <= opt");
  expect_invalid([](EngineModel& m) { m.inputs[0].ranges.pop_back(); }, "rank-3");
  expect_invalid([](EngineModel& m) { m.inputs.clear(); }, "exactly one input binding");
  expect_invalid([](EngineModel& m) { m.plugins[0].name.clear(); }, "empty name");
  expect_invalid(
      [](EngineModel& m) {
        auto bad = std::make_shared<HostTensor>(DType::kFloat32, Shape{2});
        bad->bytes.resize(3);
        m.layers[1].attrs.set("bad", Attribute::of_tensor(bad));
      },
      "attribute 'bad'");
}

TEST(FormatTestVerifier, RejectsEveryTruncation) {
  const Bytes file = write_engine(make_small_model());
  ASSERT_NO_THROW(read(file));
  for (size_t length = 0; length < file.size(); ++length) {
    const Bytes prefix(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(length));
    const Error e = read_error(prefix);
    ASSERT_EQ(e.code(), ErrorCode::kCorruptFile) << "prefix " << length << ": " << e.what();
    ASSERT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  // The message gives both sizes.
  const Bytes half(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(file.size() / 2));
  const std::string message = read_error(half).what();
  EXPECT_NE(message.find("header says " + std::to_string(file.size()) + " bytes, got " +
                         std::to_string(half.size())),
            std::string::npos)
      << message;
}

TEST(FormatTestVerifier, RejectsEverySingleByteFlip) {
  // The checksum covers every byte but its own field, and a change to that field is a mismatch:
  // so every flip anywhere must be reported, never crash and never pass.
  const Bytes file = write_engine(make_small_model());
  for (size_t pos = 0; pos < file.size(); ++pos) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      Bytes flipped = file;
      flipped[pos] ^= mask;
      const Error e = read_error(flipped);
      ASSERT_TRUE(e.code() == ErrorCode::kCorruptFile || e.code() == ErrorCode::kIncompatible)
          << "byte " << pos << " mask " << int(mask) << ": " << e.what();
    }
  }
}

TEST(FormatTestVerifier, SurvivesCorruptionBehindAValidChecksum) {
  // A hostile file can carry a correct checksum: flip every byte after the header, re-stamp the
  // checksum, and require either a clean kiln::Error or a model that still verifies. The full
  // model exercises every wire type.
  const Bytes file = write_engine(make_full_model());
  size_t accepted = 0;
  for (size_t pos = s::kHeaderSize; pos < file.size(); ++pos) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x10}, uint8_t{0x80}, uint8_t{0xff}}) {
      Bytes flipped = file;
      flipped[pos] ^= mask;
      restamp_checksum(flipped);
      try {
        const EngineModel model = read(flipped);
        ++accepted;  // e.g. a changed character in a name: still a consistent engine
        EXPECT_NO_THROW(write_engine(model)) << "byte " << pos << " accepted but inconsistent";
      } catch (const Error& e) {
        ASSERT_TRUE(e.code() == ErrorCode::kCorruptFile || e.code() == ErrorCode::kIncompatible)
            << "byte " << pos << ": " << e.what();
        ASSERT_NE(std::string(e.what()).find("test.engine"), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(accepted, 0u);  // the loop did reach bytes whose change is legitimate
}

TEST(FormatTestVerifier, RejectsWrongMagic) {
  Bytes file = write_engine(make_small_model());
  file[3] = 'X';
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  EXPECT_NE(std::string(e.what()).find("not a kiln engine file: test.engine"), std::string::npos)
      << e.what();
  const Error onnx = read_error(Bytes{0x08, 0x07, 0x12, 0x04, 'k', 'i', 'l', 'n'});
  EXPECT_EQ(onnx.code(), ErrorCode::kCorruptFile);
}

TEST(FormatTestVerifier, RejectsTrailingBytesAndChecksumMismatch) {
  Bytes file = write_engine(make_small_model());
  Bytes longer = file;
  longer.push_back(0);
  EXPECT_NE(std::string(read_error(longer).what()).find("trailing"), std::string::npos);
  file[file.size() - 1] ^= 0x40;  // inside the weights blob
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
}

TEST(FormatTestVerifier, RejectsOversizedSectionCountWithoutAllocating) {
  Bytes file = write_engine(make_small_model());
  store_le<uint32_t>(file.data() + s::kOffsetSectionCount, 1u << 31);
  restamp_checksum(file);
  const auto start = std::chrono::steady_clock::now();
  const Error e = read_error(file);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  EXPECT_NE(std::string(e.what()).find("claims 2147483648 entries"), std::string::npos) << e.what();
  EXPECT_LT(elapsed, std::chrono::milliseconds(100));
}

TEST(FormatTestVerifier, RejectsOversizedListCountWithoutAllocating) {
  Bytes file = write_engine(make_full_model());
  const SectionEntry tensors = find_section(file, s::SectionId::kTensors);
  // The section is one kList field: 8-byte field header, then the item count.
  ASSERT_EQ(load_le<uint16_t>(file.data() + tensors.offset), s::tensors::kTensors.tag);
  store_le<uint32_t>(file.data() + tensors.offset + s::kFieldHeaderSize, 1u << 31);
  restamp_checksum(file);
  const auto start = std::chrono::steady_clock::now();
  const Error e = read_error(file);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  const std::string message = e.what();
  EXPECT_NE(message.find("claims 2147483648 items"), std::string::npos) << message;
  EXPECT_NE(message.find("section 'tensors'"), std::string::npos) << message;
  EXPECT_LT(elapsed, std::chrono::milliseconds(100));
}

TEST(FormatTestVerifier, RejectsOversizedFieldLength) {
  Bytes file = write_engine(make_full_model());
  const SectionEntry info = find_section(file, s::SectionId::kInfo);
  store_le<uint32_t>(file.data() + info.offset + 4, 0xffffffffu);
  restamp_checksum(file);
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  EXPECT_NE(std::string(e.what()).find("claims 4294967295 bytes"), std::string::npos) << e.what();
}

TEST(FormatTestVerifier, RejectsSectionOutsideTheFile) {
  Bytes file = write_engine(make_small_model());
  // Entry 0's size: far past the end of the file.
  store_le<uint64_t>(file.data() + s::kHeaderSize + 16, ~uint64_t{0} - 8);
  restamp_checksum(file);
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kCorruptFile);
  EXPECT_NE(std::string(e.what()).find("outside the file"), std::string::npos) << e.what();
}

TEST(FormatTestVersion, NewerMajorIsIncompatible) {
  Bytes file = write_engine(make_small_model());
  store_le<uint16_t>(file.data() + s::kOffsetMajor, kFormatMajor + 1);
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kIncompatible);
  const std::string message = e.what();
  const std::string newer = std::to_string(kFormatMajor + 1) + "." + std::to_string(kFormatMinor);
  const std::string ours = std::to_string(kFormatMajor) + "." + std::to_string(kFormatMinor);
  EXPECT_NE(message.find("engine format " + newer), std::string::npos) << message;
  EXPECT_NE(message.find("newer than this runtime's " + ours), std::string::npos) << message;
  EXPECT_NE(message.find("kiln small"), std::string::npos) << message;  // the producer
  // The header peek still reports what it is.
  EXPECT_EQ(read_engine_header(file, "x").version.major, kFormatMajor + 1);
}

TEST(FormatTestVersion, OlderUnsupportedMajorIsIncompatible) {
  Bytes file = write_engine(make_small_model());
  store_le<uint16_t>(file.data() + s::kOffsetMajor, 0);
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kIncompatible);
  EXPECT_NE(std::string(e.what()).find("older"), std::string::npos) << e.what();
}

TEST(FormatTestVersion, UnknownRequiredFlagIsIncompatible) {
  Bytes file = write_engine(make_small_model());
  store_le<uint32_t>(file.data() + s::kOffsetFlags, 0x4);
  restamp_checksum(file);
  const Error e = read_error(file);
  EXPECT_EQ(e.code(), ErrorCode::kIncompatible);
  EXPECT_NE(std::string(e.what()).find("flags 0x4"), std::string::npos) << e.what();
}

TEST(FormatTestVersion, QkvLayoutAttentionSetsItsRequiredFeatureBitWhichThisReaderKnows) {
  // An engine whose attention reads QKV in another order is refused by readers that predate the
  // attribute (they know no flag bits) instead of being misread; this reader takes it.
  EngineModel model = make_small_model();
  model.layers[0].attrs.set("qkv_layout", Attribute::of_string("SBTHD"));
  EXPECT_EQ(load_le<uint32_t>(write_engine(model).data() + s::kOffsetFlags), 0u);  // not attention
  model.layers[0].op = "FusedAttention";
  const Bytes file = write_engine(model);
  EXPECT_EQ(load_le<uint32_t>(file.data() + s::kOffsetFlags), s::kFlagAttentionQkvLayout);
  EXPECT_EQ(read(file).layers[0].attrs.get_string_or("qkv_layout", ""), "SBTHD");
  // The default order needs no flag: such engines stay readable by every 1.x reader.
  model.layers[0].attrs.set("qkv_layout", Attribute::of_string("BSTHD"));
  EXPECT_EQ(load_le<uint32_t>(write_engine(model).data() + s::kOffsetFlags), 0u);
  // A reader from before the flag knew no bits and refuses it, as this reader refuses a bit it
  // does not know.
  Bytes unknown = file;
  store_le<uint32_t>(unknown.data() + s::kOffsetFlags, s::kFlagAttentionQkvLayout << 1);
  restamp_checksum(unknown);
  EXPECT_EQ(read_error(unknown).code(), ErrorCode::kIncompatible);
}

TEST(FormatTestVersion, NewerMinorWithUnknownSectionAndFieldsIsAccepted) {
  const EngineModel original = make_full_model();
  const Bytes file = write_engine(original);
  const Bytes extra = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3};
  Bytes newer = with_section(file, 0x7777, extra, FormatVersion{kFormatMajor, kFormatMinor + 3});
  // And an unknown field (unknown tag and wire type) appended to the info message.
  const SectionEntry info = find_section(newer, s::SectionId::kInfo);
  Bytes info_body(newer.begin() + static_cast<std::ptrdiff_t>(info.offset),
                  newer.begin() + static_cast<std::ptrdiff_t>(info.offset + info.size));
  const uint8_t unknown_field[] = {40, 0, 99, 0, 3, 0, 0, 0, 'n', 'e', 'w'};
  info_body.insert(info_body.end(), std::begin(unknown_field), std::end(unknown_field));
  newer = with_section(newer, static_cast<uint32_t>(s::SectionId::kInfo), info_body,
                       FormatVersion{kFormatMajor, kFormatMinor + 3});

  const EngineModel back = read(newer);
  EXPECT_EQ(back.version.minor, kFormatMinor + 3);
  EXPECT_EQ(back.producer, original.producer);
  expect_models_equal(original, back);
}

// ---- hand-made sections with a valid checksum: the semantic checks of the reader --------------

void write_tensor(WireWriter& w, const TensorDesc& t) {
  w.string_field(s::tensor::kName, t.name);
  w.int_field(s::tensor::kDType, static_cast<int64_t>(t.dtype));
  w.ints_field(s::tensor::kShape, t.shape);
  w.int_field(s::tensor::kKind, static_cast<int64_t>(t.kind));
  if (t.kind == TensorKind::kWeight) {
    w.int_field(s::tensor::kWeightOffset, static_cast<int64_t>(t.weight_offset));
    w.int_field(s::tensor::kWeightSize, static_cast<int64_t>(t.weight_size));
  }
}

TEST(FormatTestVerifier, RejectsBadTensorDescriptors) {
  const EngineModel model = make_small_model();
  const Bytes file = write_engine(model);
  auto tensors_with = [&](size_t index, const std::function<void(WireWriter&)>& write_bad) {
    return with_section(file, s::SectionId::kTensors, encode([&](WireWriter& w) {
                          w.list_field(s::tensors::kTensors, std::vector<size_t>{0, 1, 2},
                                       [&](WireWriter& tw, size_t i) {
                                         if (i == index) {
                                           write_bad(tw);
                                         } else {
                                           write_tensor(tw, model.tensors[i]);
                                         }
                                       });
                        }));
  };
  auto modified = [&](size_t index, const std::function<void(TensorDesc&)>& mutate) {
    return tensors_with(index, [&, index](WireWriter& w) {
      TensorDesc t = model.tensors[index];
      mutate(t);
      write_tensor(w, t);
    });
  };
  expect_corrupt(modified(1, [](TensorDesc& t) { t.dtype = static_cast<DType>(8); }),
                 {"test.engine", "section 'tensors', tensor 1", "dtype", "8"});
  expect_corrupt(modified(1, [](TensorDesc& t) { t.dtype = static_cast<DType>(14); }),
                 {"test.engine", "section 'tensors', tensor 1", "dtype", "14"});
  expect_corrupt(modified(1, [](TensorDesc& t) { t.weight_offset = 4096; }),
                 {"tensor 1 'w'", "weight range", "8-byte weights blob"});
  expect_corrupt(modified(1, [](TensorDesc& t) { t.weight_size = 4; }), {"does not match"});
  expect_corrupt(modified(1,
                          [](TensorDesc& t) {
                            t.shape = {1LL << 62, 1LL << 62};
                          }),
                 {"overflowing"});
  expect_corrupt(modified(0, [](TensorDesc& t) { t.shape = {-5, 2}; }), {"dimension 0 is -5"});
  expect_corrupt(modified(0, [](TensorDesc& t) { t.shape = Shape(40, 1); }), {"rank 40"});
  expect_corrupt(tensors_with(2,
                              [](WireWriter& w) {
                                w.int_field(s::tensor::kDType, 1);
                                w.int_field(s::tensor::kKind, 9);
                              }),
                 {"tensor 2", "invalid tensor kind 9"});
  expect_corrupt(tensors_with(2, [](WireWriter& w) { w.int_field(s::tensor::kDType, 1); }),
                 {"tensor 2", "required field 'kind'"});
  expect_corrupt(tensors_with(2,
                              [](WireWriter& w) {
                                w.int_field(s::tensor::kDType, 1);
                                w.int_field(s::tensor::kDType, 1);
                              }),
                 {"'dtype'", "more than once"});
  expect_corrupt(
      tensors_with(
          2,
          [](WireWriter& w) {
            w.string_field(s::Field{s::tensor::kDType.tag, s::Wire::kBytes, "dtype"}, "f32");
          }),
      {"'dtype'", "expected wire type int, got bytes"});
}

TEST(FormatTestVerifier, RejectsBadLayersBindingsAndPlan) {
  const EngineModel model = make_small_model();
  const Bytes file = write_engine(model);
  auto layers_with = [&](const std::vector<int64_t>& inputs, const std::vector<int64_t>& outputs,
                         bool attributes_as_message = false) {
    return with_section(
        file, s::SectionId::kLayers, encode([&](WireWriter& w) {
          w.list_field(s::layers::kLayers, std::vector<int>{0}, [&](WireWriter& lw, int) {
            lw.string_field(s::layer::kName, "n");
            lw.string_field(s::layer::kOp, "Mul");
            lw.ints_field(s::layer::kInputs, inputs);
            lw.ints_field(s::layer::kOutputs, outputs);
            if (attributes_as_message) {
              // The right tag with the wrong wire type.
              const s::Field wrong{s::layer::kAttributes.tag, s::Wire::kMessage, "attributes"};
              lw.message_field(wrong, [](WireWriter&) {});
            }
          });
        }));
  };
  ASSERT_NO_THROW(read(layers_with({0, 1}, {2})));
  expect_corrupt(layers_with({0, 3}, {2}), {"layer 0 'n', input 1", "tensor index 3"});
  expect_corrupt(layers_with({0, -1}, {-1}), {"'outputs'", "-1"});
  expect_corrupt(layers_with({0, -2}, {2}), {"'inputs'", "-2"});
  expect_corrupt(layers_with({0, 1LL << 40}, {2}), {"'inputs'", "1099511627776"});
  expect_corrupt(layers_with({0, 1}, {2}, true),
                 {"'attributes'", "expected wire type list, got message"});

  auto attribute_section = [&](const std::function<void(WireWriter&)>& write_attr) {
    return with_section(file, s::SectionId::kLayers, encode([&](WireWriter& w) {
                          w.list_field(
                              s::layers::kLayers, std::vector<int>{0}, [&](WireWriter& lw, int) {
                                lw.string_field(s::layer::kOp, "Mul");
                                lw.ints_field(s::layer::kInputs, std::vector<int64_t>{0, 1});
                                lw.ints_field(s::layer::kOutputs, std::vector<int64_t>{2});
                                lw.list_field(s::layer::kAttributes, std::vector<int>{0},
                                              [&](WireWriter& aw, int) { write_attr(aw); });
                              });
                        }));
  };
  expect_corrupt(attribute_section([](WireWriter& w) {
                   w.string_field(s::attribute::kName, "a");
                   w.int_field(s::attribute::kKind, 12);
                 }),
                 {"attribute 0", "invalid attribute kind 12"});
  expect_corrupt(attribute_section([](WireWriter& w) {
                   w.string_field(s::attribute::kName, "a");
                   w.int_field(s::attribute::kKind, 4);
                   w.f32_field(s::attribute::kFloat, 1.0f);
                 }),
                 {"attribute 'a' of kind ints needs a 'ints' value, got 'float'"});
  expect_corrupt(attribute_section([](WireWriter& w) {
                   w.string_field(s::attribute::kName, "t");
                   w.int_field(s::attribute::kKind, 7);
                   w.message_field(s::attribute::kTensor, [](WireWriter& tw) {
                     tw.int_field(s::attribute_tensor::kDType, 1);
                     tw.ints_field(s::attribute_tensor::kShape, std::vector<int64_t>{2, 2});
                     tw.bytes_field(s::attribute_tensor::kData, Bytes(12, 0));
                   });
                 }),
                 {"attribute 't'", "12 data bytes do not match float32 [2, 2]"});
  // A strings list whose count is impossible.
  expect_corrupt(attribute_section([](WireWriter& w) {
                   w.string_field(s::attribute::kName, "s");
                   w.int_field(s::attribute::kKind, 6);
                   // Raw bytes under the strings tag: a count of 2^31 - 1 and one short item.
                   w.bytes_field(s::Field{s::attribute::kStrings.tag, s::Wire::kList, "strings"},
                                 Bytes{0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 'a'});
                 }),
                 {"claims 2147483647 items"});

  // Bindings: a tensor index past the end, ranges that are not triples.
  auto bindings_with = [&](const std::function<void(WireWriter&)>& write_input) {
    return with_section(file, s::SectionId::kBindings, encode([&](WireWriter& w) {
                          w.list_field(s::bindings::kInputs, std::vector<int>{0},
                                       [&](WireWriter& bw, int) { write_input(bw); });
                        }));
  };
  expect_corrupt(bindings_with([](WireWriter& w) {
                   w.string_field(s::binding::kName, "x");
                   w.int_field(s::binding::kTensor, 3);
                 }),
                 {"input binding 0 'x'", "tensor index 3 is out of range (3 tensors)"});
  expect_corrupt(bindings_with([](WireWriter& w) {
                   w.string_field(s::binding::kName, "x");
                   w.int_field(s::binding::kTensor, 0);
                   w.ints_field(s::binding::kRanges, std::vector<int64_t>{1, 2, 4, 2});
                 }),
                 {"'ranges'", "triples"});

  // Memory plan vectors not sized to the tensors.
  expect_corrupt(
      with_section(file, s::SectionId::kMemoryPlan, encode([](WireWriter& w) {
                     w.int_field(s::memory_plan::kAlignment, 64);
                     w.ints_field(s::memory_plan::kOffsets, std::vector<int64_t>{-1, -1});
                   })),
      {"memory plan", "expected one per tensor (3)"});
  // A missing required section.
  expect_corrupt(without_section(file, s::SectionId::kLayers), {"required section 'layers'"});
}

// Python's Engine.metadata raised UnicodeDecodeError / JSONDecodeError on engines whose metadata
// section was mutated behind a valid checksum: the verifier now requires a UTF-8 JSON object.
TEST(FormatTestVerifier, RejectsMetadataThatIsNotAUtf8JsonObject) {
  const Bytes file = write_engine(make_small_model());
  const std::vector<std::pair<std::string, const char*>> cases = {
      {std::string("{\"a\": \"\xff\"}"), "ill-formed UTF-8"},
      {std::string("{\"a\": \"\xc0\xaf\"}"), "UTF-8"},      // overlong '/'
      {std::string("{\"a\": \"\xed\xa0\x80\"}"), "UTF-8"},  // an encoded surrogate
      {std::string("{\"\xe2\x82\": 1}"), "UTF-8"},          // truncated sequence in a key
      {std::string("{\"a\": 1"), "line 1"},
      {std::string("{} {}"), "line 1"},
      {std::string("{}\0", 3), "line 1"},  // C strings would end at the NUL
      {std::string("{\"a\": \"x\ty\"}"), "control character"},
      {std::string(""), "line 1"},
      {std::string("[1, 2]"), "expected a JSON object, got array"},
      {std::string("\"text\""), "expected a JSON object, got string"},
  };
  for (const auto& [metadata, needle] : cases) {
    SCOPED_TRACE(metadata);
    const auto* bytes = reinterpret_cast<const uint8_t*>(metadata.data());
    const Bytes bad = with_section(file, s::SectionId::kMetadata,
                                   std::span<const uint8_t>(bytes, metadata.size()));
    expect_corrupt(bad, {"test.engine: section 'metadata'", needle});
  }
  // The writer refuses what the reader would.
  EngineModel model = make_small_model();
  model.metadata_json = "{\"a\": \"\xff\"}";
  try {
    write_engine(model);
    ADD_FAILURE() << "the writer accepted metadata that is not UTF-8";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("section 'metadata'"), std::string::npos) << e.what();
  }
}

TEST(FormatTestRoundTrip, NonAsciiMetadataAndAbsentSectionAreAccepted) {
  EngineModel model = make_small_model();
  model.metadata_json = "{\"name\": \"caf\xc3\xa9 \xe2\x9c\x93\", \"emoji\": \"\xf0\x9f\x94\xa5\"}";
  EXPECT_EQ(read(write_engine(model)).metadata_json, model.metadata_json);
  // Files without a metadata section read as "{}".
  EXPECT_EQ(read(without_section(write_engine(make_small_model()), s::SectionId::kMetadata)).metadata_json, "{}");
}

// The C API hands binding names out as C strings: a NUL would cut them short.
TEST(FormatTestVerifier, RejectsBindingNamesWithANulByte) {
  for (const bool input : {true, false}) {
    EngineModel model = make_small_model();
    std::string& name = input ? model.inputs[0].name : model.outputs[0].name;
    name = "bind#name";
    Bytes file = write_engine(model);
    const std::string needle = "bind#name";
    const auto at = std::search(file.begin(), file.end(), needle.begin(), needle.end());
    ASSERT_NE(at, file.end());
    *(at + 4) = 0;
    restamp_checksum(file);
    expect_corrupt(file,
                   {input ? "input binding 0 'bind\\0name'" : "output binding 0 'bind\\0name'",
                    "contains a NUL byte"});
    name = std::string("bind\0name", 9);
    try {
      write_engine(model);
      ADD_FAILURE() << "the writer accepted a binding name with a NUL";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find("contains a NUL byte"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kiln::format
