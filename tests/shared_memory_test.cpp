// SPDX-License-Identifier: MIT
// Tests of mp::shared_memory and mp::shareable_list (mp/shared_memory.hpp): naming, the
// destructor policy, sharing with children, crash safety and defensive decoding.
#include "mp/shared_memory.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"
#include "mp/serialization.hpp"
#include "mp/testing/testing.hpp"

namespace {

using item = mp::shareable_list::item;

void sleep_forever() {
  for (;;) ::pause();
}

// Whether /dev/shm has an entry for `name` (as unique_name gives it, with a leading '/').
bool exists(const std::string& name) {
  return mp::testing::shm_entries().contains(name.substr(1));
}

// Ends a forked child with `code` unless `ok`.
void require(bool ok, int code) {
  if (!ok) throw mp::system_exit{code};
}

mp::bytes to_bytes(std::string_view text) {
  const auto view = std::as_bytes(std::span(text));
  return mp::bytes(view.begin(), view.end());
}

// Starts a child that creates the block `name` and writes 42 to its first byte, opens the block
// here, then kills the child, leaving the block behind without its creator. The block returned
// holds it, so that orphan sweeps of tests running at the same time leave it alone for now.
mp::shared_memory crash_creator(const std::string& name) {
  auto [reader, writer] = mp::pipe(false);
  mp::process creator{[](const std::string& block_name, mp::connection out) {
                        auto block = mp::shared_memory::create(block_name, 64);
                        block.data()[0] = std::byte{42};
                        out.send(true);
                        sleep_forever();
                      },
                      name, std::move(writer)};
  creator.start();
  if (!reader.recv<bool>()) throw std::logic_error("the creator did not start");
  auto holder = mp::shared_memory::open(name);
  creator.kill();
  creator.join();
  if (creator.exitcode() != -SIGKILL) throw std::logic_error("the creator was not killed");
  return holder;
}

TEST(shared_memory, create_open_and_unlink_round_trip) {
  const std::string name = mp::testing::unique_name("shm");
  auto creator = mp::shared_memory::create(name, 100);
  EXPECT_EQ(creator.name(), name.substr(1));  // reported without the '/', as Python does
  EXPECT_EQ(creator.size(), 100u);
  EXPECT_EQ(creator.bytes().size(), 100u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(creator.data()) % 4096, 0u);
  EXPECT_TRUE(creator.owns_name());
  EXPECT_TRUE(std::all_of(creator.bytes().begin(), creator.bytes().end(),
                          [](std::byte b) { return b == std::byte{0}; }));
  std::memcpy(creator.data(), "hello", 5);

  auto opener = mp::shared_memory::open(name.substr(1));  // without the '/' too
  EXPECT_FALSE(opener.owns_name());
  EXPECT_EQ(opener.name(), creator.name());
  EXPECT_EQ(opener.size(), 100u);
  EXPECT_EQ(std::memcmp(opener.data(), "hello", 5), 0);
  opener.data()[99] = std::byte{7};
  EXPECT_EQ(creator.data()[99], std::byte{7});

  opener.unlink();  // any holder may unlink, as in Python
  EXPECT_FALSE(exists(name));
  EXPECT_THROW(mp::shared_memory::open(name), mp::shared_memory_not_found);
  EXPECT_THROW(opener.unlink(), mp::shared_memory_not_found);
  EXPECT_EQ(creator.data()[99], std::byte{7});  // the mappings outlive the name
}

TEST(shared_memory, an_anonymous_block_is_shared_with_a_forked_child) {
  MP_FORK_ONLY("the child uses the parent's object, captured by reference, in memory fork copied");
  auto block = mp::shared_memory::create(4096);
  EXPECT_TRUE(block.name().empty());
  EXPECT_GE(block.fd(), 0);
  EXPECT_FALSE(block.owns_name());
  block.data()[0] = std::byte{1};
  mp::process p{[&block] {
    require(block.data()[0] == std::byte{1}, 2);
    block.data()[4095] = std::byte{9};
  }};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(block.data()[4095], std::byte{9});
  block.unlink();  // nothing to unlink
}

// A block passed as an argument: under every start method it arrives as the same memory.
void write_through_received(const mp::shared_memory& block, std::size_t expected_size) {
  require(!block.closed() && block.size() == expected_size, 2);
  require(!block.owns_name(), 3);  // a receiver is an opener: it never unlinks
  require(block.data()[0] == std::byte{1}, 4);
  block.data()[expected_size - 1] = std::byte{9};
}

TEST(shared_memory, an_anonymous_block_passed_as_an_argument_is_the_same_memory) {
  auto block = mp::shared_memory::create(5000);
  block.data()[0] = std::byte{1};
  mp::process p{write_through_received, std::ref(block), std::size_t{5000}};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(block.data()[4999], std::byte{9});
}

TEST(shared_memory, a_named_block_passed_as_an_argument_is_the_same_memory_and_keeps_its_name) {
  const std::string name = mp::testing::unique_name("shm");
  auto block = mp::shared_memory::create(name, 100);
  block.data()[0] = std::byte{1};
  mp::process p{[](const mp::shared_memory& received, const std::string& expected_name) {
                  require(received.name() == expected_name.substr(1), 5);
                  write_through_received(mp::shared_memory::open(received.name()), 100);
                },
                std::ref(block), name};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(block.data()[99], std::byte{9});
  EXPECT_TRUE(exists(name));  // the receiver's copy did not unlink it
  EXPECT_TRUE(block.owns_name());
}

TEST(shared_memory, a_block_sent_over_a_connection_arrives_mapped) {
  auto [a, b] = mp::pipe();
  const std::string name = mp::testing::unique_name("shm");
  auto named = mp::shared_memory::create(name, 64);
  auto anonymous = mp::shared_memory::create(64);
  a.send(named);
  a.send(anonymous);
  auto named_copy = b.recv<mp::shared_memory>();
  auto anonymous_copy = b.recv<mp::shared_memory>();
  EXPECT_EQ(named_copy.name(), name.substr(1));
  EXPECT_EQ(named_copy.size(), 64U);
  EXPECT_TRUE(anonymous_copy.name().empty());
  named.data()[63] = std::byte{3};
  anonymous.data()[63] = std::byte{4};
  EXPECT_EQ(named_copy.data()[63], std::byte{3});
  EXPECT_EQ(anonymous_copy.data()[63], std::byte{4});
  named.close();
  EXPECT_THROW(a.send(named), mp::usage_error);
}

// Decodes a shared_memory from a message naming `name` whose descriptor is `fd`.
mp::shared_memory decode_block(std::string name, mp::detail::unique_fd fd) {
  mp::detail::byte_buffer buffer;
  mp::detail::handle_sink sink;
  {
    mp::detail::output_archive out(buffer, &sink);
    out(name, out.add_handle(fd.get()));
  }
  mp::detail::handle_source source;
  source.fds.push_back(std::move(fd));
  mp::detail::input_archive in(buffer.span(), &source);
  mp::shared_memory block;
  in(block);
  return block;
}

TEST(shared_memory, a_received_descriptor_that_is_not_a_block_throws_decode_error) {
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  mp::detail::unique_fd keep(ends[1]);
  EXPECT_THROW(decode_block("", mp::detail::unique_fd(ends[0])), mp::decode_error);
  // An empty memfd is no block either; nor is a name with a '/'.
  EXPECT_THROW(decode_block("", mp::detail::unique_fd(::memfd_create("x", MFD_CLOEXEC))),
               mp::decode_error);
  auto real = mp::shared_memory::create(8);
  EXPECT_THROW(decode_block("../etc/passwd", mp::detail::unique_fd(::dup(real.fd()))),
               mp::decode_error);
  EXPECT_EQ(decode_block("", mp::detail::unique_fd(::dup(real.fd()))).size(), 8U);
  // A block this process may only read cannot be mapped read-write.
  const std::string path = "/proc/self/fd/" + std::to_string(real.fd());
  EXPECT_THROW(decode_block("", mp::detail::unique_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC))),
               mp::decode_error);
}

