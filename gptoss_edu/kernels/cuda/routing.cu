// routing.cu: MoE routing on the GPU (chapter 10).
//
// From router logits (T, E) to, per token, its k experts and their softmax weights, then the
// T*k assignments a = t*k + j grouped by expert (a counting sort), so that each expert's
// weights are read once for all of its tokens. Four kernels, one idea each:
//
//   1. topk_softmax      one thread per token: k arg-max passes + softmax over the k picks
//   2. expert_histogram  counts per expert; atomics in shared memory, one flush per block
//   3. offsets_scan      one block: prefix sum of the counts -> offsets (E+1,)
//   4. stable_scatter    one warp per expert: order[] and inverse[], stable, no atomics
//
// The result must equal the torch reference bit for bit (ids, order, offsets, inverse):
// ties go to the lower expert id, and within an expert the assignments stay in increasing a.

#include "gptoss_kernels.h"

namespace {

constexpr int kWarp = 32;

// ---------------------------------------------------------------------------------------------
// 1. Top-k + softmax. One thread per token; k (4 in gpt-oss) passes over the E logits.
//
// Pass j takes the best logit strictly after pick j-1 in the order (value descending, id
// ascending). That needs no "already taken" mask (and so no per-thread array of size E), and
// scanning ids upwards with a strict '>' keeps the lower id on ties, like a stable sort.
__global__ void topk_softmax(const float* __restrict__ logits, int64_t T, int E, int k,
                             int32_t* __restrict__ experts, float* __restrict__ weights) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= T) return;
  const float* row = logits + t * E;
  float prev_v = 0.f;
  int prev_e = -1;
  for (int j = 0; j < k; ++j) {
    int best_e = -1;
    float best_v = 0.f;
    for (int e = 0; e < E; ++e) {
      const float v = row[e];
      const bool after_prev = j == 0 || v < prev_v || (v == prev_v && e > prev_e);
      if (after_prev && (best_e < 0 || v > best_v)) {
        best_e = e;
        best_v = v;
      }
    }
    experts[t * k + j] = best_e;
    weights[t * k + j] = best_v;  // the logit for now
    prev_v = best_v;
    prev_e = best_e;
  }
  // Softmax over the k picks; pick 0 is the largest, so exp() never overflows.
  const float m = weights[t * k];
  float total = 0.f;
  for (int j = 0; j < k; ++j) {
    const float w = expf(weights[t * k + j] - m);
    weights[t * k + j] = w;
    total += w;
  }
  for (int j = 0; j < k; ++j) weights[t * k + j] /= total;
}

// ---------------------------------------------------------------------------------------------
// 2. Histogram of the T*k expert ids. Each block counts its share in shared memory (atomics on
// on-chip memory are cheap and contend only within the block), then adds its E counts to the
// global histogram: E global atomics per block instead of one per assignment.
__global__ void expert_histogram(const int32_t* __restrict__ expert_ids, int64_t n_assign,
                                 int E, int32_t* __restrict__ counts) {
  extern __shared__ int32_t hist[];  // (E,), size given at launch
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t a = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; a < n_assign; a += stride)
    atomicAdd(&hist[expert_ids[a]], 1);
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (hist[e] != 0) atomicAdd(&counts[e], hist[e]);
}

// ---------------------------------------------------------------------------------------------
// 3. Prefix sum of the counts in one block (blockDim.x >= E, a power of two).
//
// Hillis-Steele: at the step with distance d every element adds the one d places to its left;
// after log2(n) steps buf[i] = counts[0] + ... + counts[i] (an inclusive scan). It does
// n*log2(n) additions instead of the n of a work-efficient (Blelloch) scan, which does not
// matter for n <= 1024 and keeps the code short. Shifted by one it is the exclusive scan:
// offsets[0] = 0, offsets[e+1] = counts[0] + ... + counts[e].
__global__ void offsets_scan(const int32_t* __restrict__ counts, int E,
                             int64_t* __restrict__ offsets) {
  __shared__ int64_t buf[GPTOSS_MAX_EXPERTS];
  const int i = threadIdx.x;
  buf[i] = i < E ? counts[i] : 0;
  __syncthreads();
  for (int d = 1; d < blockDim.x; d *= 2) {
    const int64_t v = buf[i] + (i >= d ? buf[i - d] : 0);
    __syncthreads();  // everyone has read buf before anyone overwrites it
    buf[i] = v;
    __syncthreads();
  }
  if (i < E) offsets[i + 1] = buf[i];
  if (i == 0) offsets[0] = 0;
}

