// SPDX-License-Identifier: MIT
// Barrier as a lock-free state machine on one 64-bit word, with a futex word
// that changes whenever the generation does.
//
// The word holds the generation (32 bits), the arrivals in it (29 bits),
// whether the previous generation ended broken (1 bit), and the phase:
//
//   phase      | wait()                         | transitions
//   filling    | arrives: count + 1             | last arrival -> releasing
//   releasing  | waits for the next generation  | action done -> filling, gen + 1
//   broken     | throws broken_barrier          | reset() -> filling, gen + 1
//
// Every way out of a generation (release, abort, timeout, reset with waiters)
// changes the generation, so a waiter only waits for its generation to end: a
// fast process that re-enters the next cycle cannot confuse a slow one. The
// slow one then needs to know how its generation ended. With lag 1 the word
// says; with more, `outcomes` does: before leaving generation g + 1, each
// transition records how g ended (from the word, so racing writers agree) in
// a ring slot tagged with g, which only newer tags overwrite. A waiter that
// falls `history` generations behind loses its outcome and reports broken,
// the safe side. Everything is seq_cst: these paths make system calls anyway.
#include <climits>

#include "mp/synchronize.hpp"
#include "os/futex.hpp"

namespace mp {
namespace {

enum class phase : std::uint32_t { filling = 0, releasing = 1, broken = 2 };

constexpr int previous_failed_shift = 2;
constexpr int count_shift = 3;
constexpr int generation_shift = 32;
constexpr std::uint32_t max_parties = (1U << 29) - 1;

struct fields {
  std::uint32_t generation = 0;
  std::uint32_t count = 0;
  phase at = phase::filling;
  bool previous_failed = false;
};

fields decode(std::uint64_t word) {
  return {static_cast<std::uint32_t>(word >> generation_shift),
          static_cast<std::uint32_t>(word >> count_shift) & max_parties,
          static_cast<phase>(word & 3), ((word >> previous_failed_shift) & 1) != 0};
}

std::uint64_t encode(const fields& f) {
  return std::uint64_t{f.generation} << generation_shift | std::uint64_t{f.count} << count_shift |
         std::uint64_t{f.previous_failed} << previous_failed_shift |
         static_cast<std::uint64_t>(f.at);
}

// A slot's content: the generation it describes, and whether it ended broken.
std::uint64_t outcome(std::uint32_t generation, bool failed) {
  return std::uint64_t{generation} << 1 | std::uint64_t{failed};
}

bool newer(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::int32_t>(a - b) > 0;
}

[[noreturn]] void throw_broken() {
  throw broken_barrier("the barrier is broken (aborted, reset, timed out, or its action failed)");
}

void record(detail::barrier_state& state, std::uint32_t generation, bool failed) {
  std::atomic<std::uint64_t>& slot = state.outcomes[generation % detail::barrier_state::history];
  const std::uint64_t desired = outcome(generation, failed);
  std::uint64_t current = slot.load();
  while (newer(generation, static_cast<std::uint32_t>(current >> 1)) &&
         !slot.compare_exchange_weak(current, desired)) {
  }
}

// Replaces `expected` (updated on failure) with `next`; if that ends the
// generation, records how the previous one ended and wakes every waiter.
bool transition(detail::barrier_state& state, std::uint64_t& expected, const fields& next) {
  const fields now = decode(expected);
  const bool new_generation = next.generation != now.generation;
  if (new_generation) record(state, now.generation - 1, now.previous_failed);
  if (!state.word.compare_exchange_strong(expected, encode(next))) return false;
  if (new_generation) {
    state.changes.fetch_add(1);
    os::futex_wake(state.changes, INT_MAX);
  }
  return true;
}

// Breaks `generation` if it is still current; false if it already ended.
bool break_generation(detail::barrier_state& state, std::uint32_t generation) {
  std::uint64_t word = state.word.load();
  for (;;) {
    const fields now = decode(word);
    if (now.generation != generation || now.at == phase::broken) return false;
    if (transition(state, word, {generation + 1, 0, phase::broken, true})) return true;
  }
}

// True if `generation`, which has ended, ended broken; `word` is a later word.
bool ended_broken(const detail::barrier_state& state, std::uint32_t generation,
                  std::uint64_t word) {
  const fields now = decode(word);
  if (now.generation - generation == 1) return now.previous_failed;
  const std::uint64_t slot = state.outcomes[generation % detail::barrier_state::history].load();
  if (static_cast<std::uint32_t>(slot >> 1) != generation) return true;  // overwritten: unknown
  return (slot & 1) != 0;
}

// Sleeps until `generation` ends and returns the word then. On timeout, breaks
// the generation and throws broken_barrier (unless it ended meanwhile).
std::uint64_t await_end(detail::barrier_state& state, std::uint32_t generation,
                        const detail::deadline& deadline) {
  for (;;) {
    // Reading `changes` before the word pairs with transition(), which
    // changes the word before `changes`: a change after our read of the word
    // makes the futex wait return at once.
    const std::uint32_t seen = state.changes.load();
    const std::uint64_t word = state.word.load();
    if (decode(word).generation != generation) return word;
    const timeout left = deadline.left();
    if (left.zero()) {
      if (break_generation(state, generation))
        throw broken_barrier("barrier wait timed out; the barrier is now broken");
      continue;
    }
    os::futex_wait(state.changes, seen, left);
  }
}

}  // namespace

namespace detail {

barrier_state::barrier_state(std::uint32_t party_count) noexcept : parties(party_count) {
  // Tag every slot with a generation older than any it will describe.
  for (std::uint32_t i = 0; i < history; ++i) outcomes[i].store(outcome(i - history, true));
}

}  // namespace detail

barrier::barrier(unsigned parties, bound_call action, mp::timeout timeout)
    : action_(std::move(action)), timeout_(timeout) {
  if (parties < 1 || parties > max_parties)
    throw usage_error("barrier parties must be between 1 and 2^29 - 1");
  state_ = detail::shared_object<detail::barrier_state>::make(parties);
}

unsigned barrier::wait(mp::timeout timeout) const {
  detail::barrier_state& state = *state_;
  const detail::deadline deadline(timeout.limited() ? timeout : timeout_);

  std::uint64_t word = state.word.load();
  fields arrived;
  for (;;) {
    arrived = decode(word);
    if (arrived.at == phase::broken) throw_broken();
    if (arrived.at == phase::releasing) {
      word = await_end(state, arrived.generation, deadline);
      continue;
    }
    fields next = arrived;
    if (++next.count == state.parties) next.at = phase::releasing;
    if (transition(state, word, next)) break;
  }
  const std::uint32_t generation = arrived.generation;
  const unsigned index = arrived.count;

  if (index + 1 < state.parties) {
    word = await_end(state, generation, deadline);
    if (ended_broken(state, generation, word)) throw_broken();
    return index;
  }

  // Last to arrive: run the action while the others wait, then release them.
  if (action_) {
    try {
      action_();
    } catch (...) {
      break_generation(state, generation);
      throw;
    }
  }
  word = state.word.load();
  for (;;) {
    if (decode(word).generation != generation) throw_broken();  // broken during the action
    if (transition(state, word, {generation + 1, 0, phase::filling, false})) return index;
  }
}

void barrier::abort() const {
  detail::barrier_state& state = *state_;
  std::uint64_t word = state.word.load();
  for (;;) {
    const fields now = decode(word);
    if (now.at == phase::broken) return;
    if (transition(state, word, {now.generation + 1, 0, phase::broken, true})) return;
  }
}

void barrier::reset() const {
  detail::barrier_state& state = *state_;
  std::uint64_t word = state.word.load();
  for (;;) {
    const fields now = decode(word);
    if (now.at == phase::filling && now.count == 0) return;
    if (transition(state, word, {now.generation + 1, 0, phase::filling, true})) return;
  }
}

bool barrier::broken() const {
  return decode(state_->word.load()).at == phase::broken;
}

unsigned barrier::n_waiting() const {
  const fields now = decode(state_->word.load());
  return now.at == phase::broken ? 0 : now.count;
}

unsigned barrier::parties() const {
  return state_->parties;
}

}  // namespace mp
