// SPDX-License-Identifier: MIT
// The umbrella header: everything mp offers, as `import multiprocessing` does.
#pragma once

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/errors.hpp"
#include "mp/executor.hpp"
#include "mp/listener.hpp"
#include "mp/managers.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/serialization.hpp"
#include "mp/shared_memory.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "mp/timeout.hpp"
#include "mp/unique_fd.hpp"