// ---------------------------------------------------------------------------------------------
// 4. Stable scatter. One warp per expert e walks the assignments a = 0, 1, ... in order, 32 at
// a time: lane l looks at a = base + l; __ballot_sync gives the 32-bit mask of lanes whose
// assignment went to e; a lane's rank among them is the number of set bits below it. Positions
// therefore follow a, so the result is stable and identical on every run, with no atomics.
// (Cost: every warp reads all T*k ids, E*T*k reads in total; E is small in gpt-oss.)
__global__ void stable_scatter(const int32_t* __restrict__ expert_ids, int64_t n_assign, int E,
                               const int64_t* __restrict__ offsets, int64_t* __restrict__ order,
                               int64_t* __restrict__ inverse) {
  const int e = (blockIdx.x * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (e >= E) return;  // whole warps exit together: E is uniform across a warp's lanes
  const unsigned lanes_below = (1u << lane) - 1u;
  int64_t pos = offsets[e];
  for (int64_t base = 0; base < n_assign; base += kWarp) {
    const int64_t a = base + lane;
    const bool mine = a < n_assign && expert_ids[a] == e;
    const unsigned mask = __ballot_sync(0xffffffffu, mine);
    if (mine) {
      const int64_t p = pos + __popc(mask & lanes_below);
      order[p] = a;
      inverse[a] = p;
    }
    pos += __popc(mask);
  }
}

}  // namespace

extern "C" cudaError_t gptoss_route(const float* logits, int64_t T, int E, int k, float* weights,
                                    int32_t* experts, int32_t* counts, int64_t* offsets,
                                    int64_t* order, int64_t* inverse, cudaStream_t stream) {
  if (E < 1 || E > GPTOSS_MAX_EXPERTS || k < 1 || k > E || T < 0) return cudaErrorInvalidValue;
  const int64_t n_assign = T * k;
  constexpr int kThreads = 256;

  GPTOSS_RETURN_IF_ERROR(cudaMemsetAsync(counts, 0, sizeof(int32_t) * E, stream));
  if (T > 0) {
    const int64_t blocks = (T + kThreads - 1) / kThreads;
    topk_softmax<<<(unsigned)blocks, kThreads, 0, stream>>>(logits, T, E, k, experts, weights);
    GPTOSS_RETURN_IF_ERROR(cudaGetLastError());

    // Enough blocks to fill the GPU, few enough that the per-block flush stays cheap.
    int64_t hist_blocks = (n_assign + kThreads - 1) / kThreads;
    if (hist_blocks > 256) hist_blocks = 256;
    expert_histogram<<<(unsigned)hist_blocks, kThreads, sizeof(int32_t) * E, stream>>>(
        experts, n_assign, E, counts);
    GPTOSS_RETURN_IF_ERROR(cudaGetLastError());
  }

  int scan_threads = kWarp;
  while (scan_threads < E) scan_threads *= 2;
  offsets_scan<<<1, scan_threads, 0, stream>>>(counts, E, offsets);
  GPTOSS_RETURN_IF_ERROR(cudaGetLastError());

  if (n_assign > 0) {
    constexpr int kWarpsPerBlock = kThreads / kWarp;  // experts per block
    const int blocks = (E + kWarpsPerBlock - 1) / kWarpsPerBlock;
    stable_scatter<<<blocks, kThreads, 0, stream>>>(experts, n_assign, E, offsets, order, inverse);
    GPTOSS_RETURN_IF_ERROR(cudaGetLastError());
  }
  return cudaSuccess;
}
