// SPDX-License-Identifier: MIT
// Tests of the value codec (mp/serialization.hpp) and of code identity
// (mp/detail/code_identity.hpp), including a call decoded in a re-executed copy.
#include "mp/serialization.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mp/connection.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/testing/testing.hpp"

namespace {

enum class colour : std::uint8_t { red, green, blue };

struct point {  // trivially copyable, no serialize: copied as its bytes
  double x;
  double y;
  std::int32_t tag;
  friend bool operator==(const point&, const point&) = default;
};

struct person {  // has a cereal serialize function
  std::string name;
  int age = 0;
  std::vector<std::string> tags;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(name, age, tags);
  }
  friend bool operator==(const person&, const person&) = default;
};

template <class T>
T round_trip(const T& value) {
  return mp::decode<T>(mp::encode(value));
}

template <class T>
void expect_round_trip(const T& value) {
  EXPECT_EQ(round_trip(value), value);
}

TEST(serialization, round_trips_arithmetic_and_enums) {
  expect_round_trip(42);
  expect_round_trip(std::int64_t{-1} << 62);
  expect_round_trip(std::uint8_t{255});
  expect_round_trip(3.25);
  expect_round_trip(1.5f);
  expect_round_trip(true);
  expect_round_trip(false);
  expect_round_trip('x');
  expect_round_trip(colour::blue);
  expect_round_trip(std::numeric_limits<double>::infinity());
}

TEST(serialization, round_trips_standard_containers) {
  expect_round_trip(std::string{"hello, world"});
  expect_round_trip(std::string{});
  expect_round_trip(std::vector<int>{1, 2, 3});
  expect_round_trip(std::vector<std::string>{"a", "", "ccc"});
  expect_round_trip(std::vector<bool>{true, false, true});
  expect_round_trip(std::array<int, 3>{7, 8, 9});
  expect_round_trip(std::map<std::string, int>{{"one", 1}, {"two", 2}});
  expect_round_trip(std::unordered_map<int, std::string>{{1, "x"}, {2, "y"}});
  expect_round_trip(std::set<int>{5, 3, 1});
  expect_round_trip(std::pair<int, std::string>{1, "p"});
  expect_round_trip(std::tuple<int, double, std::string>{1, 2.5, "t"});
  expect_round_trip(std::optional<int>{});
  expect_round_trip(std::optional<std::string>{"set"});
  expect_round_trip(std::variant<int, std::string>{std::string{"v"}});
  expect_round_trip(std::variant<int, std::string>{17});
  expect_round_trip(std::chrono::milliseconds{1234});
  expect_round_trip(std::chrono::nanoseconds{-5});
}

TEST(serialization, round_trips_nested_and_user_types) {
  using nested = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string>>>>;
  expect_round_trip(nested{{"k", {std::nullopt, std::tuple{1, std::string{"a"}}}}, {"e", {}}});
  expect_round_trip(person{"Ada", 36, {"math", "engines"}});
  expect_round_trip(std::vector<person>{{"a", 1, {}}, {"b", 2, {"x"}}});
  expect_round_trip(point{1.0, -2.0, 3});
  expect_round_trip(std::vector<point>{{1, 2, 3}, {4, 5, 6}});
  expect_round_trip(std::variant<std::monostate, point, person>{point{0, 0, 1}});
}

TEST(serialization, copies_trivially_copyable_values_and_vectors_whole) {
  // Fingerprint, then the object's bytes: nothing per field.
  EXPECT_EQ(mp::encode(point{1, 2, 3}).size(), 8 + sizeof(point));
  // Fingerprint, count, then one block of elements.
  EXPECT_EQ(mp::encode(std::vector<point>(100)).size(), 8 + 8 + 100 * sizeof(point));
  EXPECT_EQ(mp::encode(std::vector<double>(1000)).size(), 8 + 8 + 1000 * sizeof(double));
  EXPECT_EQ(mp::encode(std::string(50, 'x')).size(), 8 + 8 + 50);
}