TEST(shared_memory, an_anonymous_block_that_looks_like_a_named_one_arrives_whole) {
  // Its bytes start as a named block's header does; an anonymous block has none.
  const auto named = mp::shared_memory::create(mp::testing::unique_name("shm"), 64);
  std::vector<std::byte> header(4096);
  ASSERT_EQ(::pread(named.fd(), header.data(), header.size(), 0), 4096);
  auto block = mp::shared_memory::create(8192);
  std::memcpy(block.data(), header.data(), header.size());
  auto received = decode_block("", mp::detail::unique_fd(::dup(block.fd())));
  EXPECT_EQ(received.size(), 8192U);
  EXPECT_EQ(received.data()[0], block.data()[0]);
}

TEST(shared_memory, opening_a_missing_name_throws_not_found) {
  const std::string name = mp::testing::unique_name("shm");
  EXPECT_THROW(mp::shared_memory::open(name), mp::shared_memory_not_found);
  try {
    mp::shared_memory::open(name);
  } catch (const mp::process_error& e) {  // the Python hierarchy's root
    EXPECT_NE(std::string(e.what()).find(name.substr(1)), std::string::npos) << e.what();
  }
}

TEST(shared_memory, creating_an_existing_name_throws_exists) {
  const std::string name = mp::testing::unique_name("shm");
  auto first = mp::shared_memory::create(name, 10);
  EXPECT_THROW(mp::shared_memory::create(name, 10), mp::shared_memory_exists);
  EXPECT_THROW(mp::shared_memory::create(name.substr(1), 10), mp::shared_memory_exists);
  EXPECT_TRUE(exists(name));  // the failed attempts removed nothing
}

