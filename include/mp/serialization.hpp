// SPDX-License-Identifier: MIT
// The value codec: how every value crosses a process boundary (the role pickle
// plays in Python's multiprocessing), built on cereal with our own byte archives.
// The codec's support for every standard type
// cereal knows: the core (mp/detail/codec.hpp, which every mp header includes)
// handles arithmetic values, enums, strings, vectors, arrays, tuples, pairs,
// optionals, variants, trivially copyable structs, mp's resources and types
// with a cereal function; this header adds maps, sets, unordered containers,
// deques, lists, smart pointers, complex numbers, bitsets and durations.
// <mp/mp.hpp> includes it. See docs/serialization.md.
#pragma once

#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>

#include "mp/detail/codec.hpp"
