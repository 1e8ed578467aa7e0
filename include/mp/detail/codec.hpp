// SPDX-License-Identifier: MIT
// The core of the value codec (see mp/serialization.hpp): the byte archives,
// the `serializable` concept and the encoding of arithmetic values, strings,
// vectors, arrays, tuples, pairs, optionals and variants, trivially copyable
// structs and types with a cereal function. Public headers include this and not the support for the
// other standard containers, which <mp/serialization.hpp> adds (and <mp/mp.hpp>
// with it): that support pulls in heavy headers most programs do not need.
//
// Format: an 8-byte type fingerprint, then cereal's binary layout, little-endian
// as the host. Arithmetic values, trivially copyable structs without a cereal
// function, and vectors of either are copied with one memcpy. Decoding checks
// every length against the bytes present and throws mp::decode_error; it never
// reads out of bounds, and it allocates at most in proportion to the input.
// Both sides must be the same build of the same types (the fingerprint is
// derived from the compiler's spelling of the type).
#pragma once

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mp/detail/byte_buffer.hpp"
#include "mp/detail/unique_fd.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"

namespace mp {

/// An owned run of bytes, as Python's `bytes`.
using bytes = std::vector<std::byte>;

namespace detail {

[[noreturn]] MP_EXPORT void throw_truncated(std::size_t wanted, std::size_t offset,
                                            std::size_t available);
[[noreturn]] MP_EXPORT void throw_bad_length(std::uint64_t length, std::size_t element_size,
                                             std::size_t available);
[[noreturn]] MP_EXPORT void throw_decode(const std::string& what);
[[noreturn]] MP_EXPORT void throw_no_handle_channel();
/// Throws mp::process_error: a call's return value of type `type` could not
/// be encoded to go back (Python's MaybeEncodingError), because of `why`.
[[noreturn]] MP_EXPORT void throw_result_not_sent(std::string_view type, const char* why);

/// The compiler's spelling of T, used for fingerprints and messages.
template <class T>
consteval std::string_view type_name() {
  std::string_view p = __PRETTY_FUNCTION__;
  // GCC: "... [with T = int; std::string_view = ...]"; Clang: "... [T = int]".
  const auto start = p.find("T = ") + 4;
  const auto end = p.find_first_of(";]", start);
  return p.substr(start, end - start);
}

constexpr std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

/// Descriptors that travel beside the bytes (SCM_RIGHTS). Encoding borrows them,
/// each once however often the value names it (one queue in every item of a
/// chunk); decoding receives owned ones, and hands each taker a copy (the
/// source's own are closed with it).
struct handle_sink {
  std::vector<int> fds;
};
/// The most descriptors one message carries (the kernel's SCM_MAX_FD).
inline constexpr std::size_t max_handles = 253;
struct handle_source {
  std::vector<unique_fd> fds;
};

class output_archive
    : public cereal::OutputArchive<output_archive, cereal::AllowEmptyClassElision> {
 public:
  explicit output_archive(byte_buffer& out, handle_sink* handles = nullptr)
      : OutputArchive(this), out_(out), handles_(handles) {}
  void save_binary(const void* data, std::size_t size) { out_.append(data, size); }
  /// Records a descriptor to send (once, if it is named again) and returns
  /// its index in the message.
  std::uint32_t add_handle(int fd) {
    if (handles_ == nullptr) throw_no_handle_channel();
    auto& fds = handles_->fds;
    for (std::size_t i = 0; i < fds.size(); ++i)
      if (fds[i] == fd) return static_cast<std::uint32_t>(i);
    fds.push_back(fd);
    return static_cast<std::uint32_t>(fds.size() - 1);
  }

 private:
  byte_buffer& out_;
  handle_sink* handles_;
};

class input_archive : public cereal::InputArchive<input_archive, cereal::AllowEmptyClassElision> {
 public:
  explicit input_archive(std::span<const std::byte> in, handle_source* handles = nullptr)
      : InputArchive(this), in_(in), handles_(handles) {}
  void load_binary(void* data, std::size_t size) {
    if (size > in_.size() - offset_) throw_truncated(size, offset_, in_.size() - offset_);
    if (size != 0) std::memcpy(data, in_.data() + offset_, size);
    offset_ += size;
  }
  std::size_t remaining() const noexcept { return in_.size() - offset_; }
  /// The next `size` bytes in place, skipped over; throws as load_binary.
  const std::byte* borrow(std::size_t size) {
    if (size > in_.size() - offset_) throw_truncated(size, offset_, in_.size() - offset_);
    const std::byte* at = in_.data() + offset_;
    offset_ += size;
    return at;
  }
  /// Takes ownership of the descriptor a message refers to by index; a second
  /// reference to it gets a duplicate of the first (which its taker still holds).
  MP_EXPORT unique_fd take_handle(std::uint32_t index);

