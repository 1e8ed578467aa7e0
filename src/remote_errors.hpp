// SPDX-License-Identifier: MIT
// Exceptions across the process boundary, for every part that runs code for
// another process (pool workers, a manager's server): what the process sends
// of the exception being handled, and the exception the receiver rethrows.
#pragma once

#include <exception>

#include "mp/errors.hpp"

namespace mp::detail {

/// What the exception being handled is, to send (call inside a catch block).
MP_EXPORT void capture_fault(remote_fault& fault);
/// The exception a fault stands for here: its own type if this process knows
/// it (mp's, the standard ones, those registered), else mp::remote_error.
std::exception_ptr rebuild_fault(const remote_fault& fault);

}  // namespace mp::detail
