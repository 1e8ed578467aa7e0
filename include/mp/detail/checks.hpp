// SPDX-License-Identifier: MIT
// The compile-time checks at mp's API boundary: what a user most often gets
// wrong (a capturing lambda for a pool, a struct the codec cannot encode) is
// reported by one static_assert in mp's words, naming the fix, before any
// library internal fails. Each check is a consteval function, so that its
// instantiation (which the compiler prints just above the message) names the
// type and, for an argument, its position; each returns whether it passed, so
// that the caller can skip the code that would fail after it.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mp/detail/code_identity.hpp"
#include "mp/detail/codec.hpp"

// The fixes every "cannot cross a process boundary" message names.
#define MP_DETAIL_HOW_TO_ENCODE                                                                 \
  ": give the type a serialize(Archive&) member function (see docs/serialization.md), or make " \
  "it trivially copyable (numbers and arrays only: no std::string, container or pointer "       \
  "inside); for std::map, std::set, unordered containers, deque, list or smart pointers, "      \
  "#include <mp/serialization.hpp>"

namespace mp::detail {

/// What an argument is stored and sent as: its decayed type, except that a
/// string literal or C string becomes a std::string (a pointer into the
/// parent's memory means nothing to a process started by spawn).
template <class A>
struct stored_type {
  using type = std::decay_t<A>;
};
template <class A>
requires std::is_same_v < std::decay_t<A>,
const char* > || std::is_same_v<std::decay_t<A>, char*> struct stored_type<A> {
  using type = std::string;
};
template <class A>
using stored_t = typename stored_type<A>::type;

/// Whether `fn` can be called with arguments stored as `Args`: as rvalues
/// when it takes them by value, as lvalues otherwise (see apply_stored).
template <class Fn, class... Args>
inline constexpr bool invocable_stored_v =
    std::is_invocable_v<Fn&, Args&&...> || std::is_invocable_v<Fn&, Args&...>;

/// The result of calling `Fn` with stored `Args`, or `not_invocable` (so that
/// a signature naming it stays well-formed and the body can say what is wrong).
struct not_invocable {};
template <class Fn, class... Args>
struct stored_result {
  using type = not_invocable;
};
template <class Fn, class... Args>
requires std::is_invocable_v<Fn&, Args&&...>
struct stored_result<Fn, Args...> {
  using type = std::invoke_result_t<Fn&, Args&&...>;
};
template <class Fn, class... Args>
requires(!std::is_invocable_v<Fn&, Args&&...> &&
         std::is_invocable_v<Fn&, Args&...>) struct stored_result<Fn, Args...> {
  using type = std::invoke_result_t<Fn&, Args&...>;
};
template <class Fn, class... Args>
using stored_result_t = typename stored_result<Fn, Args...>::type;

/// A callable a worker process can be sent by name: a function pointer or a
/// stateless function object (a capture-less lambda).
template <class Fn>
inline constexpr bool nameable_v = is_function_pointer_v<Fn> || is_stateless_callable_v<Fn>;

/// True if values of T can cross a process boundary (the name shows in the
/// compiler's note under a failed check).
template <class T>
inline constexpr bool codec_can_encode = serializable<T>;

template <class Fn, class... Args>
consteval bool check_invocable() {
  static_assert(invocable_stored_v<Fn, Args...>,
                "mp: the callable cannot be called with these arguments (their types are in the "
                "instantiation above; a string literal arrives as std::string)");
  return invocable_stored_v<Fn, Args...>;
}

template <class Fn>
consteval bool check_task_callable() {
  static_assert(nameable_v<Fn>,
                "mp: a pool or executor task must be a function, a capture-less lambda or an "
                "empty function object, because its worker is another process that finds it by "
                "name: pass what a lambda would capture as arguments instead");
  return nameable_v<Fn>;
}

template <std::size_t Position, class T>
consteval bool check_argument() {
  static_assert(codec_can_encode<wire_t<T>>,
                "mp: this argument (its position, from 0, and type are in the instantiation "
                "above) cannot cross a process boundary" MP_DETAIL_HOW_TO_ENCODE);
  return codec_can_encode<wire_t<T>>;
}

template <class... Args, std::size_t... Position>
consteval bool check_arguments(std::index_sequence<Position...>) {
  return (check_argument<Position, Args>() && ...);
}

template <class R>
consteval bool check_result() {
  static_assert(std::is_void_v<R> || codec_can_encode<R>,
                "mp: the task's result type (in the instantiation above) cannot cross a process "
                "boundary" MP_DETAIL_HOW_TO_ENCODE);
  return std::is_void_v<R> || codec_can_encode<R>;
}

/// Checks a task for a pool or an executor: a nameable callable, callable
/// with `Args` (as stored), arguments and result that the codec encodes.
template <class Fn, class... Args>
consteval bool check_task() {
  if constexpr (!check_invocable<Fn, Args...>()) {
    return false;
  } else {
    const bool callable = check_task_callable<Fn>();
    const bool arguments = check_arguments<Args...>(std::index_sequence_for<Args...>{});
    const bool result = check_result<stored_result_t<Fn, Args...>>();
    return callable && arguments && result;
  }
}

/// The result of a map's callable over one element `Arg` (spread over its
/// parameters, for starmap), decayed, or `not_invocable`.
template <bool Star, class Fn, class Arg>
struct element_result {
  using type = not_invocable;
};
template <class Fn, class Arg>
requires std::is_invocable_v<const Fn&, const Arg&>
struct element_result<false, Fn, Arg> {
  using type = std::decay_t<std::invoke_result_t<const Fn&, const Arg&>>;
};
template <class Fn, class Tuple, class Index>
struct spread_result {
  using type = not_invocable;
};
template <class Fn, class Tuple, std::size_t... I>
requires std::is_invocable_v < const Fn&, const std::tuple_element_t<I, Tuple>
&... > struct spread_result<Fn, Tuple, std::index_sequence<I...>> {
  using type =
      std::decay_t<std::invoke_result_t<const Fn&, const std::tuple_element_t<I, Tuple>&...>>;
};
template <class Fn, class Arg>
requires requires {
  std::tuple_size<Arg>::value;
}
struct element_result<true, Fn, Arg>
    : spread_result<Fn, Arg, std::make_index_sequence<std::tuple_size_v<Arg>>> {};
template <bool Star, class Fn, class Arg>
using element_result_t = typename element_result<Star, Fn, Arg>::type;

/// Checks a map (imap, starmap, ...) over elements `Arg`: the callable as
/// for a task, callable with one element (spread over its parameters, for
/// `Star`), elements and results the codec encodes.
template <bool Star, class Fn, class Arg>
consteval bool check_map() {
  constexpr bool callable = !std::is_same_v<element_result_t<Star, Fn, Arg>, not_invocable>;
  static_assert(callable || Star,
                "mp: the callable cannot be called with an element of the range (their types are "
                "in the instantiation above)");
  static_assert(callable || !Star,
                "mp: starmap: the callable cannot be called with the members of an element of the "
                "range (a tuple or pair whose members are its arguments; the types are in the "
                "instantiation above)");
  if constexpr (!callable) {
    return false;
  } else {
    const bool named = check_task_callable<Fn>();
    const bool argument = check_argument<0, Arg>();
    const bool result = check_result<element_result_t<Star, Fn, Arg>>();
    return named && argument && result;
  }
}

/// Checks the type of a value sent or received over a connection.
template <class T>
consteval bool check_value() {
  static_assert(codec_can_encode<T>,
                "mp: the value's type (in the instantiation above) cannot cross a process "
                "boundary (views such as string_view and span, and raw pointers, never "
                "can)" MP_DETAIL_HOW_TO_ENCODE);
  return codec_can_encode<T>;
}

/// Checks the item type of a queue.
template <class T>
consteval bool check_item() {
  static_assert(codec_can_encode<T>,
                "mp: the queue's item type (in the instantiation above) cannot cross a process "
                "boundary" MP_DETAIL_HOW_TO_ENCODE);
  return codec_can_encode<T>;
}

/// Checks what a manager's object holds (list items, dict keys and values, ...).
template <class T>
consteval bool check_managed() {
  static_assert(codec_can_encode<T>,
                "mp: a manager's list, dict, value or queue holds values (their type is in the "
                "instantiation above) that travel between processes and its server, and this "
                "type cannot cross a process boundary" MP_DETAIL_HOW_TO_ENCODE);
  return codec_can_encode<T>;
}

/// Always true: `static_assert(detail::reported(check_item<T>()))` runs a
/// check in a class body, where the check's own static_assert reports a
/// failure (once).
consteval bool reported(bool) {
  return true;
}

}  // namespace mp::detail

#undef MP_DETAIL_HOW_TO_ENCODE
