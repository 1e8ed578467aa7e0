// SPDX-License-Identifier: MIT
#include "mp/serialization.hpp"

#include <cereal/details/helpers.hpp>
#include <new>
#include <stdexcept>
#include <system_error>

#include "os/system.hpp"

namespace mp::detail {

void throw_truncated(std::size_t wanted, std::size_t offset, std::size_t available) {
  throw decode_error("truncated message: needed " + std::to_string(wanted) + " bytes at offset " +
                     std::to_string(offset) + ", only " + std::to_string(available) + " left");
}

void throw_bad_length(std::uint64_t length, std::size_t element_size, std::size_t available) {
  throw decode_error("length field claims " + std::to_string(length) + " elements of at least " +
                     std::to_string(element_size) + " bytes, but only " +
                     std::to_string(available) + " bytes are left in the message");
}

void throw_decode(const std::string& what) {
  throw decode_error(what);
}

void throw_result_not_sent(std::string_view type, const char* why) {
  throw process_error("the task returned a " + std::string(type) +
                      " that cannot be sent back to the caller: " + why);
}

void throw_no_handle_channel() {
  throw process_error(
      "this value holds an OS handle (a connection or another resource): it can be "
      "passed only as a process argument or sent over a duplex connection");
}

unique_fd input_archive::take_handle(std::uint32_t index) {
  if (handles_ == nullptr || index >= handles_->fds.size())
    throw decode_error("message refers to descriptor #" + std::to_string(index) +
                       ", which did not arrive with it");
  // A copy for each taker: the source keeps the one that came, for a value
  // that names it again (the sender sends each descriptor once). A taker
  // may close its copy at once (a queue this process has mapped already).
  if (!handles_->fds[index])
    throw decode_error("descriptor #" + std::to_string(index) + " did not arrive intact");
  return os::duplicate(handles_->fds[index].get());
}

void check_fingerprint(std::span<const std::byte> in, std::uint64_t expected,
                       std::string_view type) {
  std::uint64_t actual = 0;
  if (in.size() < sizeof actual)
    throw decode_error("message of " + std::to_string(in.size()) +
                       " bytes is too short to hold a value (needs an 8-byte type fingerprint)");
  std::memcpy(&actual, in.data(), sizeof actual);
  if (actual != expected)
    throw decode_error("type mismatch: the message was encoded from another type than '" +
                       std::string(type) + "' (sender and receiver must use the same type)");
}

void check_consumed(std::size_t remaining) {
  if (remaining != 0)
    throw decode_error(std::to_string(remaining) + " unexpected bytes after the encoded value");
}

void rethrow_as_decode_error(std::string_view type) {
  const std::string prefix = "cannot decode '" + std::string(type) + "': ";
  try {
    throw;
  } catch (const cereal::Exception& e) {
    throw decode_error(prefix + e.what());
  } catch (const std::bad_alloc&) {
    throw decode_error(prefix + "a length field asks for more memory than is available");
  } catch (const std::length_error& e) {
    throw decode_error(prefix + "a length field is out of range (" + e.what() + ")");
  }
}

}  // namespace mp::detail
