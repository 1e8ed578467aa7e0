// SPDX-License-Identifier: MIT
// The queue machine behind mp::queue, simple_queue and joinable_queue.
//
// Memory: one memfd, sized to a large address range, of which each process
// maps the part in use (see queue_core::view), without reserving memory.
// Offset 0 holds the control block; the rest is carved into segments whose
// sizes are 256 KiB times a power of two. Records (an 8-byte header, then the
// encoded item, padded to 8 bytes) are appended to the tail segment; when one
// does not fit, the producer takes a new segment that fits it and leaves a
// jump record behind. Consumers read records in order and follow jumps; a
// producer returns segments the consumers have left to per-size free lists
// (punching the pages of large ones out of memory).
//
// Publication: a record is committed by storing its header, one word, with
// release order: the record's size (or where it jumps to) beside its stamp,
// the record's sequence number (1, 2, ...) folded to 31 bits with the top bit
// set (see stamp_of). A consumer expecting record n takes what it finds only
// if the stamp reads n's. Each producer zeroes the header after its record
// before committing, so what a consumer finds where it expects record n is
// either nothing yet (0, never a stamp) or record n: stale bytes in reused
// memory are never taken for a record, and the stamps may wrap.
//
// The header's size half: the item's encoded size; with the top bit set, a
// jump to the segment of that index (offset / unit), whose first record comes
// next; or long_size, for an item of 2 GiB or more, whose 64-bit size is the
// word after the header (and the item the bytes after that). An 8-byte item
// is thus a 16-byte record, four to a cache line, not three in two (a 16-byte
// header before): 8-byte items from one process to another went from 30 to
// 37 M/s with the two CPUs on different cores of the host, a pool's map with
// chunksize 1 and an executor's stream of tiny tasks about 10% faster.
//
// Producers serialise on the put lock and consumers on the get lock (each a
// lock_state, which detects a dead holder). Every change a side makes is
// either a single store or recorded in an intent field first, so the next
// holder can finish or undo the work of one that died (repair_put, repair_get).
//
// Biased sides: the first thread to enter a side takes its bias, and from then
// on enters and leaves it with two plain stores to a `busy` word instead of
// taking the lock (whose two atomic read-modify-writes each wait for the
// store buffer to drain: half the time of an 8-byte put or get). Anyone else
// takes the lock, revokes the bias for good, and waits until the owner is out
// (or repairs after it, if it died inside); from then on everyone takes the
// lock. A queue with one producer and one consumer thus runs without atomic
// read-modify-writes; a pool's result queue, which workers fill and one thread
// empties, does so on its consumers' side. The owner's "announce, then look
// at the state" and the revoker's "revoke, then look at busy" form a Dekker
// handshake whose frequent side costs a compiler barrier (os::light_fence)
// and whose rare side a membarrier (os::heavy_fence).
#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "mp/queues.hpp"
#include "mp/synchronize.hpp"
#include "os/futex.hpp"
#include "os/spin.hpp"
#include "os/system.hpp"