TEST(shared_memory, zero_size_and_bad_names_are_invalid_arguments) {
  const std::string name = mp::testing::unique_name("shm");
  EXPECT_THROW(mp::shared_memory::create(name, 0), std::invalid_argument);
  EXPECT_THROW(mp::shared_memory::create(0), std::invalid_argument);
  for (const char* bad : {"", "/", "a/b", "//a", "..", "/."}) {
    EXPECT_THROW(mp::shared_memory::create(bad, 8), std::invalid_argument) << bad;
    EXPECT_THROW(mp::shared_memory::open(bad), std::invalid_argument) << bad;
  }
  EXPECT_THROW(mp::shared_memory::open(std::string(256, 'x')), std::invalid_argument);
  EXPECT_FALSE(exists(name));
}

TEST(shared_memory, the_creators_destructor_unlinks_and_an_openers_does_not) {
  const std::string name = mp::testing::unique_name("shm");
  {
    auto creator = mp::shared_memory::create(name, 10);
    { auto opener = mp::shared_memory::open(name); }
    EXPECT_TRUE(exists(name));
    auto opener = mp::shared_memory::open(name);
    opener.close();
    EXPECT_TRUE(exists(name));
  }
  EXPECT_FALSE(exists(name));
}

TEST(shared_memory, close_is_idempotent_and_the_closed_creator_still_unlinks) {
  const std::string name = mp::testing::unique_name("shm");
  {
    auto block = mp::shared_memory::create(name, 10);
    block.close();
    block.close();
    EXPECT_TRUE(block.closed());
    EXPECT_EQ(block.data(), nullptr);
    EXPECT_TRUE(block.bytes().empty());
    EXPECT_EQ(block.fd(), -1);
    EXPECT_EQ(block.size(), 10u);  // as Python's size after close()
    EXPECT_TRUE(exists(name));
  }
  EXPECT_FALSE(exists(name));
}