 private:
  std::span<const std::byte> in_;
  std::size_t offset_ = 0;
  handle_source* handles_;
};

// Probe archives: the same primitive rules as ours but no bitwise fallback, so
// "does cereal know how to serialize T?" can be asked without asking ourselves.
class probe_output_archive
    : public cereal::OutputArchive<probe_output_archive, cereal::AllowEmptyClassElision> {
 public:
  probe_output_archive() : OutputArchive(this) {}
  void save_binary(const void*, std::size_t) {}
};

template <class A>
concept our_output = std::same_as<A, output_archive> || std::same_as<A, probe_output_archive>;
template <class A>
concept our_archive = our_output<A> || std::same_as<A, input_archive>;

template <class A, class T>
requires our_output<A> && std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const T& value) {
  ar.save_binary(std::addressof(value), sizeof(T));
}
template <class T>
requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    std::uint8_t raw = 0;
    ar.load_binary(&raw, 1);
    if (raw > 1) throw_decode("invalid bool byte " + std::to_string(raw));
    value = raw != 0;
  } else {
    ar.load_binary(std::addressof(value), sizeof(T));
  }
}
template <class A, class T>
requires our_archive<A>
void CEREAL_SERIALIZE_FUNCTION_NAME(A& ar, cereal::NameValuePair<T>& pair) {
  ar(pair.value);
}
template <class A, class T>
requires our_output<A>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const cereal::SizeTag<T>& tag) {
  const auto size = static_cast<std::uint64_t>(tag.size);
  ar.save_binary(&size, sizeof size);
}
// Every element of a container takes at least one byte in any message we
// produce (empty types excepted), so a count above the bytes left is a lie:
// refuse it before the container allocates.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::SizeTag<T>& tag) {
  std::uint64_t size = 0;
  ar.load_binary(&size, sizeof size);
  if (size > ar.remaining()) throw_bad_length(size, 1, ar.remaining());
  tag.size = static_cast<std::remove_cvref_t<decltype(tag.size)>>(size);
}
template <class A, class T>
requires our_output<A>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const cereal::BinaryData<T>& data) {
  ar.save_binary(data.data, static_cast<std::size_t>(data.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::BinaryData<T>& data) {
  ar.load_binary(data.data, static_cast<std::size_t>(data.size));
}

/// `bitwise`: a trivially copyable struct that cereal has no function for: it is
/// copied as its bytes. Pointers inside are copied as addresses, which is
/// meaningful only in a forked child; string_view and span, which are nothing
/// but a pointer, are refused.
template <class T>
struct is_view : std::false_type {};
template <class C, class Traits>
struct is_view<std::basic_string_view<C, Traits>> : std::true_type {};
template <class T, std::size_t N>
struct is_view<std::span<T, N>> : std::true_type {};

// A concept, not a variable template, so that the conjunction short-circuits:
// the probe's own overload lookup must not re-enter this check (the archive
// test comes first in every constraint below for the same reason).
template <class T>
concept bitwise = std::is_trivially_copyable_v<T> &&
                  (std::is_class_v<T> || std::is_union_v<T>)&&!std::is_empty_v<T> &&
                  !cereal::traits::is_output_serializable<T, probe_output_archive>::value;

// Enums (std::byte among them) too: cereal writes an enum as its underlying
// integer, which has the same bytes.
template <class T>
concept memcpy_element =
    (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) || std::is_enum_v<T> || bitwise<T>;

template <class A, class T>
requires std::same_as<A, output_archive> && bitwise<T>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const T& value) {
  ar.save_binary(std::addressof(value), sizeof(T));
}
template <class A, class T>
requires std::same_as<A, input_archive> && bitwise<T>
void CEREAL_LOAD_FUNCTION_NAME(A& ar, T& value) {
  ar.load_binary(std::addressof(value), sizeof(T));
}

}  // namespace detail

/// A value the codec can encode and decode: arithmetic, enums, standard
/// containers and vocabulary types of such, trivially copyable structs, and
/// types with a cereal `serialize` (or `save`/`load`) function. Raw pointers are
/// not (cereal refuses them; use a value or a smart pointer), nor are views
/// (string_view, span): send the owning std::string or std::vector.
template <class T>
concept serializable =
    std::is_default_constructible_v<T> && !std::is_pointer_v<T> && !detail::is_view<T>::value &&
    cereal::traits::is_output_serializable<T, detail::output_archive>::value &&
    cereal::traits::is_input_serializable<T, detail::input_archive>::value;