namespace mp::detail {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
using std::uint32_t;
using std::uint64_t;

// "mp-queu2": the layout of 8-byte record headers. ("mp-queue", the one
// before, had 16-byte headers: such a queue, received from a program built
// with an older mp, is refused by name.)
constexpr uint64_t magic = 0x6d702d7175657532;
constexpr uint64_t magic_before = 0x6d702d7175657565;
// The size of a queue's memory file; memory is used only as items need it,
// and address space as segments are handed out.
constexpr uint64_t address_range = uint64_t{64} << 30;
// What a process maps of it at first.
constexpr uint64_t first_view = uint64_t{4} << 20;
// The smallest segment, and the unit segments are aligned to.
constexpr uint64_t unit = uint64_t{256} << 10;
constexpr int size_classes = 24;  // unit << 23 = 2 TiB, beyond any range
// Free segments kept resident for reuse, per size class; the pages of the
// others are punched out. Fresh pages cost far more than copying into warm
// ones (the kernel allocates and zeroes each), so a stream of large items must
// find its segments warm; the price is that a queue keeps up to four free
// segments of each size it has used until it is destroyed. (Four, not two:
// a pool's map of 1M items in 8 chunks of 1 MB ran a third faster.)
constexpr uint32_t resident_segments = 4;
constexpr uint64_t page = 4096;
// Records from this size on are faulted in (or mapped in) by one madvise call
// rather than one page fault per page. (64 KiB, not 1 MiB: a pool's map of 1M
// items in chunks of 1 MB writes each result into a segment the other worker
// used last, whose pages this process never mapped; its first five maps on a
// fresh pool took 89 instead of 104 ms, the median of 10 runs.)
constexpr uint64_t populate_threshold = uint64_t{1} << 16;

constexpr uint64_t record_header = 8;  // one word: stamp and size (see Publication)
constexpr uint64_t segment_header = 64;
constexpr uint32_t jump_bit = uint32_t{1} << 31;
// The size half of a header whose item's size is the next word.
constexpr uint32_t long_size = jump_bit - 1;
constexpr uint64_t long_header = record_header + 8;

// A header's stamp for record n: never 0.
constexpr uint32_t stamp_of(uint64_t n) {
  return static_cast<uint32_t>(n) | jump_bit;
}
constexpr uint64_t header_of(uint64_t n, uint32_t size_half) {
  return uint64_t{size_half} << 32 | stamp_of(n);
}
constexpr uint32_t stamp_in(uint64_t header) {
  return static_cast<uint32_t>(header);
}
constexpr uint32_t size_half_in(uint64_t header) {
  return static_cast<uint32_t>(header >> 32);
}
constexpr bool is_jump(uint64_t header) {
  return (size_half_in(header) & jump_bit) != 0;
}
// A jump's size half, to the segment at `segment`, and back.
constexpr uint32_t jump_to(uint64_t segment) {
  return jump_bit | static_cast<uint32_t>(segment / unit);
}
constexpr uint64_t jump_target(uint64_t header) {
  return uint64_t{size_half_in(header) & ~jump_bit} * unit;
}

// A cursor packs a segment's index (offset / unit) and a position in one word,
// so that a side's progress is published by one store.
constexpr int position_bits = 40;
constexpr uint64_t position_mask = (uint64_t{1} << position_bits) - 1;
static_assert(address_range <= position_mask);
static_assert(address_range / unit < jump_bit);  // a jump names a segment by its index

constexpr uint64_t pack(uint64_t segment, uint64_t position) {
  return (segment / unit) << position_bits | position;
}
constexpr uint64_t cursor_segment(uint64_t cursor) {
  return (cursor >> position_bits) * unit;
}
constexpr uint64_t cursor_position(uint64_t cursor) {
  return cursor & position_mask;
}
constexpr uint64_t align8(uint64_t n) {
  return (n + 7) & ~uint64_t{7};
}

// How long a blocked side spins before it sleeps (a few microseconds, so
// back-to-back traffic never pays for a kernel wake-up), and how long it then
// sleeps at most before re-checking on its own.
constexpr std::chrono::nanoseconds spin_time = 5us;
constexpr int yield_rounds = 4;
// How long a consumer that took its last item without waiting (a stream:
// the producer keeps up) holds back before it looks for the next one. Polling
// at once reads the cache line the producer is writing the next record into,
// so every record crosses between the CPUs twice; half a microsecond later a
// few records wait there together. 8-byte items from one process to another
// went from 12.5 to 16.5 M/s (4 KiB items and 4 producers with 4 consumers:
// +25%), the queue's own round trip is unchanged (it always waits), and an
// item in a stream arrives at most this much later. A time, not a count of
// pauses: a pause takes 20 ns on one CPU and a few cycles on another.
constexpr std::chrono::nanoseconds stream_backoff = 500ns;
// How far ahead of its write position a producer asks for a cache line it
// will write, while the consumers stream (see put_locked): three lines on.
// The line was last in a consumer's cache (it read the segment's records a
// lap earlier), and a store that must first take it from there holds up every
// store after it. 8-byte items went from 11 to about 30 M/s with the two CPUs
// on different cores of the host, 4 producers with 4 consumers from 11 to 19
// (with the 16-byte headers of before); with 8-byte headers, three lines on
// made 72 M/s where two made 50 and four 42. Not in a round trip, whose
// consumer waits at the very next record: there the extra line transfer cost
// a tenth of a microsecond.
constexpr uint64_t write_ahead = 192;
constexpr uint64_t cache_line = 64;
constexpr std::chrono::nanoseconds sleep_slice = 100ms;
// The same where membarrier is unavailable and a wake-up may be missed.
constexpr std::chrono::nanoseconds unfenced_slice = 1ms;
// How often a revoker waiting for a bias owner checks that it lives, and how
// long busy must stay 0 where the revocation went without membarrier (far
// longer than a store takes to leave a CPU's store buffer).
constexpr std::chrono::milliseconds owner_pause = 1ms;

// A side's bias: see "Biased sides" above.
enum : uint32_t { bias_none, bias_held, bias_revoked };

struct segment_head {
  uint64_t capacity;   // bytes, header included
  uint64_t next;       // the segment after this one in the chain
  uint64_t next_free;  // while on a free list
  uint64_t punched;    // while on a free list: its pages were given back
  // How often its pages were given back: a process that mapped them in knows
  // from it whether its mapping still holds them (see populate_record).
  uint64_t punches;
};

std::atomic_ref<uint64_t> word_at(std::byte* p) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p));
}

// A data record's item: where its bytes start, from the record's start, and
// how many there are.
struct record_item {
  uint64_t offset, size;
  uint64_t record_end() const noexcept { return offset + align8(size); }
};
record_item item_of(std::byte* record, uint64_t header) noexcept {
  if (size_half_in(header) != long_size) return {record_header, size_half_in(header)};
  return {long_header, word_at(record + record_header).load(std::memory_order_relaxed)};
}

}  // namespace

struct side_bias {
  std::atomic<uint32_t> state;        // bias_none, bias_held, bias_revoked
  std::atomic<uint32_t> busy;         // 1 while the owner is inside
  std::atomic<uint64_t> owner;        // the owning thread, as thread_word() gives it
  std::atomic<uint64_t> owner_start;  // its process's start time
};

struct queue_control {
  uint64_t magic;
  uint64_t fingerprint;
  uint64_t size;
  uint64_t max_items;

  // The producers' side, under put_lock.
  alignas(128) lock_state put_lock;
  side_bias put_bias;
  std::atomic<uint64_t> write_cursor;    // where the next record goes
  std::atomic<uint64_t> oldest;          // first segment not yet reclaimed
  std::atomic<uint64_t> bump;            // first offset never handed out
  std::atomic<uint64_t> alloc_intent;    // segment being taken for a jump
  std::atomic<uint64_t> reclaim_intent;  // segment being freed
  std::array<std::atomic<uint64_t>, size_classes> free_head;

  alignas(128) std::atomic<uint64_t> put_seq;      // records committed and counted
  std::atomic<uint32_t> put_signal;                // bumped to wake consumers
  alignas(128) std::atomic<uint64_t> get_waiters;  // a sleep_word
  // 1 while the consumers take items as fast as they come (a hint for the
  // producers, written only when it changes: it shares a line every put
  // reads, which must stay in the producers' caches).
  std::atomic<uint32_t> get_streaming;

  // The consumers' side, under get_lock.
  alignas(128) lock_state get_lock;
  side_bias get_bias;
  std::atomic<uint64_t> read_cursor;

  alignas(128) std::atomic<uint64_t> get_seq;      // records taken
  std::atomic<uint32_t> get_signal;                // bumped to wake producers
  alignas(128) std::atomic<uint64_t> put_waiters;  // a sleep_word

  // JoinableQueue.
  alignas(128) std::atomic<uint64_t> done_count;
  std::atomic<uint32_t> done_signal;
  std::atomic<uint64_t> join_waiters;  // a sleep_word
};
static_assert(sizeof(queue_control) <= unit);
// 128, not 64: the adjacent-line prefetcher pairs cache lines.
static_assert(queue_core::first_segment == unit &&
              queue_core::first_record == unit + segment_header);