TEST(serialization, detects_decoding_into_another_type) {
  const mp::bytes data = mp::encode(42);
  try {
    mp::decode<std::string>(data);
    FAIL() << "decoded an int as a string";
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("type mismatch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mp::decode<std::int64_t>(data), mp::decode_error);
  EXPECT_THROW(mp::decode<std::vector<int>>(mp::encode(std::vector<long>{1})), mp::decode_error);
  EXPECT_THROW(mp::decode<person>(mp::encode(std::tuple<std::string, int>{"a", 1})),
               mp::decode_error);
}

TEST(serialization, every_truncation_throws_decode_error) {
  const person value{"Grace", 85, {"cobol", "navy", "compilers"}};
  const mp::bytes full = mp::encode(value);
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::span<const std::byte> prefix(full.data(), n);
    EXPECT_THROW(mp::decode<person>(prefix), mp::decode_error) << "prefix of " << n << " bytes";
  }
  EXPECT_EQ(mp::decode<person>(full), value);
}

TEST(serialization, trailing_bytes_are_an_error) {
  mp::bytes data = mp::encode(std::string{"abc"});
  data.push_back(std::byte{0});
  EXPECT_THROW(mp::decode<std::string>(data), mp::decode_error);
}

// Builds a message by hand: fingerprint of T, then raw fields.
template <class T>
mp::bytes forged(std::initializer_list<std::uint64_t> words) {
  std::vector<std::uint64_t> all{mp::type_fingerprint<T>};
  all.insert(all.end(), words);
  mp::bytes out(all.size() * 8);
  std::memcpy(out.data(), all.data(), out.size());
  return out;
}

TEST(serialization, hostile_lengths_throw_instead_of_allocating) {
  const std::uint64_t huge = std::uint64_t{1} << 62;
  EXPECT_THROW(mp::decode<std::vector<std::string>>(forged<std::vector<std::string>>({huge})),
               mp::decode_error);
  EXPECT_THROW(mp::decode<std::string>(forged<std::string>({huge, 0})), mp::decode_error);
  EXPECT_THROW(mp::decode<std::vector<double>>(forged<std::vector<double>>({huge})),
               mp::decode_error);
  EXPECT_THROW(mp::decode<std::vector<double>>(forged<std::vector<double>>({3, 0})),
               mp::decode_error);  // claims 24 bytes, has 8
  EXPECT_THROW((mp::decode<std::map<int, int>>(forged<std::map<int, int>>({huge}))),
               mp::decode_error);
  try {
    mp::decode<std::vector<std::string>>(forged<std::vector<std::string>>({huge}));
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("length field claims"), std::string::npos) << e.what();
  }
}

TEST(serialization, invalid_bool_and_variant_index_are_errors) {
  mp::bytes flag = mp::encode(true);
  flag.back() = std::byte{7};
  EXPECT_THROW(mp::decode<bool>(flag), mp::decode_error);

  using v = std::variant<int, std::string>;
  mp::bytes data = mp::encode(v{1});
  data[8] = std::byte{9};  // the index
  EXPECT_THROW(mp::decode<v>(data), mp::decode_error);
}

TEST(serialization, refuses_to_encode_handles_without_a_channel) {
  auto [a, b] = mp::pipe();
  EXPECT_THROW(mp::encode(a), mp::process_error);
}

TEST(serialization, serializable_concept_matches_the_codec) {
  static_assert(mp::serializable<int>);
  static_assert(mp::serializable<std::vector<std::map<std::string, point>>>);
  static_assert(mp::serializable<person>);
  static_assert(mp::serializable<mp::connection>);
  static_assert(!mp::serializable<int*>);
  static_assert(!mp::serializable<std::string_view>);  // a view: its bytes live elsewhere
  static_assert(!mp::serializable<std::span<const int>>);
  struct no_codec {
    std::string s;
  };
  static_assert(!mp::serializable<no_codec>);
}

// ---- code identity -------------------------------------------------------

int add(int a, int b) {
  return a + b;
}

void print_sum(int a, int b) {
  std::printf("sum=%d\n", a + b);
}

struct scaler {
  int factor = 1;
  int operator()(int x) const { return x * factor; }
  template <class Archive>
  void serialize(Archive& archive) {
    archive(factor);
  }
};

template <class Fn, class... Args>
mp::bytes encode_call(const Fn& fn, Args... args) {
  mp::detail::byte_buffer buffer;
  mp::detail::output_archive out(buffer);
  mp::detail::encode_call(out, fn, std::tuple<Args...>{args...});
  return {buffer.data(), buffer.data() + buffer.size()};
}

template <class R>
R invoke(const mp::bytes& payload) {
  mp::detail::byte_buffer result;
  mp::detail::invoke_call(payload, nullptr, &result);
  return mp::decode<R>(result.span());
}

TEST(code_identity, names_a_function_by_image_and_offset) {
  const auto ref = mp::detail::code_ref_of(reinterpret_cast<const void*>(&add));
  EXPECT_GT(ref.build_id_size, 0);
  EXPECT_EQ(mp::detail::resolve(ref), reinterpret_cast<const void*>(&add));
  auto other = ref;
  other.build_id[0] ^= 0xff;
  EXPECT_THROW(mp::detail::resolve(other), mp::process_error);
}

