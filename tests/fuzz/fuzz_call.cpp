// SPDX-License-Identifier: MIT
// Fuzzes the call payload decoder (code identity + arguments), as a spawned
// child or pool worker decodes it. Only harmless entry points are registered in
// this binary, so a payload that decodes runs one of them.
#include <string>
#include <vector>

#include "mp/detail/code_identity.hpp"

namespace {

const auto seed = [] {
  // Instantiates (and so registers) one entry point.
  auto join = [](std::vector<std::string> parts, std::string separator) {
    std::string out;
    for (const auto& p : parts) out += p + separator;
    return out;
  };
  mp::detail::byte_buffer buffer;
  mp::detail::output_archive out(buffer);
  mp::detail::encode_call(out, join, std::tuple{std::vector<std::string>{"a"}, std::string{","}});
  return buffer.size();
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static_cast<void>(seed);
  mp::detail::byte_buffer result;
  try {
    mp::detail::invoke_call(std::as_bytes(std::span(data, size)), nullptr, &result);
  } catch (const mp::process_error&) {
  }
  return 0;
}