namespace {

// Who sleeps on a signal, in one word: the sleepers in its high half, and in
// its low half how many of them a wake-up is already on its way to. A waker
// wakes only sleepers no wake-up is on its way to: a producer that feeds a
// sleeping consumer item by item makes one FUTEX_WAKE, not one per item
// until the consumer runs (5-60 us on a busy machine). Each wake-up counted
// wakes a sleeper that then leaves, taking one count with it: one asleep in
// the kernel is woken, and one not yet there finds the signal changed. A
// sleeper that leaves for another reason (its time, or the work was there)
// takes a count too if there is one, which can only make the next waker wake
// one more than needed, never one fewer. (A process killed asleep holds at
// most one count for ever.)
constexpr uint64_t one_sleeper = uint64_t{1} << 32;
constexpr uint32_t sleepers_in(uint64_t word) {
  return static_cast<uint32_t>(word >> 32);
}
constexpr uint32_t woken_in(uint64_t word) {
  return static_cast<uint32_t>(word);
}

void leave_sleepers(std::atomic<uint64_t>& sleep) {
  uint64_t word = sleep.load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t sleepers = sleepers_in(word) - 1;
    const uint32_t woken = std::min(woken_in(word) == 0 ? 0 : woken_in(word) - 1, sleepers);
    if (sleep.compare_exchange_weak(word, uint64_t{sleepers} << 32 | woken,
                                    std::memory_order_relaxed))
      return;
  }
}

// Waits until `ready()` or the deadline: spins briefly, then sleeps on
// `signal` (bumped by wake() for sleepers `sleep` counts). Returns true when
// ready, or after a quiet sleep slice, so that the caller looks under its lock
// (a process that died mid-operation leaves work the hints do not show).
template <class Ready>
bool await(Ready ready, std::atomic<uint32_t>& signal, std::atomic<uint64_t>& sleep,
           const detail::deadline& deadline) {
  if (os::wait_awake(ready, spin_time, yield_rounds)) return true;
  const uint32_t seen = signal.load(std::memory_order_acquire);
  sleep.fetch_add(one_sleeper, std::memory_order_acq_rel);
  // Pairs with light_fence() in wake(): either we see the change, or the
  // waker sees us. Without it, sleep in short slices.
  auto slice = os::heavy_fence() ? sleep_slice : unfenced_slice;
  if (ready()) {
    leave_sleepers(sleep);
    return true;
  }
  if (deadline.limited()) slice = std::min(slice, deadline.left().duration());
  if (slice > 0ns) os::futex_wait(signal, seen, slice);
  leave_sleepers(sleep);
  return ready() || !deadline.passed();
}

// Wakes up to `count` sleepers on `signal` that no wake-up is on its way to,
// if any; called after the change they wait for was published.
void wake(std::atomic<uint32_t>& signal, std::atomic<uint64_t>& sleep, int count) {
  uint64_t word = 0;
  if (os::light_fence()) {
    word = sleep.load(std::memory_order_relaxed);
  } else {
    // The read-modify-write orders the check after the publication, as a
    // fence would (TSan cannot see std::atomic_thread_fence).
    word = sleep.fetch_add(0, std::memory_order_acq_rel);
  }
  for (;;) {
    const uint32_t sleepers = sleepers_in(word);
    const uint32_t woken = woken_in(word);
    if (woken >= sleepers) return;  // none, or each has a wake-up coming
    const uint32_t more = count <= 0 ? 0 : std::min(sleepers - woken, static_cast<uint32_t>(count));
    if (more == 0) return;
    if (sleep.compare_exchange_weak(word, uint64_t{sleepers} << 32 | (woken + more),
                                    std::memory_order_relaxed))
      break;
  }
  signal.fetch_add(1, std::memory_order_release);
  os::futex_wake(signal, count);
}

// The calling thread, as a bias names its owner: its pid and thread id.
uint64_t thread_word() noexcept {
  return static_cast<uint64_t>(static_cast<uint32_t>(os::self_identity().pid)) << 32 |
         static_cast<uint32_t>(os::self_thread_id());
}

// The status of a received descriptor; nullopt if it cannot be looked at.
std::optional<os::file_status> status_of(int fd) noexcept {
  try {
    return os::status(fd);
  } catch (const std::system_error&) {
    return std::nullopt;
  }
}

}  // namespace

// Maps the first `length` bytes of `fd` as a view in front of `older`.
queue_core::view* queue_core::map_view(int fd, uint64_t length, view* older) {
  std::byte* const base = os::map_shared(fd, length, false);
  try {
    return new view{base, length, older};
  } catch (...) {
    os::unmap(base, length);
    throw;
  }
}

void queue_core::map(unique_fd fd) {
  size_ = address_range;
  view_.store(map_view(fd.get(), first_view, nullptr), std::memory_order_release);
  fd_ = fd.release();
}

void queue_core::grow(uint64_t end) {
  end = std::min(end, size_);
  view* current = view_.load(std::memory_order_acquire);
  while (current->length < end) {
    const uint64_t length = std::min(size_, std::max(std::bit_ceil(end), 2 * current->length));
    view* const larger = map_view(fd_, length, current);
    // Another thread may have grown it meanwhile: then this one is dropped.
    if (view_.compare_exchange_strong(current, larger, std::memory_order_acq_rel)) return;
    os::unmap(larger->base, length);
    delete larger;
  }
}

void queue_core::unmap_all() noexcept {
  for (view* v = view_.exchange(nullptr); v != nullptr;) {
    view* older = v->older;
    os::unmap(v->base, v->length);
    delete v;
    v = older;
  }
}