TEST(shared_memory, moving_transfers_ownership_of_the_name) {
  const std::string first = mp::testing::unique_name("shm");
  const std::string second = mp::testing::unique_name("shm");
  auto a = mp::shared_memory::create(first, 10);
  mp::shared_memory b = std::move(a);
  EXPECT_TRUE(a.closed());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_FALSE(a.owns_name());
  EXPECT_TRUE(a.name().empty());
  EXPECT_TRUE(b.owns_name());
  EXPECT_EQ(b.name(), first.substr(1));
  b = mp::shared_memory::create(second, 10);  // the overwritten creator unlinks its name
  EXPECT_FALSE(exists(first));
  EXPECT_TRUE(exists(second));
  b = mp::shared_memory{};
  EXPECT_FALSE(exists(second));
}

TEST(shared_memory, release_name_keeps_the_block_for_a_later_unlink) {
  const std::string name = mp::testing::unique_name("shm");
  {
    auto block = mp::shared_memory::create(name, 10);
    block.data()[0] = std::byte{5};
    block.release_name();
    EXPECT_FALSE(block.owns_name());
  }
  EXPECT_TRUE(exists(name));
  mp::shared_memory::remove_orphans();  // nobody holds it, but it was kept on purpose
  EXPECT_TRUE(exists(name));
  auto again = mp::shared_memory::open(name);
  EXPECT_EQ(again.data()[0], std::byte{5});
  again.unlink();
  EXPECT_FALSE(exists(name));
  again.close();
  EXPECT_THROW(again.release_name(), mp::usage_error);
}

TEST(shared_memory, a_forked_copy_of_the_creator_never_unlinks) {
  MP_FORK_ONLY("only fork copies the creator into the child");
  const std::string name = mp::testing::unique_name("shm");
  auto block = mp::shared_memory::create(name, 10);
  mp::process p{[&block] {
    // Destroying the child's copy runs the creator's destructor in another process.
    { mp::shared_memory moved = std::move(block); }
  }};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_TRUE(exists(name));
  EXPECT_TRUE(block.owns_name());
}

TEST(shared_memory, the_destructor_spares_a_new_block_that_took_an_unlinked_name) {
  const std::string name = mp::testing::unique_name("shm");
  auto old_block = mp::shared_memory::create(name, 10);
  mp::shared_memory::open(name).unlink();
  auto new_block = mp::shared_memory::create(name, 20);
  old_block = mp::shared_memory{};  // its name now belongs to another block
  EXPECT_TRUE(exists(name));
  EXPECT_EQ(mp::shared_memory::open(name).size(), 20u);
}

