#include "ids.h"

#include <random>

namespace sluice {

uint64_t RandomU64() {
  thread_local uint64_t state = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  // splitmix64
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string UuidV7Generator::Next(int64_t now_ms) {
  const uint64_t floor = static_cast<uint64_t>(now_ms < 0 ? 0 : now_ms) << 12;
  uint64_t prev = last_.load(std::memory_order_relaxed);
  uint64_t next = 0;
  do {
    next = prev + 1 > floor ? prev + 1 : floor;
  } while (!last_.compare_exchange_weak(prev, next, std::memory_order_relaxed));

  const uint64_t ms = next >> 12;
  const uint64_t counter = next & 0xfff;
  const uint64_t rand_b = RandomU64();
  uint8_t b[16];
  for (int i = 0; i < 6; ++i) b[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<uint8_t>(0x70 | (counter >> 8));
  b[7] = static_cast<uint8_t>(counter & 0xff);
  b[8] = static_cast<uint8_t>(0x80 | ((rand_b >> 56) & 0x3f));
  for (int i = 9; i < 16; ++i) b[i] = static_cast<uint8_t>(rand_b >> (8 * (15 - i)));

  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0xf]);
  }
  return out;
}

}  // namespace sluice
