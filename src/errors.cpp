// SPDX-License-Identifier: MIT
#include "mp/errors.hpp"

#include <utility>

namespace mp {

buffer_too_short::buffer_too_short(std::vector<std::byte> message)
    : process_error("message of " + std::to_string(message.size()) +
                    " bytes is larger than the receive buffer"),
      message_(std::move(message)) {}

remote_error::remote_error(std::string type_name, const std::string& message)
    : process_error(type_name + ": " + message), type_name_(std::move(type_name)) {}

}  // namespace mp
