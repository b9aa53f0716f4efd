// mxfp4_matmul.cu: out = x @ W.T + bias with W stored in MXFP4 (chapter 10).
//
// W (N, K) is stored as blocks (N, K/32, 16) uint8 + scales (N, K/32) uint8: 32 consecutive
// weights of a row share one E8M0 scale byte s; byte j of a block holds element 2j in its low
// nibble and element 2j+1 in its high nibble; weight = FP4[nibble] * 2^(s - 127).
// The weight is never written out dequantized: each kernel decodes what it needs on chip.
//
// Two kernels:
//   * mxfp4_matmul_tiled (T > 1, prefill): a block computes a (32 tokens x 32 rows) tile of out.
//     Per step of 32 inputs it decodes a (32 rows x 32) weight tile into shared memory once and
//     reuses it for all 32 tokens; each thread accumulates 4 outputs in registers (float32).
//   * mxfp4_gemv (T = 1, decoding one token): memory bound, so it is all about reading the
//     4.25 bits/weight once, coalesced: one warp per output row, a warp-shuffle reduction.
//
// Build without --use_fast_math: it flushes subnormals to zero, and scale byte 0 is 2^-127,
// a float32 subnormal.

#include <cuda_bf16.h>

#include "gptoss_kernels.h"

namespace {

constexpr int kMxBlock = 32;        // weights per scale byte
constexpr int kTileN = 32;          // output rows per block = blockDim.x
constexpr int kThreadRows = 8;      // blockDim.y
constexpr int kTokensPerThread = 4;
constexpr int kTileT = kThreadRows * kTokensPerThread;  // 32 tokens per block
constexpr int kGemvWarps = 8;       // output rows per block in the GEMV kernel

// E2M1 code -> value; bit 3 is the sign.
__constant__ float kFp4Values[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                     -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

// E8M0 scale byte -> 2^(s - 127). The byte is exactly a float32 exponent field, so shifting it
// into place is the whole conversion, except at the two ends: exponent field 0 means a
// subnormal in float32 (2^-127 is the subnormal 0x00400000) and s = 255 is NaN in OCP MX.
__device__ __forceinline__ float e8m0_to_float(uint8_t s) {
  if (s == 0) return __uint_as_float(0x00400000u);
  if (s == 255) return __uint_as_float(0x7fc00000u);
  return __uint_as_float(static_cast<uint32_t>(s) << 23);
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// Each thread (tx, ty) owns out[t0 + ty + 8i, n0 + tx] for i = 0..3.
template <typename Tx>
__global__ void __launch_bounds__(kTileN* kThreadRows)
    mxfp4_matmul_tiled(const Tx* __restrict__ x, int64_t T, int64_t K,
                       const uint8_t* __restrict__ blocks, const uint8_t* __restrict__ scales,
                       int64_t N, const float* __restrict__ bias, Tx* __restrict__ out) {
  __shared__ float lut[16];
  // +1 column of padding: a warp reads w_tile[tx][c] for tx = 0..31 at once; a row stride of
  // 33 floats puts those 32 reads in 32 different banks (a stride of 32 would put them all in
  // one bank: a 32-way conflict).
  __shared__ float w_tile[kTileN][kMxBlock + 1];
  __shared__ float x_tile[kTileT][kMxBlock];

  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kTileN + tx;
  const int64_t n0 = blockIdx.x * (int64_t)kTileN;
  const int64_t t0 = blockIdx.y * (int64_t)kTileT;
  const int64_t G = K / kMxBlock;  // scale groups per row
  if (tid < 16) lut[tid] = kFp4Values[tid];
  float acc[kTokensPerThread] = {};
  __syncthreads();

  for (int64_t g = 0; g < G; ++g) {
    // Decode the weight tile: 32 rows x 16 bytes = 128 uint32 words, one per thread of the
    // first 128. Word w of a block holds elements 8w..8w+7, element 8w+i in bits 4i..4i+3
    // (little-endian bytes, low nibble first).
    if (tid < kTileN * 4) {
      const int r = tid / 4, w = tid % 4;
      const int64_t n = n0 + r;
      float* dst = &w_tile[r][8 * w];
      if (n < N) {
        const uint32_t word = reinterpret_cast<const uint32_t*>(blocks + (n * G + g) * 16)[w];
        const float s = e8m0_to_float(scales[n * G + g]);
#pragma unroll
        for (int i = 0; i < 8; ++i) dst[i] = lut[(word >> (4 * i)) & 15u] * s;
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) dst[i] = 0.f;
      }
    }
    // Load the x tile: 32 tokens x 32 inputs, converted to float32 once here.
    for (int i = tid; i < kTileT * kMxBlock; i += kTileN * kThreadRows) {
      const int r = i / kMxBlock, c = i % kMxBlock;
      const int64_t t = t0 + r;
      x_tile[r][c] = t < T ? to_float(x[t * K + g * kMxBlock + c]) : 0.f;
    }
    __syncthreads();  // tiles complete before anyone reads them

    // 32 x 4 fused multiply-adds per thread; x_tile[ty + 8i][c] is the same address for the
    // whole warp (a broadcast), w_tile[tx][c] is conflict-free thanks to the padding.
#pragma unroll 8
    for (int c = 0; c < kMxBlock; ++c) {
      const float w = w_tile[tx][c];
#pragma unroll
      for (int i = 0; i < kTokensPerThread; ++i)
        acc[i] = fmaf(x_tile[ty + i * kThreadRows][c], w, acc[i]);
    }
    __syncthreads();  // everyone done reading before the next step overwrites the tiles
  }

  const int64_t n = n0 + tx;
  if (n >= N) return;
  const float b = bias != nullptr ? bias[n] : 0.f;
#pragma unroll
  for (int i = 0; i < kTokensPerThread; ++i) {
    const int64_t t = t0 + ty + i * kThreadRows;
    if (t < T) store(&out[t * N + n], acc[i] + b);  // consecutive tx: consecutive n, coalesced
  }
}

// T = 1. One warp per output row n; lane l reads words l, l+32, ... of the row, so a warp
// reads 128 consecutive bytes per step (one memory transaction) and every weight byte is read
// exactly once. The 32 partial sums are then added with register shuffles.
template <typename Tx>
__global__ void __launch_bounds__(kGemvWarps * 32)
    mxfp4_gemv(const Tx* __restrict__ x, int64_t K, const uint8_t* __restrict__ blocks,
               const uint8_t* __restrict__ scales, int64_t N, const float* __restrict__ bias,
               Tx* __restrict__ out) {
  __shared__ float lut[16];
  if (threadIdx.x < 16) lut[threadIdx.x] = kFp4Values[threadIdx.x];
  __syncthreads();

  const int lane = threadIdx.x % 32;
  const int64_t n = blockIdx.x * (int64_t)kGemvWarps + threadIdx.x / 32;
  if (n >= N) return;  // n is the same for the 32 lanes of a warp: whole warps leave
  const int64_t G = K / kMxBlock;
  const uint32_t* row = reinterpret_cast<const uint32_t*>(blocks + n * G * 16);  // (G*4,) words
  const uint8_t* row_scales = scales + n * G;

  float acc = 0.f;
  for (int64_t w = lane; w < G * 4; w += 32) {
    const uint32_t word = row[w];
    const float s = e8m0_to_float(row_scales[w / 4]);  // 4 words per 32-weight block
    const Tx* xw = x + 8 * w;                           // the 8 inputs this word multiplies
    float partial = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) partial = fmaf(lut[(word >> (4 * i)) & 15u], to_float(xw[i]), partial);
    acc = fmaf(partial, s, acc);  // scale once per 8 weights: s is a power of two
  }
  // Butterfly reduction: after 5 steps every lane holds the sum over the warp.
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
  if (lane == 0) store(&out[n], acc + (bias != nullptr ? bias[n] : 0.f));
}

template <typename Tx>
cudaError_t launch(const Tx* x, int64_t T, int64_t K, const uint8_t* blocks,
                   const uint8_t* scales, int64_t N, const float* bias, Tx* out,
                   cudaStream_t stream) {
  if (T == 1) {
    const unsigned grid = (unsigned)((N + kGemvWarps - 1) / kGemvWarps);
    mxfp4_gemv<Tx><<<grid, kGemvWarps * 32, 0, stream>>>(x, K, blocks, scales, N, bias, out);
  } else {
    const dim3 grid((unsigned)((N + kTileN - 1) / kTileN), (unsigned)((T + kTileT - 1) / kTileT));
    const dim3 block(kTileN, kThreadRows);
    mxfp4_matmul_tiled<Tx><<<grid, block, 0, stream>>>(x, T, K, blocks, scales, N, bias, out);
  }
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t gptoss_mxfp4_linear(const void* x, int x_is_bf16, int64_t T, int64_t K,
                                           const uint8_t* blocks, const uint8_t* scales,
                                           int64_t N, const float* bias, void* out,
                                           cudaStream_t stream) {
  if (T < 0 || N < 0 || K <= 0 || K % kMxBlock != 0) return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(blocks) % 4 != 0) return cudaErrorMisalignedAddress;
  if ((T + kTileT - 1) / kTileT > 65535) return cudaErrorInvalidValue;  // gridDim.y limit
  if (T == 0 || N == 0) return cudaSuccess;
  if (x_is_bf16)
    return launch(static_cast<const __nv_bfloat16*>(x), T, K, blocks, scales, N, bias,
                  static_cast<__nv_bfloat16*>(out), stream);
  return launch(static_cast<const float*>(x), T, K, blocks, scales, N, bias,
                static_cast<float*>(out), stream);
}
