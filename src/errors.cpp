// SPDX-License-Identifier: MIT
#include "mp/errors.hpp"

#include <utility>

namespace mp {

buffer_too_short::buffer_too_short(std::vector<std::byte> message)
    : process_error("message of " + std::to_string(message.size()) +
                    " bytes is larger than the receive buffer"),
      message_(std::move(message)) {}

buffer_too_short::buffer_too_short(std::vector<std::byte> message, const std::string& what)
    : process_error(what), message_(std::move(message)) {}

remote_info::remote_info(std::string type_name, std::string message, int pid)
    : type_name_(std::move(type_name)), message_(std::move(message)), pid_(pid) {}

remote_info::~remote_info() = default;

const remote_info* remote_info_of(const std::exception& e) noexcept {
  return dynamic_cast<const remote_info*>(&e);
}

remote_error::remote_error(std::string type_name, const std::string& message, int pid)
    : process_error(type_name + ": " + message), remote_info(std::move(type_name), message, pid) {}

}  // namespace mp