queue_core::queue_core(uint64_t fingerprint, std::size_t max_items) {
  // Sparse: pages are taken as records are written, and punched out again as
  // segments are freed (a memfd has no size limit, so the range costs nothing).
  os::unique_fd fd = os::memory_file("mp-queue");
  os::resize_file(fd.get(), address_range);
  map(std::move(fd));

  auto* c = ::new (static_cast<void*>(at(0))) queue_control{};
  c->magic = magic;
  c->fingerprint = fingerprint;
  c->size = address_range;
  c->max_items = max_items;
  const uint64_t first = unit;
  ::new (static_cast<void*>(at(first))) segment_head{unit, 0, 0, 0, 0};
  c->bump.store(first + unit, std::memory_order_relaxed);
  c->oldest.store(first, std::memory_order_relaxed);
  c->write_cursor.store(pack(first, first + segment_header), std::memory_order_relaxed);
  c->read_cursor.store(pack(first, first + segment_header), std::memory_order_relaxed);
}

queue_core::queue_core(unique_fd fd, uint64_t fingerprint) {
  const auto file = status_of(fd.get());
  if (!file || !file->regular || file->size != address_range)
    throw decode_error("a received queue's descriptor is not a queue's memory");
  map(std::move(fd));
  const queue_control& c = control();
  const bool is_queue = c.magic == magic && c.size == address_range;
  if (!is_queue || c.fingerprint != fingerprint) {
    const bool older = c.magic == magic_before;
    unmap_all();
    close_fd(fd_);
    throw decode_error(is_queue ? "a received queue holds items of another type"
                       : older  ? "a received queue was made by an older mp, whose records "
                                  "this one does not read"
                                : "a received queue's memory is not a queue");
  }
}

namespace {

// The queues this process received and still holds, by their memory's file.
struct received_queues {
  std::mutex mutex;
  std::map<std::pair<uint64_t, uint64_t>, std::weak_ptr<queue_core>> cores;
};

received_queues& received_cache() {
  // Never destroyed (a queue may be decoded during exit). Held across fork,
  // so that a forked child never inherits it locked by a thread it lacks.
  static received_queues* cache = [] {
    auto* c = new received_queues;
    ::pthread_atfork([] { received_cache().mutex.lock(); }, [] { received_cache().mutex.unlock(); },
                     [] { received_cache().mutex.unlock(); });
    return c;
  }();
  return *cache;
}

}  // namespace

std::shared_ptr<queue_core> queue_core::received(unique_fd fd, uint64_t fingerprint) {
  const auto file = status_of(fd.get());
  if (!file) throw decode_error("a received queue's descriptor is not a queue's memory");
  received_queues& cache = received_cache();
  std::lock_guard lock(cache.mutex);
  const std::pair key{file->device, file->inode};
  if (const auto found = cache.cores.find(key); found != cache.cores.end()) {
    if (auto core = found->second.lock()) {
      if (core->control().fingerprint != fingerprint)
        throw decode_error("a received queue holds items of another type");
      return core;  // `fd`, a second descriptor for the same memory, is closed
    }
  }
  auto core = std::make_shared<queue_core>(std::move(fd), fingerprint);
  std::erase_if(cache.cores, [](const auto& entry) { return entry.second.expired(); });
  cache.cores[key] = core;
  return core;
}

queue_core::~queue_core() {
  unmap_all();
  close_fd(fd_);
}

queue_control& queue_core::control() const noexcept {
  return *std::launder(reinterpret_cast<queue_control*>(at(0)));
}

void queue_core::check_open() const {
  if (closed_) throw usage_error("the queue is closed");
}

void throw_bad_item_size(std::size_t size, std::string_view type) {
  throw decode_error("a queue record of " + std::to_string(size) + " bytes cannot hold a '" +
                     std::string(type) + "'");
}

void queue_core::corrupt(const char* what) const {
  throw decode_error(std::string("queue memory is corrupt: ") + what);
}

std::size_t queue_core::max_items() const noexcept {
  return static_cast<std::size_t>(control().max_items);
}

std::size_t queue_core::qsize() const noexcept {
  const queue_control& c = control();
  const uint64_t got = c.get_seq.load(std::memory_order_acquire);
  const uint64_t put = c.put_seq.load(std::memory_order_acquire);
  return put > got ? static_cast<std::size_t>(put - got) : 0;
}

uint64_t queue_core::segment_capacity(uint64_t segment) const noexcept {
  return reinterpret_cast<const segment_head*>(at(segment))->capacity;
}

// ---- entering a side, and repair ---------------------------------------------

// Enters a side: its bias owner without the lock while the bias holds, anyone
// else under the lock (revoking the bias first). Returns how, or entry::none
// on timeout.
queue_core::entry queue_core::enter_side(lock_state& lock, side_bias& bias, mp::timeout timeout,
                                         void (queue_core::*repair)()) {
  if (bias.state.load(std::memory_order_relaxed) == bias_held &&
      bias.owner.load(std::memory_order_relaxed) == thread_word()) {
    bias.busy.store(1, std::memory_order_relaxed);
    // Either the revoker's heavy fence makes it see us inside, or we see the
    // bias revoked here. (Without membarrier, which a bias is never granted
    // without, a read-modify-write orders the two as a fence would; TSan
    // cannot see std::atomic_thread_fence.)
    if (!os::light_fence()) (void)bias.busy.fetch_add(0, std::memory_order_seq_cst);
    if (bias.state.load(std::memory_order_acquire) == bias_held) return entry::biased;
    bias.busy.store(0, std::memory_order_release);
    os::futex_wake(bias.busy, 1);  // the revoker may sleep on it
  }
  if (!lock_side(lock, timeout, repair)) return entry::none;
  bool fenced = true;
  switch (bias.state.load(std::memory_order_relaxed)) {
    case bias_none:
      // The owner's side of the handshake needs this process registered for
      // membarrier; without it, the side simply stays unbiased.
      if (os::light_fence()) {
        bias.owner.store(thread_word(), std::memory_order_relaxed);
        bias.owner_start.store(os::self_identity().start_time, std::memory_order_relaxed);
        bias.state.store(bias_held, std::memory_order_release);
      }
      return entry::locked;
    case bias_held:
      bias.state.store(bias_revoked, std::memory_order_relaxed);
      fenced = os::heavy_fence();
      if (!fenced) (void)bias.state.fetch_add(0, std::memory_order_seq_cst);
      break;
    default:
      break;
  }
  // Revoked (now or earlier): the owner may still be inside, from before.
  if (bias.busy.load(std::memory_order_acquire) != 0 || !fenced) {
    bool out = false;
    try {
      out = wait_out_owner(bias, timeout, repair, fenced);
    } catch (...) {
      lock_release(lock, false);  // a repair that failed: the next holder tries again
      throw;
    }
    if (!out) {
      lock_release(lock, false);
      return entry::none;
    }
  }
  return entry::locked;
}

