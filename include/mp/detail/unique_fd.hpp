// SPDX-License-Identifier: MIT
// The internal spelling of mp::unique_fd (mp/unique_fd.hpp), kept so that
// internals can go on naming it detail::unique_fd.
#pragma once

#include "mp/unique_fd.hpp"

namespace mp::detail {

using mp::unique_fd;

}  // namespace mp::detail