// Other test processes may sweep at the same time as these tests, so they check what became of
// the name, never how many blocks a sweep removed.
// A sweep spares a block another process holds, and another test process's own sweep holds
// each block it looks at for a moment: so an orphan is gone after a few sweeps, not always
// after the first.
bool swept_away(const std::string& name) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    mp::shared_memory::remove_orphans();
    if (!exists(name)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Starts `heir`, which sends true on `reader`'s peer once it holds the orphan `name`, then
// sleeps; closes our `holder`, and checks that no sweep removes the block until the heir ends.
void expect_the_heir_keeps_the_orphan(mp::shared_memory& holder, const std::string& name,
                                      mp::process& heir, mp::connection& reader) {
  heir.start();
  ASSERT_TRUE(reader.recv<bool>());
  holder.close();
  mp::shared_memory::remove_orphans();
  EXPECT_TRUE(exists(name));
  heir.kill();
  heir.join();
  EXPECT_TRUE(swept_away(name));
}

TEST(shared_memory, remove_orphans_removes_a_block_whose_creator_was_killed) {
  const std::string name = mp::testing::unique_name("shm");
  auto holder = crash_creator(name);
  EXPECT_TRUE(exists(name));  // SIGKILL ran no destructor
  EXPECT_EQ(holder.data()[0], std::byte{42});
  mp::shared_memory::remove_orphans();
  EXPECT_TRUE(exists(name));  // we hold it
  holder.close();
  EXPECT_TRUE(swept_away(name));
}

TEST(shared_memory, remove_orphans_spares_a_block_that_a_forked_child_inherited) {
  MP_FORK_ONLY("only a forked child inherits the holder's descriptor");
  const std::string name = mp::testing::unique_name("shm");
  auto holder = crash_creator(name);
  // A child inherits the holder's descriptor: it holds the block too, while it runs.
  auto [reader, writer] = mp::pipe(false);
  mp::process heir{[](mp::connection out) {
                     out.send(true);
                     sleep_forever();
                   },
                   std::move(writer)};
  expect_the_heir_keeps_the_orphan(holder, name, heir, reader);
}

TEST(shared_memory, remove_orphans_spares_a_block_that_a_child_received) {
  const std::string name = mp::testing::unique_name("shm");
  auto holder = crash_creator(name);
  // Passed as an argument, under any start method: the child holds the block while it runs.
  auto [reader, writer] = mp::pipe(false);
  mp::process heir{[](const mp::shared_memory& block, mp::connection out) {
                     out.send(block.data()[0] == std::byte{42});
                     sleep_forever();
                   },
                   std::ref(holder), std::move(writer)};
  expect_the_heir_keeps_the_orphan(holder, name, heir, reader);
}

TEST(shared_memory, remove_orphans_spares_a_closed_block_whose_creator_lives) {
  const std::string name = mp::testing::unique_name("shm");
  {
    auto block = mp::shared_memory::create(name, 10);
    block.close();  // nobody holds it, but its creator will unlink it
    mp::shared_memory::remove_orphans();
    EXPECT_TRUE(exists(name));
    EXPECT_NO_THROW(mp::shared_memory::open(name));
  }
  EXPECT_FALSE(exists(name));
}

TEST(shared_memory, creating_over_an_orphan_reclaims_its_name) {
  const std::string name = mp::testing::unique_name("shm");
  crash_creator(name).close();
  auto block = mp::shared_memory::create(name, 64);
  EXPECT_TRUE(block.owns_name());
  EXPECT_EQ(block.data()[0], std::byte{0});  // a new block, not the orphan
}

MP_TEST_ROLE(start_and_exit) {
  return 0;
}

TEST(shared_memory, a_killed_creators_block_is_gone_once_another_program_has_started) {
  const std::string name = mp::testing::unique_name("shm");
  auto holder = crash_creator(name);
  // Each run of a program that uses mp::shared_memory sweeps when it starts; a live opener in
  // another process keeps the block from that sweep.
  auto started = mp::testing::run_role("start_and_exit");
  ASSERT_EQ(started.exitcode, 0) << started.err;
  EXPECT_TRUE(exists(name));
  EXPECT_EQ(holder.data()[0], std::byte{42});
  holder.close();
  started = mp::testing::run_role("start_and_exit");
  ASSERT_EQ(started.exitcode, 0) << started.err;
  EXPECT_FALSE(exists(name));  // and nobody called remove_orphans()
}

TEST(shared_memory, a_block_larger_than_dev_shm_fails_with_enospc_and_leaves_nothing) {
  MP_ONE_RUN_ONLY("no process is started");
  struct statvfs shm {};
  ASSERT_EQ(::statvfs("/dev/shm", &shm), 0);
  if (shm.f_blocks == 0) GTEST_SKIP() << "/dev/shm has no size limit";
  // More than /dev/shm holds in all, so more than it has free; the kernel refuses at once,
  // allocating nothing (a size between free and total would fill it first).
  const auto total = static_cast<std::size_t>(shm.f_blocks) * shm.f_frsize;
  const std::string name = mp::testing::unique_name("shm");
  try {
    auto block = mp::shared_memory::create(name, total + (std::size_t{1} << 30));
    ADD_FAILURE() << "created a block of " << block.size() << " bytes on a /dev/shm of " << total;
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_space_on_device) << e.what();
  }
  EXPECT_FALSE(exists(name));
}

