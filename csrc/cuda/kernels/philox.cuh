// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator, so every (sample, shot) draws its own numbers with no state to carry
// between threads, and a call is reproducible from its seed alone.
#pragma once

#include "hdqnn/config.hpp"

namespace hdqnn {
namespace gpu {

constexpr unsigned int kPhiloxM0 = 0xD2511F53u;
constexpr unsigned int kPhiloxM1 = 0xCD9E8D57u;
constexpr unsigned int kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr unsigned int kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kPhiloxRounds = 10;

/// out <- Philox4x32-10(counter, key).
HDQNN_HOST_DEVICE HDQNN_INLINE void philox4x32(const unsigned int counter[4], const unsigned int key[2],
                                               unsigned int out[4]) {
  unsigned int c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  unsigned int k0 = key[0], k1 = key[1];
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const unsigned long long p0 = static_cast<unsigned long long>(kPhiloxM0) * c0;
    const unsigned long long p1 = static_cast<unsigned long long>(kPhiloxM1) * c2;
    const unsigned int hi0 = static_cast<unsigned int>(p0 >> 32), lo0 = static_cast<unsigned int>(p0);
    const unsigned int hi1 = static_cast<unsigned int>(p1 >> 32), lo1 = static_cast<unsigned int>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/// A double uniform on [0, 1) from two 32-bit words (53 random bits).
HDQNN_HOST_DEVICE HDQNN_INLINE double uniform_from_words(unsigned int a, unsigned int b) {
  const unsigned long long bits = (static_cast<unsigned long long>(a >> 5) << 26) | (b >> 6);
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);  // 2**-53
}

/// The uniform of shot ``shot`` of sample ``sample`` in a call seeded with ``seed``.
HDQNN_HOST_DEVICE HDQNN_INLINE double shot_uniform(unsigned long long seed, Index sample, Index shot) {
  const unsigned int counter[4] = {static_cast<unsigned int>(shot), static_cast<unsigned int>(shot >> 32),
                                   static_cast<unsigned int>(sample), static_cast<unsigned int>(sample >> 32)};
  const unsigned int key[2] = {static_cast<unsigned int>(seed), static_cast<unsigned int>(seed >> 32)};
  unsigned int r[4];
  philox4x32(counter, key, r);
  return uniform_from_words(r[0], r[1]);
}

}  // namespace gpu
}  // namespace hdqnn
