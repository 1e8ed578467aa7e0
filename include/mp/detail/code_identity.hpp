// SPDX-License-Identifier: MIT
// Code identity: how a callable crosses a process boundary. A function is named
// by the build-id of the loaded image (executable or shared library) that holds
// it plus its offset in that image, which stays valid in a re-executed copy of
// the program and on another MPI rank running the same binary.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/codec.hpp"
#include "mp/export.hpp"

namespace mp::detail {

/// A function's identity: image build-id (up to 20 bytes) and offset.
struct code_ref {
  std::array<std::uint8_t, 20> build_id{};
  std::uint8_t build_id_size = 0;
  std::uint64_t offset = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(build_id, build_id_size, offset);
  }
  friend bool operator==(const code_ref&, const code_ref&) = default;
};

/// The identity of the function at `address`. Throws mp::process_error if the
/// address is in no loaded image, or the image has no GNU build-id note.
MP_EXPORT code_ref code_ref_of(const void* address);

/// The address a code_ref names in this process. Throws mp::process_error if no
/// loaded image has that build-id (another binary sent it) or the offset is not
/// in an executable segment.
MP_EXPORT const void* resolve(const code_ref& ref);

/// Writes the identity of the function at `address` (code_ref_of) to `out`;
/// reads one back and resolves it (resolve). Out of line, so that a program's
/// every call site does not instantiate the codec for code_ref.
MP_EXPORT void save_code(output_archive& out, const void* address);
MP_EXPORT const void* load_code(input_archive& in);

/// An entry point: decodes a callable and its arguments from `in`, calls it and,
/// if `result` is not null, encodes the return value into it.
using entry_fn = void (*)(input_archive& in, byte_buffer* result);

/// Adds an entry point to the allow-list a child checks before calling one.
MP_EXPORT bool register_entry(entry_fn entry) noexcept;

/// Resolves `ref` and returns it as an entry point, if it is a registered one;
/// throws mp::decode_error otherwise (a forged or stale payload).
MP_EXPORT entry_fn resolve_entry(const code_ref& ref);

template <class Fn>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<Fn>&& std::is_function_v<std::remove_pointer_t<Fn>>;

/// Capture-less lambdas and empty function objects: re-created by default construction.
template <class Fn>
inline constexpr bool is_stateless_callable_v =
    std::is_class_v<Fn>&& std::is_empty_v<Fn>&& std::is_default_constructible_v<Fn>;

/// What an argument of type A travels as: std::ref(x) and std::cref(x) (the
/// way to pass a move-only resource, a shared_memory block say, and keep it)
/// travel as x does and arrive as a value of x's type.
template <class A>
struct wire_type {
  using type = A;
};
template <class T>
struct wire_type<std::reference_wrapper<T>> {
  using type = std::remove_const_t<T>;
};
template <class A>
using wire_t = typename wire_type<A>::type;

template <class A, class T>
requires std::same_as<A, output_archive> || std::same_as<A, probe_output_archive>
void CEREAL_SAVE_FUNCTION_NAME(A& ar, const std::reference_wrapper<T>& ref) {
  ar(ref.get());
}

/// True if a callable of type Fn with arguments Args can be sent to a process
/// that does not share our memory (spawn, forkserver, pool workers, MPI ranks):
/// a function pointer, a stateless function object, or a function object the
/// codec can encode, with arguments the codec can encode (see wire_t).
template <class Fn, class... Args>
inline constexpr bool is_portable_v = (is_function_pointer_v<Fn> || is_stateless_callable_v<Fn> ||
                                       (std::is_class_v<Fn> && !std::is_empty_v<Fn> &&
                                        serializable<Fn>)) &&
                                      (serializable<wire_t<Args>> && ...);

/// Calls fn with the stored arguments: moved if fn accepts them by value or
/// rvalue, as lvalues otherwise (so `connection&` parameters bind).
template <class Fn, class Tuple>
decltype(auto) apply_stored(Fn& fn, Tuple& args) {
  return std::apply(
      [&fn](auto&... a) -> decltype(auto) {
        if constexpr (std::is_invocable_v<Fn&, decltype(std::move(a))...>)
          return std::invoke(fn, std::move(a)...);
        else
          return std::invoke(fn, a...);
      },
      args);
}