/// A compact, stable identity of T carried at the head of each message, so that
/// decoding into another type is reported instead of misread.
template <class T>
inline constexpr std::uint64_t type_fingerprint =
    detail::fnv1a(detail::type_name<std::remove_cvref_t<T>>());

namespace detail {

/// Appends the fingerprint and the encoding of `value` to `out`.
template <class T>
void encode_into(byte_buffer& out, const T& value, handle_sink* handles = nullptr) {
  output_archive archive(out, handles);
  const std::uint64_t fingerprint = type_fingerprint<T>;
  archive.save_binary(&fingerprint, sizeof fingerprint);
  archive(value);
}

MP_EXPORT void check_fingerprint(std::span<const std::byte> in, std::uint64_t expected,
                                 std::string_view type);
MP_EXPORT void check_consumed(std::size_t remaining);
[[noreturn]] MP_EXPORT void rethrow_as_decode_error(std::string_view type);

/// Decodes a whole message into `value`; throws mp::decode_error on any mismatch.
template <class T>
void decode_into(std::span<const std::byte> in, T& value, handle_source* handles = nullptr) {
  check_fingerprint(in, type_fingerprint<T>, type_name<std::remove_cvref_t<T>>());
  try {
    input_archive archive(in.subspan(sizeof(std::uint64_t)), handles);
    archive(value);
    check_consumed(archive.remaining());
  } catch (const process_error&) {
    throw;
  } catch (...) {
    rethrow_as_decode_error(type_name<std::remove_cvref_t<T>>());
  }
}

}  // namespace detail

/// Encodes `value` into a new byte vector.
/// Throws whatever a user `serialize` function throws; mp::process_error if the
/// value holds an OS handle (handles travel only over connections).
template <class T>
requires serializable<T> bytes encode(const T& value) {
  detail::byte_buffer buffer;
  detail::encode_into(buffer, value);
  const auto* begin = buffer.data();
  return bytes(begin, begin + buffer.size());
}

/// Decodes bytes produced by `encode<T>` (or `connection::send<T>`).
/// Throws mp::decode_error if the bytes are truncated, malformed, carry trailing
/// garbage or were encoded from another type.
template <class T>
requires serializable<T> T decode(std::span<const std::byte> data) {
  T value{};
  detail::decode_into(data, value);
  return value;
}

}  // namespace mp

namespace cereal {

// One-memcpy vectors: more specialised than cereal's own overloads, so chosen for
// our archives. The load checks count * sizeof(T) against the bytes present
// before allocating.
template <class A, class T, class Alloc>
requires std::same_as<A, mp::detail::output_archive> && mp::detail::memcpy_element<T>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const std::vector<T, Alloc>& v) {
  const auto count = static_cast<std::uint64_t>(v.size());
  ar.save_binary(&count, sizeof count);
  ar.save_binary(v.data(), v.size() * sizeof(T));
}
template <class A, class T, class Alloc>
requires std::same_as<A, mp::detail::input_archive> && mp::detail::memcpy_element<T>
void CEREAL_LOAD_FUNCTION_NAME(A& ar, std::vector<T, Alloc>& v) {
  std::uint64_t count = 0;
  ar.load_binary(&count, sizeof count);
  if (count > ar.remaining() / sizeof(T))
    mp::detail::throw_bad_length(count, sizeof(T), ar.remaining());
  if constexpr (std::is_same_v<T, char> || std::is_same_v<T, unsigned char> ||
                std::is_same_v<T, std::byte>) {
    // Bytes may be read as these types in place: one copy, no zero-filling
    // first (which for a large message costs as much as the copy).
    const auto* at = reinterpret_cast<const T*>(ar.borrow(static_cast<std::size_t>(count)));
    v.assign(at, at + count);
  } else {
    v.resize(static_cast<std::size_t>(count));
    ar.load_binary(v.data(), v.size() * sizeof(T));
  }
}

// Strings likewise: assigned from the message in place rather than resized
// (zero-filled) and then copied over.
template <class A, class Traits, class Alloc>
requires std::same_as<A, mp::detail::input_archive>
void CEREAL_LOAD_FUNCTION_NAME(A& ar, std::basic_string<char, Traits, Alloc>& str) {
  size_type size = 0;
  ar(make_size_tag(size));  // checked against the bytes left
  str.assign(reinterpret_cast<const char*>(ar.borrow(static_cast<std::size_t>(size))),
             static_cast<std::size_t>(size));
}

}  // namespace cereal

CEREAL_REGISTER_ARCHIVE(mp::detail::output_archive)
CEREAL_REGISTER_ARCHIVE(mp::detail::input_archive)
CEREAL_SETUP_ARCHIVE_TRAITS(mp::detail::input_archive, mp::detail::output_archive)