void queue_core::leave_side(lock_state& lock, side_bias& bias, entry how) {
  if (how == entry::locked) {
    lock_release(lock, false);
    return;
  }
  bias.busy.store(0, std::memory_order_release);
  // A revoker waiting for us sleeps on `busy` (it revoked before its heavy
  // fence, so a revocation it waits on is seen here).
  if (bias.state.load(std::memory_order_relaxed) != bias_held) os::futex_wake(bias.busy, 1);
}

// Under the side's lock, after the bias was revoked: waits until its owner is
// out of the side. If the owner died inside, repairs what it left half done.
// `fenced` false: the revocation went without membarrier, so the owner may
// have entered unseen a moment ago; busy must stay 0 across a pause. False if
// `timeout` passed first (counted from here: this wait is rare, and the
// common path reads no clock for it).
bool queue_core::wait_out_owner(side_bias& bias, mp::timeout timeout, void (queue_core::*repair)(),
                                bool fenced) {
  const detail::deadline deadline(timeout);
  const auto out = [&] { return bias.busy.load(std::memory_order_acquire) == 0; };
  for (;;) {
    if (os::wait_awake(out, spin_time, yield_rounds)) {
      if (fenced) return true;
      std::this_thread::sleep_for(owner_pause);
      if (out()) return true;
      continue;
    }
    const uint64_t owner = bias.owner.load(std::memory_order_relaxed);
    const os::process_identity holder{static_cast<std::int32_t>(owner >> 32),
                                      bias.owner_start.load(std::memory_order_relaxed)};
    if (!os::is_running(holder)) {
      (this->*repair)();
      bias.busy.store(0, std::memory_order_release);
      return true;
    }
    if (deadline.passed()) return false;
    auto slice = std::chrono::nanoseconds(owner_pause);
    if (deadline.limited()) slice = std::min(slice, deadline.left().duration());
    os::futex_wait(bias.busy, 1, slice);
  }
}

// Takes a side's lock; false on timeout. If its holder died, repairs what it
// left half done before going on (see repair_put and repair_get).
bool queue_core::lock_side(lock_state& lock, mp::timeout timeout, void (queue_core::*repair)()) {
  try {
    if (!timeout.limited()) {
      lock_acquire_blocking(lock, false);
    } else if (!lock_acquire(lock, false, timeout)) {
      return false;
    }
  } catch (const owner_died&) {
    try {
      (this->*repair)();
    } catch (...) {
      lock_release(lock, false);  // still inconsistent: the next holder tries again
      throw;
    }
    lock.inconsistent.store(0, std::memory_order_release);
  }
  return true;
}

// A producer died holding the put lock (or inside under the bias). Its shared
// changes, in order, were: intents, the records (invisible until their
// stamp), the stamp (the commit), put_seq, then write_cursor. Finish what was
// committed, undo the rest.
void queue_core::repair_put() {
  queue_control& c = control();
  map_through(c.bump.load(std::memory_order_acquire));
  if (const uint64_t s = c.reclaim_intent.load(std::memory_order_relaxed); s != 0) {
    // Done if it is still the oldest (not yet unlinked) or already pushed.
    const auto cls = std::countr_zero(segment_capacity(s) / unit);
    if (c.oldest.load(std::memory_order_relaxed) != s &&
        c.free_head[static_cast<std::size_t>(cls)].load(std::memory_order_relaxed) != s)
      release_segment(s);
    c.reclaim_intent.store(0, std::memory_order_relaxed);
  }

  const uint64_t cursor = c.write_cursor.load(std::memory_order_relaxed);
  const uint64_t counted = c.put_seq.load(std::memory_order_relaxed);
  uint64_t segment = cursor_segment(cursor);
  uint64_t position = cursor_position(cursor);
  uint64_t header = word_at(at(position)).load(std::memory_order_acquire);
  const bool newer = stamp_in(header) == stamp_of(counted + 1);
  if (newer || (counted != 0 && stamp_in(header) == stamp_of(counted))) {
    // Committed: move past it (through a jump to the record it leads to).
    if (is_jump(header)) {
      segment = jump_target(header);
      position = segment + segment_header;
      header = word_at(at(position)).load(std::memory_order_relaxed);
    }
    c.put_seq.store(newer ? counted + 1 : counted, std::memory_order_release);
    c.write_cursor.store(pack(segment, position + item_of(at(position), header).record_end()),
                         std::memory_order_release);
  }
  if (const uint64_t s = c.alloc_intent.load(std::memory_order_relaxed); s != 0) {
    // Taken but not linked in: give it back, unless it never left the free
    // list or the untouched range.
    const auto cls = std::countr_zero(segment_capacity(s) / unit);
    if (s != segment &&
        c.free_head[static_cast<std::size_t>(cls)].load(std::memory_order_relaxed) != s &&
        c.bump.load(std::memory_order_relaxed) != s)
      release_segment(s);
    c.alloc_intent.store(0, std::memory_order_relaxed);
  }
}