/// A callable of one std::vector argument that runs over the vector's
/// elements where they lie in the message (a pool's chunk of memcpy-able
/// items) and encodes its result into the result buffer itself.
template <class Fn, class... Args>
concept runs_on_encoded_elements = requires {
  typename Fn::encoded_element;
}
&&Fn::runs_on_encoded&&
    std::is_same_v<std::tuple<Args...>, std::tuple<std::vector<typename Fn::encoded_element>>>;

template <class Fn, class... Args>
struct portable_entry {
  static void run(input_archive& in, byte_buffer* result) {
    if constexpr (runs_on_encoded_elements<Fn, Args...>) {
      using element = typename Fn::encoded_element;
      Fn fn{};
      const std::byte* elements = nullptr;
      std::uint64_t count = 0;
      try {
        fn = load_head(in);
        in.load_binary(&count, sizeof count);
        if (count > in.remaining() / sizeof(element))
          throw_bad_length(count, sizeof(element), in.remaining());
        elements = in.borrow(static_cast<std::size_t>(count) * sizeof(element));
      } catch (const process_error&) {
        throw;
      } catch (...) {
        rethrow_as_decode_error(type_name<std::tuple<Args...>>());
      }
      fn.run_on_encoded(elements, static_cast<std::size_t>(count), result);
    } else {
      auto [fn, args] = load(in);
      if constexpr (std::is_void_v<decltype(apply_stored(fn, args))>) {
        apply_stored(fn, args);
      } else {
        auto value = apply_stored(fn, args);
        if (result != nullptr) {
          try {
            encode_into(*result, value);
          } catch (const std::exception& e) {
            throw_result_not_sent(type_name<std::remove_cvref_t<decltype(value)>>(), e.what());
          }
        }
      }
    }
  }
  // Decoding failures become mp::decode_error; the call's own exceptions pass.
  static std::pair<Fn, std::tuple<Args...>> load(input_archive& in) try {
    Fn fn = load_head(in);
    std::tuple<Args...> args;
    in(args);
    return {std::move(fn), std::move(args)};
  } catch (const process_error&) {
    throw;
  } catch (...) {
    rethrow_as_decode_error(type_name<std::tuple<Args...>>());
  }
  // The callable, and the check that the arguments that follow are ours.
  static Fn load_head(input_archive& in) {
    Fn fn = load_callable(in);
    std::uint64_t fingerprint = 0;
    in(fingerprint);
    if (fingerprint != type_fingerprint<std::tuple<Args...>>)
      throw_decode("argument types differ from the entry point's");
    return fn;
  }
  static Fn load_callable(input_archive& in) {
    if constexpr (is_function_pointer_v<Fn>) {
      return reinterpret_cast<Fn>(const_cast<void*>(load_code(in)));
    } else if constexpr (is_stateless_callable_v<Fn>) {
      return Fn{};
    } else {
      Fn fn{};
      in(fn);
      return fn;
    }
  }
  // Instantiated (and so registered before main) by every encode below.
  static inline const bool registered = register_entry(&run);
};

/// encode_call with the arguments written by `wire`, which must encode exactly
/// as a std::tuple<Args...> does (a span of elements standing in for a
/// vector, say), so that no Args need be built to send them.
template <class... Args, class Fn, class Wire>
requires is_portable_v<Fn, Args...>
void encode_call_as(output_archive& out, const Fn& fn, const Wire& wire) {
  static_cast<void>(portable_entry<Fn, Args...>::registered);
  save_code(out, reinterpret_cast<const void*>(&portable_entry<Fn, Args...>::run));
  if constexpr (is_function_pointer_v<Fn>)
    save_code(out, reinterpret_cast<const void*>(fn));
  else if constexpr (!is_stateless_callable_v<Fn>)
    out(fn);
  out(type_fingerprint<std::tuple<Args...>>);
  out(wire);
}

/// Encodes a portable call: the entry point, the callable and the arguments.
template <class Fn, class... Args>
requires is_portable_v<Fn, Args...>
void encode_call(output_archive& out, const Fn& fn, const std::tuple<Args...>& args) {
  encode_call_as<wire_t<Args>...>(out, fn, args);
}

/// Decodes and runs a call made by encode_call. Throws mp::decode_error for a
/// payload that names no registered entry point or does not decode.
MP_EXPORT void invoke_call(std::span<const std::byte> payload, handle_source* handles,
                           byte_buffer* result);

}  // namespace mp::detail
