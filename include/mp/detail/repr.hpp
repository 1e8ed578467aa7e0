// SPDX-License-Identifier: MIT
// Python's repr() for the values a manager's proxies hold, so that printing a
// proxy shows what Python would: ['Hello', 'World'], {'a': 1}, True, 2.5.
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mp/detail/codec.hpp"

namespace mp::detail {

template <class T>
void write_repr(std::ostream& out, const T& value);

inline void write_quoted(std::ostream& out, std::string_view text) {
  // Python picks double quotes when the text holds a single quote and no double one.
  const char quote =
      (text.find('\'') != std::string_view::npos && text.find('"') == std::string_view::npos)
          ? '"'
          : '\'';
  out << quote;
  for (const char c : text) {
    if (c == quote || c == '\\') {
      out << '\\' << c;
    } else if (c == '\n') {
      out << "\\n";
    } else if (c == '\t') {
      out << "\\t";
    } else {
      out << c;
    }
  }
  out << quote;
}

template <class T>
concept repr_range = requires(const T& t) {
  t.begin();
  t.end();
};

template <class T>
concept repr_map = repr_range<T> && requires {
  typename T::mapped_type;
};

template <class T>
void write_repr(std::ostream& out, const T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    out << (value ? "True" : "False");
  } else if constexpr (std::is_same_v<T, char>) {
    write_quoted(out, std::string_view(&value, 1));
  } else if constexpr (std::is_arithmetic_v<T>) {
    if constexpr (std::is_integral_v<T>) {
      out << +value;
    } else {
      std::ostringstream text;
      text.precision(17);
      text << value;
      std::string s = text.str();
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // Python's 2.0, not 2
      out << s;
    }
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    write_quoted(out, std::string_view(value));
  } else if constexpr (repr_map<T>) {
    out << '{';
    bool first = true;
    for (const auto& [k, v] : value) {
      if (!first) out << ", ";
      first = false;
      write_repr(out, k);
      out << ": ";
      write_repr(out, v);
    }
    out << '}';
  } else if constexpr (repr_range<T>) {
    out << '[';
    bool first = true;
    for (const auto& item : value) {
      if (!first) out << ", ";
      first = false;
      write_repr(out, item);
    }
    out << ']';
  } else if constexpr (requires { std::tuple_size<T>::value; }) {
    out << '(';
    std::apply(
        [&out](const auto&... items) {
          std::size_t i = 0;
          ((out << (i++ == 0 ? "" : ", "), write_repr(out, items)), ...);
        },
        value);
    if constexpr (std::tuple_size<T>::value == 1) out << ',';
    out << ')';
  } else if constexpr (requires {
                         value.has_value();
                         *value;
                       }) {
    if (value.has_value()) {
      write_repr(out, *value);
    } else {
      out << "None";
    }
  } else if constexpr (requires { out << value; }) {
    out << value;
  } else {
    out << '<' << type_name<T>() << " object>";
  }
}

}  // namespace mp::detail