// A consumer died holding the get lock (or inside under the bias). Its shared
// changes were: following a jump (read_cursor), then per record get_seq, then
// read_cursor. Only the last gap needs mending: a record counted as taken but
// not yet passed.
void queue_core::repair_get() {
  queue_control& c = control();
  map_through(c.bump.load(std::memory_order_acquire));
  const uint64_t cursor = c.read_cursor.load(std::memory_order_relaxed);
  const uint64_t taken = c.get_seq.load(std::memory_order_relaxed);
  const uint64_t position = cursor_position(cursor);
  if (taken == 0) return;
  const uint64_t header = word_at(at(position)).load(std::memory_order_acquire);
  if (stamp_in(header) != stamp_of(taken) || is_jump(header)) return;
  c.read_cursor.store(
      pack(cursor_segment(cursor), position + item_of(at(position), header).record_end()),
      std::memory_order_release);
}

// ---- segments ---------------------------------------------------------------

uint64_t queue_core::allocate(uint64_t bytes) {
  queue_control& c = control();
  const uint64_t units = (bytes + unit - 1) / unit;
  const auto cls = static_cast<std::size_t>(std::bit_width(std::bit_ceil(units)) - 1);
  const uint64_t capacity = unit << cls;
  if (cls >= size_classes || capacity > size_ - unit)
    throw process_error("an item of " + std::to_string(bytes) +
                        " bytes does not fit in a queue (limit " + std::to_string(size_ >> 30) +
                        " GiB)");
  uint64_t s = c.free_head[cls].load(std::memory_order_relaxed);
  if (s != 0) {
    c.alloc_intent.store(s, std::memory_order_relaxed);
    auto* head = reinterpret_cast<segment_head*>(at(s));
    c.free_head[cls].store(head->next_free, std::memory_order_relaxed);
  } else {
    s = c.bump.load(std::memory_order_relaxed);
    if (capacity > size_ - s)
      throw process_error("the queue's address range (" + std::to_string(size_ >> 30) +
                          " GiB) is used up by the items it holds");
    map_through(s + capacity);
    ::new (static_cast<void*>(at(s))) segment_head{capacity, 0, 0, 0, 0};
    c.alloc_intent.store(s, std::memory_order_relaxed);
    c.bump.store(s + capacity, std::memory_order_relaxed);
  }
  reinterpret_cast<segment_head*>(at(s))->next = 0;
  return s;
}

void queue_core::release_segment(uint64_t s) {
  queue_control& c = control();
  auto* head = reinterpret_cast<segment_head*>(at(s));
  const auto cls = static_cast<std::size_t>(std::countr_zero(head->capacity / unit));
  head->punched = 0;
  head->next_free = c.free_head[cls].load(std::memory_order_relaxed);
  c.free_head[cls].store(s, std::memory_order_relaxed);
  trim_free_list(cls, resident_segments);
}

// Punches all but the first `keep` segments of a free list. Punched ones form
// the tail of the list (pushes and pops happen at its head), so the walk stops
// at the first one.
void queue_core::trim_free_list(std::size_t cls, uint32_t keep) {
  queue_control& c = control();
  uint32_t index = 0;
  for (uint64_t s = c.free_head[cls].load(std::memory_order_relaxed); s != 0; ++index) {
    auto* head = reinterpret_cast<segment_head*>(at(s));
    if (index >= keep) {
      if (head->punched != 0) break;
      // The header page stays, for the list. Failure only means the memory
      // stays resident.
      (void)os::punch_hole(fd_, s + page, head->capacity - page);
      head->punched = 1;
      std::atomic_ref<uint64_t>(head->punches).fetch_add(1, std::memory_order_relaxed);
    }
    s = head->next_free;
  }
}

// Maps [from, to) of `segment` into this process with one call rather than a
// page fault per page (optional: without it, on kernels before 5.14, the pages
// fault in one by one), unless `mapped` says this process did so already for
// the segment's current pages in the current view. Asking the kernel again is
// not free: it walks every page (3 ms of the 10 a 64 MiB item took per side).
void queue_core::populate_record(mapped_pages& mapped, uint64_t segment, uint64_t from, uint64_t to,
                                 bool for_write) {
  const std::byte* const base = at(0);
  const uint64_t punches =
      std::atomic_ref<uint64_t>(reinterpret_cast<segment_head*>(at(segment))->punches)
          .load(std::memory_order_relaxed);
  mapped_pages::entry* slot = &mapped.entries[mapped.next];
  for (auto& e : mapped.entries) {
    if (e.base != base || e.segment != segment) continue;
    if (e.punches == punches && e.from <= from && to <= e.to) return;
    slot = &e;
    break;
  }
  if (slot == &mapped.entries[mapped.next]) mapped.next = (mapped.next + 1) % mapped.entries.size();
  from &= ~(page - 1);
  if (!os::populate(at(from), ((to + page - 1) & ~(page - 1)) - from, for_write)) {
    *slot = {};
    return;
  }
  const bool extends = slot->base == base && slot->segment == segment && slot->punches == punches;
  *slot = {base, segment, punches, extends ? std::min(slot->from, from) : from,
           extends ? std::max(slot->to, to) : to};
}

// Frees the segments every consumer has left.
void queue_core::reclaim() {
  queue_control& c = control();
  const uint64_t reading = cursor_segment(c.read_cursor.load(std::memory_order_acquire));
  for (uint64_t s = c.oldest.load(std::memory_order_relaxed); s != reading;
       s = c.oldest.load(std::memory_order_relaxed)) {
    c.reclaim_intent.store(s, std::memory_order_relaxed);
    c.oldest.store(reinterpret_cast<segment_head*>(at(s))->next, std::memory_order_relaxed);
    release_segment(s);
    c.reclaim_intent.store(0, std::memory_order_relaxed);
  }
}

// ---- put --------------------------------------------------------------------