TEST(shared_memory, a_block_without_an_mp_header_opens_as_plain_bytes) {
  // As Python's SharedMemory(create=True) leaves it: a bare file in /dev/shm.
  const std::string name = mp::testing::unique_name("shm");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "python", 6), 6);
  ::close(fd);
  {
    auto block = mp::shared_memory::open(name);
    EXPECT_EQ(block.size(), 6u);
    EXPECT_EQ(std::memcmp(block.data(), "python", 6), 0);
  }
  mp::shared_memory::remove_orphans();  // not ours: never swept
  EXPECT_TRUE(exists(name));
  ::shm_unlink(name.c_str());
}

TEST(shared_memory, a_header_of_another_version_throws_decode_error) {
  const std::string name = mp::testing::unique_name("shm");
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 8192), 0);
  const char header[12] = {'m', 'p', '.', 's', 'h', 'm', '\0', '\1', 2, 0, 0, 0};  // version 2
  ASSERT_EQ(::pwrite(fd, header, sizeof header, 0), static_cast<ssize_t>(sizeof header));
  ::close(fd);
  EXPECT_THROW(mp::shared_memory::open(name), mp::decode_error);
  ::shm_unlink(name.c_str());
}

TEST(shareable_list, holds_every_item_type) {
  const std::vector<item> items{
      std::int64_t{-3}, 2.5, true, "text", to_bytes(std::string_view("\0b", 2)), std::monostate{}};
  mp::shareable_list list(items);
  ASSERT_EQ(list.size(), items.size());
  for (std::size_t i = 0; i < items.size(); ++i) EXPECT_EQ(list[i], items[i]) << i;
  EXPECT_TRUE(list.shm().name().empty());  // anonymous
  EXPECT_EQ(list.count(true), 1u);
  EXPECT_EQ(list.count(std::int64_t{1}), 0u);  // true is a bool, not an int, here
  EXPECT_EQ(list.index("text"), 3u);
  EXPECT_THROW(list.index("absent"), std::invalid_argument);
  EXPECT_THROW(list.get(6), std::out_of_range);
  EXPECT_THROW(list.set(6, true), std::out_of_range);
}

TEST(shareable_list, a_slot_holds_what_python_lets_it_hold) {
  mp::shareable_list list({"abcde", std::int64_t{1}, ""});
  list.set(0, "12345678");  // 5 bytes round up to room for 8, as in Python
  EXPECT_EQ(list[0], item("12345678"));
  EXPECT_THROW(list.set(0, "123456789"), std::invalid_argument);
  EXPECT_EQ(list[0], item("12345678"));  // unchanged by the failed set
  list.set(0, std::string("a\0b", 3));   // trailing and inner NULs are kept
  EXPECT_EQ(list[0], item(std::string("a\0b", 3)));
  list.set(0, 4.5);  // any number fits any slot
  EXPECT_EQ(list[0], item(4.5));
  list.set(1, "eight ch");  // a number's 8 bytes can take a short string
  EXPECT_EQ(list[1], item("eight ch"));
  EXPECT_THROW(list.set(1, "nine char"), std::invalid_argument);
  list.set(1, std::monostate{});
  EXPECT_EQ(list[1], item(std::monostate{}));
  list.set(2, to_bytes("8 bytes!"));  // an empty string still has room for 8
  EXPECT_EQ(list[2], item(to_bytes("8 bytes!")));
  EXPECT_EQ(mp::shareable_list(std::vector<item>{}).size(), 0u);
}

TEST(shareable_list, a_named_list_round_trips_across_processes) {
  const std::string name = mp::testing::unique_name("shm");
  mp::shareable_list list({std::int64_t{1}, "hello", 0.5}, name);
  EXPECT_EQ(list.shm().name(), name.substr(1));
  mp::process p{[](const std::string& list_name) {
                  auto mine = mp::shareable_list::open(list_name);
                  require(mine.size() == 3, 2);
                  require(mine[1] == item("hello"), 3);
                  mine.set(0, std::int64_t{mine.count(0.5) == 1 ? 100 : -1});
                  mine.set(1, "world");
                },
                name};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(list[0], item(std::int64_t{100}));
  EXPECT_EQ(list[1], item("world"));
}

