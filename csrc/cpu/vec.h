// The CPU backend's lane type: a SIMD vector of neurons, with the operations lif.h needs
// (Math) and loads and stores of a possibly partial vector (VecIO).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>

#include "../lif.h"

namespace snnkern {

template <class T>
struct Math<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  static V heaviside(V x) { return x.gt(V(0)); }
  static V abs(V x) { return x.abs(); }
  static V exp(V x) { return x.exp(); }
  static V max(V a, V b) { return at::vec::maximum(a, b); }
  static V trunc(V x) { return x.trunc(); }
  static V grad_times(V g, V d) { return V::blendv(g * d, V(0), g == V(0)); }
};

// Loads and stores `count` lanes (the last vector of a row may be partial).
template <class T>
struct VecIO {
  using V = at::vec::Vectorized<T>;
  int64_t count;
  V load(const T* p) const { return V::loadu(p, count); }
  void store(T* p, const V& v) const { v.store(p, count); }
};

// Loads and stores whole vectors: the count is known at compile time, so the loop that steps a
// row's full vectors has no test per access.
template <class T>
struct FullVecIO {
  using V = at::vec::Vectorized<T>;
  V load(const T* p) const { return V::loadu(p); }
  void store(T* p, const V& v) const { v.store(p); }
};

}  // namespace snnkern