void queue_core::put_locked(const void* item, encoder encode) {
  queue_control& c = control();
  // Another process may have handed out segments this one has not mapped yet.
  map_through(c.bump.load(std::memory_order_relaxed));
  const uint64_t n = c.put_seq.load(std::memory_order_relaxed) + 1;
  const uint64_t cursor = c.write_cursor.load(std::memory_order_relaxed);
  const uint64_t segment = cursor_segment(cursor);
  const uint64_t position = cursor_position(cursor);
  // (The mapping is fixed until allocate() below: one look at it.)
  std::byte* const base = at(0);
  const uint64_t end = segment + reinterpret_cast<const segment_head*>(base + segment)->capacity;

  // Encode in place; if it does not fit, the pass still measures it. A record
  // always leaves room behind it for a jump (so position + 8 <= end), but
  // not always for another record. (A long item always takes a segment of
  // its own, below: the room here is for a short one.)
  const uint64_t left =
      end - position >= 2 * record_header ? end - position - 2 * record_header : 0;
  const uint64_t room = std::min(left, uint64_t{long_size - 1});
  byte_buffer window = byte_buffer::window(base + position + record_header, room);
  encode(item, window);
  if (!window.overflowed()) {
    const uint64_t next = position + record_header + align8(window.size());
    word_at(base + next).store(0, std::memory_order_relaxed);
    word_at(base + position)
        .store(header_of(n, static_cast<uint32_t>(window.size())),
               std::memory_order_release);  // commit
    c.put_seq.store(n, std::memory_order_release);
    c.write_cursor.store(pack(segment, next), std::memory_order_release);
    // Once per cache line this record moved into (see write_ahead).
    if ((position / cache_line != next / cache_line) && next + write_ahead + cache_line <= end &&
        c.get_streaming.load(std::memory_order_relaxed) != 0)
      os::prefetch_for_write(base + next + write_ahead);
    return;
  }

  // Segments are reclaimed only here, when one is needed: looking at the
  // consumers' cursor on every put would pull their cache line over.
  reclaim();
  const uint64_t size = window.needed();
  const bool long_item = size >= long_size;
  const record_item placed{long_item ? long_header : record_header, size};
  const uint64_t fresh = allocate(segment_header + placed.record_end() + record_header);
  const uint64_t target = fresh + segment_header;
  if (size >= populate_threshold)
    populate_record(put_mapped_, fresh, fresh, target + placed.record_end() + record_header, true);
  try {
    byte_buffer second =
        byte_buffer::window(at(target + placed.offset), segment_capacity(fresh) - segment_header -
                                                            placed.offset - record_header);
    encode(item, second);
    if (second.overflowed() || second.size() != size)
      throw usage_error("an item encoded to different sizes on two passes");
  } catch (...) {
    release_segment(fresh);
    c.alloc_intent.store(0, std::memory_order_relaxed);
    throw;
  }
  const uint64_t next = target + placed.record_end();
  word_at(at(next)).store(0, std::memory_order_relaxed);
  if (long_item) word_at(at(target + record_header)).store(size, std::memory_order_relaxed);
  word_at(at(target))
      .store(header_of(n, long_item ? long_size : static_cast<uint32_t>(size)),
             std::memory_order_release);
  reinterpret_cast<segment_head*>(at(segment))->next = fresh;
  word_at(at(position)).store(header_of(n, jump_to(fresh)),
                              std::memory_order_release);  // commit
  c.put_seq.store(n, std::memory_order_release);
  c.write_cursor.store(pack(fresh, next), std::memory_order_release);
  c.alloc_intent.store(0, std::memory_order_relaxed);
}

bool queue_core::put(const void* item, encoder encode, bool block, mp::timeout timeout) {
  check_open();
  queue_control& c = control();
  // (Unlimited when not blocking: it is not used then, and costs no clock read.)
  const detail::deadline deadline(block ? timeout : mp::timeout());
  const uint64_t max = c.max_items;
  for (;;) {
    // A non-blocking put still waits for the lock: it is held only while one
    // item is written.
    const entry how = enter_side(c.put_lock, c.put_bias, block ? deadline.left() : mp::timeout(),
                                 &queue_core::repair_put);
    if (how == entry::none) return false;
    if (max != 0 && [&] {
          const uint64_t put = c.put_seq.load(std::memory_order_relaxed);
          const uint64_t got = c.get_seq.load(std::memory_order_acquire);
          return put > got && put - got >= max;
        }()) {
      leave_side(c.put_lock, c.put_bias, how);
      if (!block) return false;
      const bool room = await(
          [&] {
            const uint64_t now_put = c.put_seq.load(std::memory_order_acquire);
            const uint64_t now_got = c.get_seq.load(std::memory_order_acquire);
            return now_put < now_got || now_put - now_got < max;
          },
          c.get_signal, c.put_waiters, deadline);
      if (!room) return false;
      continue;
    }
    try {
      put_locked(item, encode);
    } catch (...) {
      leave_side(c.put_lock, c.put_bias, how);
      throw;
    }
    leave_side(c.put_lock, c.put_bias, how);
    wake(c.put_signal, c.get_waiters, 1);
    return true;
  }
}

// ---- get --------------------------------------------------------------------