TEST(shareable_list, an_anonymous_list_is_shared_with_a_forked_child) {
  MP_FORK_ONLY("the child uses the parent's list, captured by reference, in memory fork copied");
  mp::shareable_list list({std::int64_t{0}, false});
  mp::process p{[&list] {
    list.set(0, std::int64_t{7});
    list.set(1, true);
  }};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(list[0], item(std::int64_t{7}));
  EXPECT_EQ(list[1], item(true));
}

void append_to_list(mp::shareable_list& list) {
  require(list.size() == 2 && list[1] == item("abc"), 2);
  list.set(0, std::int64_t{list.count(item("abc")) == 1 ? 11 : -1});
}

TEST(shareable_list, a_list_passed_as_an_argument_is_the_same_list) {
  mp::shareable_list anonymous({std::int64_t{0}, "abc"});
  mp::shareable_list named({std::int64_t{0}, "abc"}, mp::testing::unique_name("shm"));
  for (mp::shareable_list* list : {&anonymous, &named}) {
    mp::process p{append_to_list, std::ref(*list)};
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_EQ((*list)[0], item(std::int64_t{11}));
  }
  // A block that holds no list is refused on arrival.
  auto [a, b] = mp::pipe();
  a.send(mp::shared_memory::create(64));
  auto block = b.recv<mp::shared_memory>();
  a.send(block);
  EXPECT_THROW(b.recv<mp::shareable_list>(), mp::decode_error);
}

// Offsets into a list's block, per the layout in shared_memory.hpp.
constexpr std::size_t count_at = 16, slots_at = 32, slot_size = 32;
constexpr std::size_t type_at = 0, offset_at = 8, capacity_at = 16, length_at = 24;

void poke(std::byte* block, std::size_t at, std::uint64_t value) {
  std::memcpy(block + at, &value, sizeof value);
}

TEST(shareable_list, a_corrupt_block_throws_decode_error) {
  const std::string name = mp::testing::unique_name("shm");
  mp::shareable_list list({"abc", true, std::int64_t{1}}, name);
  auto raw = mp::shared_memory::open(name);
  std::byte* block = raw.data();

  poke(block, count_at, std::uint64_t{1} << 40);
  EXPECT_THROW(mp::shareable_list::open(name), mp::decode_error);
  poke(block, count_at, 3);
  EXPECT_NO_THROW(mp::shareable_list::open(name));

  // Corruption after opening is caught on each access.
  poke(block, slots_at + length_at, 1000);
  EXPECT_THROW(list.get(0), mp::decode_error);
  EXPECT_THROW(list.set(0, "x"), mp::decode_error);
  poke(block, slots_at + length_at, 3);
  EXPECT_EQ(list[0], item("abc"));
  poke(block, slots_at + offset_at, std::uint64_t{0} - 8);
  EXPECT_THROW(list.get(0), mp::decode_error);
  poke(block, slots_at + offset_at, 0);
  poke(block, slots_at + capacity_at, 4);
  EXPECT_THROW(list.get(0), mp::decode_error);
  poke(block, slots_at + capacity_at, 8);

  std::uint32_t type = 99;
  std::memcpy(block + slots_at + slot_size + type_at, &type, sizeof type);
  EXPECT_THROW(list.get(1), mp::decode_error);
  EXPECT_THROW(list.count(true), mp::decode_error);
  type = 3;  // bool again
  std::memcpy(block + slots_at + slot_size + type_at, &type, sizeof type);
  const std::size_t data_at = slots_at + 3 * slot_size;
  poke(block, data_at + 8, 2);  // item 1's payload: a bool that is neither 0 nor 1
  EXPECT_THROW(list.get(1), mp::decode_error);
  poke(block, data_at + 8, 1);
  EXPECT_EQ(list[1], item(true));

  std::memset(block, 0, 8);  // the magic
  EXPECT_THROW(mp::shareable_list::open(name), mp::decode_error);
  EXPECT_THROW(mp::shareable_list::open(mp::shared_memory::create(16)), mp::decode_error);
}

}  // namespace