// Each thread remembers its last lookup: a reference it has seen must not let
// through one it has not.
TEST(code_identity, a_remembered_lookup_still_checks_every_reference) {
  const auto ref = mp::detail::code_ref_of(reinterpret_cast<const void*>(&add));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(mp::detail::resolve(ref), reinterpret_cast<const void*>(&add));
  auto outside = ref;
  outside.offset = std::numeric_limits<std::uint64_t>::max() - 4096;
  EXPECT_THROW(mp::detail::resolve(outside), mp::decode_error);
  auto next_door = ref;
  next_door.offset += 1u << 30;  // same image, past its code
  EXPECT_THROW(mp::detail::resolve(next_door), mp::decode_error);
  auto other = ref;
  other.build_id[0] ^= 0xff;
  EXPECT_THROW(mp::detail::resolve(other), mp::process_error);
  EXPECT_EQ(mp::detail::resolve(ref), reinterpret_cast<const void*>(&add));
  // Data of the same image is named, but names no code.
  static int datum = 0;
  const auto data_ref = mp::detail::code_ref_of(&datum);
  EXPECT_EQ(data_ref.build_id, ref.build_id);
  EXPECT_THROW(mp::detail::resolve(data_ref), mp::decode_error);
  EXPECT_EQ(mp::detail::code_ref_of(reinterpret_cast<const void*>(&add)), ref);
}

TEST(code_identity, runs_function_pointers_lambdas_and_serializable_functors) {
  EXPECT_EQ(invoke<int>(encode_call(&add, 2, 3)), 5);
  EXPECT_EQ(invoke<std::string>(encode_call(
                [](std::string s, int n) {
                  std::string out;
                  for (int i = 0; i < n; ++i) out += s;
                  return out;
                },
                std::string{"ab"}, 3)),
            "ababab");
  EXPECT_EQ(invoke<int>(encode_call(scaler{7}, 6)), 42);
}

TEST(code_identity, knows_which_callables_are_portable) {
  int captured = 1;
  auto capturing = [captured](int x) { return x + captured; };
  auto stateless = [](int x) { return x; };
  static_assert(!mp::detail::is_portable_v<decltype(capturing), int>);
  static_assert(mp::detail::is_portable_v<decltype(stateless), int>);
  static_assert(mp::detail::is_portable_v<int (*)(int, int), int, int>);
  static_assert(mp::detail::is_portable_v<scaler, int>);
  static_assert(!mp::detail::is_portable_v<int (*)(int*), int*>);
  EXPECT_EQ(capturing(1), 2);
}

TEST(code_identity, rejects_forged_and_corrupt_payloads) {
  // A real function that is not an entry point.
  mp::detail::byte_buffer buffer;
  mp::detail::output_archive out(buffer);
  out(mp::detail::code_ref_of(reinterpret_cast<const void*>(&add)));
  EXPECT_THROW(mp::detail::invoke_call(buffer.span(), nullptr, nullptr), mp::decode_error);

  mp::bytes payload = encode_call(&add, 2, 3);
  for (std::size_t n = 0; n < payload.size(); ++n)
    EXPECT_THROW(invoke<int>(mp::bytes(payload.begin(), payload.begin() + static_cast<long>(n))),
                 mp::process_error)
        << n;
  payload.back() = std::byte{0x55};  // arguments still decode: 3 becomes another int
  EXPECT_NO_THROW(invoke<int>(payload));
  payload.push_back(std::byte{0});
  EXPECT_THROW(invoke<int>(payload), mp::decode_error);
}

std::string to_hex(const mp::bytes& data) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (std::byte b : data) {
    out += digits[std::to_integer<int>(b) >> 4];
    out += digits[std::to_integer<int>(b) & 15];
  }
  return out;
}

mp::bytes from_hex(std::string_view text) {
  mp::bytes out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2)
    out.push_back(static_cast<std::byte>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
  return out;
}

MP_TEST_ROLE(run_encoded_call) {
  try {
    mp::detail::invoke_call(from_hex(args[0]), nullptr, nullptr);
    return 0;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 3;
  }
}

TEST(code_identity, stays_valid_in_a_re_executed_copy_of_the_program) {
  // The child is a fresh exec of this binary: different addresses (PIE + ASLR),
  // same build-id. This is the path spawn and MPI ranks take.
  auto result =
      mp::testing::run_role("run_encoded_call", {to_hex(encode_call(&print_sum, 20, 22))});
  EXPECT_EQ(result.exitcode, 0) << result.out << result.err;
  EXPECT_EQ(result.out, "sum=42\n");

  result = mp::testing::run_role(
      "run_encoded_call",
      {to_hex(encode_call([](int x) { std::printf("lambda=%d\n", x * 2); }, 21))});
  EXPECT_EQ(result.exitcode, 0) << result.out << result.err;
  EXPECT_EQ(result.out, "lambda=42\n");
}

}  // namespace