bool queue_core::take_locked(void* out, decoder decode) {
  queue_control& c = control();
  const uint64_t expected = c.get_seq.load(std::memory_order_relaxed) + 1;
  uint64_t cursor = c.read_cursor.load(std::memory_order_relaxed);
  // A producer leaves at most one jump before a record, into a fresh segment
  // whose first record is data; anything else is damage, not a queue.
  for (bool jumped = false;; jumped = true) {
    const uint64_t position = cursor_position(cursor);
    const uint64_t segment = cursor_segment(cursor);
    if (position + record_header > mapped()) {
      // A segment another process handed out after this one last looked.
      const uint64_t handed_out = c.bump.load(std::memory_order_acquire);
      if (position + record_header > handed_out || handed_out > size_)
        corrupt("a segment lies beyond the memory the queue has handed out");
      map_through(handed_out);
    }
    const uint64_t header = word_at(at(position)).load(std::memory_order_acquire);
    if (stamp_in(header) != stamp_of(expected)) return false;
    const uint64_t capacity = segment_capacity(segment);
    // (A power of two tested by hand: std::has_single_bit is a libgcc call
    // without -mpopcnt.)
    if (capacity < unit || ((capacity / unit) & (capacity / unit - 1)) != 0 ||
        capacity % unit != 0 || capacity > size_ - segment)
      corrupt("a segment has an impossible size");
    // Producers hand out segments below `bump` only: a segment past it was
    // never written, and whatever its header claims must not be read (nor
    // its pages populated: a claim of gigabytes would allocate them). The
    // line is the producers', written on every put: it is read only once a
    // record is there, and only when the segment lies past the value seen
    // last (bump only grows, so an older value is a safe bound).
    if (const uint64_t seen = handed_out_seen_.load(std::memory_order_relaxed);
        segment >= seen || capacity > seen - segment) {
      const uint64_t handed_out = c.bump.load(std::memory_order_acquire);
      if (segment >= handed_out || capacity > handed_out - segment)
        corrupt("a segment lies beyond the memory the queue has handed out");
      handed_out_seen_.store(handed_out, std::memory_order_relaxed);
    }
    map_through(segment + capacity);
    if (is_jump(header)) {
      const uint64_t target = jump_target(header);
      if (jumped || target < unit || target >= size_ || target == segment)
        corrupt("a jump leads nowhere a record can be");
      cursor = pack(target, target + segment_header);
      c.read_cursor.store(cursor, std::memory_order_release);
      continue;
    }
    // (Positions are 8-aligned and segments end at a unit, so the record's
    // end, rounded up, fits if its size does.)
    const uint64_t left = segment + capacity - position;
    if (left < long_header + record_header && size_half_in(header) == long_size)
      corrupt("a record runs past its segment");
    const record_item item = item_of(at(position), header);
    if (left < item.offset + record_header || item.size > left - item.offset - record_header)
      corrupt("a record runs past its segment");
    const uint64_t next = position + item.record_end();
    struct commit {
      queue_control& c;
      uint64_t expected, cursor;
      ~commit() {
        c.get_seq.store(expected, std::memory_order_release);
        c.read_cursor.store(cursor, std::memory_order_release);
      }
    } consume{c, expected, pack(segment, next)};
    if (item.size >= populate_threshold)
      populate_record(get_mapped_, segment, position, position + item.offset + item.size, false);
    // Consumed even if decoding throws, as Python consumes an item it cannot
    // unpickle.
    decode(std::span<const std::byte>(at(position + item.offset), item.size), out);
    return true;
  }
}

bool queue_core::get(void* out, decoder decode, bool block, mp::timeout timeout) {
  check_open();
  queue_control& c = control();
  const detail::deadline deadline(block ? timeout : mp::timeout());
  bool awaited = false;
  bool backed_off = false;
  for (;;) {
    const entry how = enter_side(c.get_lock, c.get_bias, block ? deadline.left() : mp::timeout(),
                                 &queue_core::repair_get);
    if (how == entry::none) return false;
    bool taken = false;
    try {
      taken = take_locked(out, decode);
    } catch (...) {
      leave_side(c.get_lock, c.get_bias, how);
      if (c.max_items != 0) wake(c.get_signal, c.put_waiters, 1);
      throw;
    }
    leave_side(c.get_lock, c.get_bias, how);
    if (taken) {
      // (A hint, changed only when it changes: two threads racing here leave
      // one of their views, which is as good.)
      if (streaming_.load(std::memory_order_relaxed) == awaited) {
        streaming_.store(!awaited, std::memory_order_relaxed);
        c.get_streaming.store(!awaited, std::memory_order_relaxed);
      }
      if (c.max_items != 0) wake(c.get_signal, c.put_waiters, 1);
      return true;
    }
    if (!block) return false;
    if (!backed_off && streaming_.load(std::memory_order_relaxed) && os::spinning_helps()) {
      // In a stream, the producer is writing the very record we would poll:
      // give it a moment to fill the line first (see stream_backoff).
      backed_off = true;
      const auto end = clock::now() + stream_backoff;
      do {
        for (int i = 0; i < 4; ++i) os::cpu_relax();
      } while (clock::now() < end);
      continue;
    }
    awaited = true;
    // Polls the stamp where the next record will be, not a counter: that line
    // is the one the producer writes anyway, so waiting costs it no extra
    // cache-line transfer. get_seq is read on both sides of the cursor so that
    // a consumer's commit in between is not misread; a record counted but
    // not yet passed (its consumer is committing, or died) counts as ready.
    const bool ready = await(
        [&] {
          const uint64_t count = c.get_seq.load(std::memory_order_acquire);
          const uint64_t cursor = c.read_cursor.load(std::memory_order_acquire);
          if (c.get_seq.load(std::memory_order_acquire) != count) return true;
          // (A cursor past the queue's memory is damage, which the next take
          // reports.)
          const uint64_t position = cursor_position(cursor);
          if (position + record_header > size_) return true;
          map_through(position + record_header);
          const uint32_t stamp = stamp_in(word_at(at(position)).load(std::memory_order_acquire));
          return stamp == stamp_of(count + 1) || (count != 0 && stamp == stamp_of(count));
        },
        c.put_signal, c.get_waiters, deadline);
    if (!ready) return false;
  }
}

// ---- JoinableQueue ----------------------------------------------------------

void queue_core::task_done() {
  queue_control& c = control();
  uint64_t done = c.done_count.load(std::memory_order_relaxed);
  for (;;) {
    // Items put, as far as anyone can tell yet: a consumer may count an item
    // before its producer has.
    const uint64_t put = std::max(c.put_seq.load(std::memory_order_acquire),
                                  c.get_seq.load(std::memory_order_acquire));
    if (done >= put) throw usage_error("task_done() called more times than items were put");
    if (c.done_count.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) break;
  }
  wake(c.done_signal, c.join_waiters, INT_MAX);
}

bool queue_core::join(mp::timeout timeout) {
  queue_control& c = control();
  const detail::deadline deadline(timeout);
  const auto finished = [&] {
    return c.done_count.load(std::memory_order_acquire) >=
           c.put_seq.load(std::memory_order_acquire);
  };
  while (!finished()) {
    if (!await(finished, c.done_signal, c.join_waiters, deadline)) return false;
  }
  return true;
}

}  // namespace mp::detail
