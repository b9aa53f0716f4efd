"""MXFP4: the four-bit floating-point format gpt-oss stores its expert weights in (chapter 8).

MXFP4 is the OCP "microscaling" format with E2M1 elements and an E8M0 shared scale:

- each weight is a 4-bit float, E2M1: 1 sign bit, 2 exponent bits, 1 mantissa bit. Only 16
  values exist, listed in `FP4_VALUES` (the index is the 4-bit code, bit 3 is the sign):

      code   0    1    2    3    4    5    6    7  |  8    9   10   11   12   13   14   15
      value  0   .5    1  1.5    2    3    4    6  | -0  -.5   -1 -1.5   -2   -3   -4   -6

- 32 consecutive weights along the input (last) dimension share one scale byte s, an E8M0
  number: 2^(s - 127). s = 255 means NaN. So a block of 32 weights costs 16 bytes of codes
  (two per byte) + 1 scale byte = 17 bytes, 4.25 bits per weight.

      value = FP4_VALUES[code] * 2^(s - 127)

- byte j of a block holds element 2j in its low nibble and element 2j+1 in its high nibble:

      byte 0x2F -> low nibble 0xF (element 0 = -6), high nibble 0x2 (element 1 = 1)

    >>> w = torch.tensor([[0.5, -1.0] + [0.0] * 30])        # one row, one block of 32
    >>> blocks, scales = quantize(w)                         # (1, 1, 16) uint8, (1, 1) uint8
    >>> scales[0, 0].item()                                  # amax 1 = 2^0 -> s = 127 + 0 - 2
    125
    >>> hex(blocks[0, 0, 0].item())                          # 0.5/0.25 = 2 (code 4), -1/0.25 = -4 (code 14)
    '0xe4'
    >>> dequantize(blocks, scales, torch.float32)[0, :2]     # on the grid: comes back exactly
    tensor([ 0.5000, -1.0000])
"""

from __future__ import annotations

import torch

# The 16 E2M1 values, indexed by the 4-bit code. Bit 3 is the sign, so code 8 is -0.0.
FP4_VALUES = [
    +0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
    -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
]  # fmt: skip

BLOCK_SIZE = 32  # weights per shared scale
BYTES_PER_BLOCK = BLOCK_SIZE // 2  # two 4-bit codes per byte
SCALE_BIAS = 127  # E8M0: scale byte s means 2^(s - 127)
SCALE_NAN = 255  # E8M0 has no zero and no infinity; 255 is NaN
ZERO_BLOCK_SCALE = SCALE_BIAS  # scale written for an all-zero block: 2^0 = 1, the neutral choice

# Midpoints between neighbouring non-negative E2M1 values 0, .5, 1, 1.5, 2, 3, 4, 6.
# A magnitude above midpoint i rounds up to code i+1; exactly on it, to the code with an even
# mantissa (even code): so ties at the even-indexed midpoints round down, at odd ones round up.
_MIDPOINTS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]


def _check_k(name: str, k: int) -> None:
    if k % BLOCK_SIZE != 0:
        raise ValueError(
            f"mxfp4: {name} has last dimension {k}; expected a multiple of {BLOCK_SIZE} "
            f"(MXFP4 groups {BLOCK_SIZE} consecutive values per scale). Pad the input dimension."
        )


def scale_table(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 256 scale values 2^(s - 127) for s = 0..255 (255 -> NaN), exact in float32.

    Built in float64 and cast: every 2^-127..2^127 is a float32 (2^-127 is a subnormal), whereas
    `2.0 ** (s - 127)` computed in float32 can under- or overflow in intermediate steps.
    """
    s = torch.arange(256, dtype=torch.float64)
    table = torch.exp2(s - SCALE_BIAS)
    table[SCALE_NAN] = float("nan")
    return table.to(dtype)


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize w (..., K) to MXFP4: returns blocks (..., K//32, 16) uint8 and scales (..., K//32) uint8.

    Per block of 32 values (OCP MX rule):
      1. amax = max |w| in the block; shared_exp = floor(log2(amax)) - 2, so that
         amax / 2^shared_exp lies in [4, 8): the largest value lands on the top binade of E2M1
         (4 and 6). Scale byte s = shared_exp + 127, clamped to [0, 254].
         An all-zero block gets s = 127 (`ZERO_BLOCK_SCALE`): any s decodes it to zeros.
      2. each value is divided by 2^(s - 127) and rounded to the nearest E2M1 value, ties to the
         even mantissa; magnitudes above 6 (amax in (6, 8) * 2^shared_exp) saturate to +-6.
      3. codes are packed two per byte, element 2j in the low nibble.
    """
    if not torch.is_floating_point(w):
        raise TypeError(f"mxfp4.quantize: w has dtype {w.dtype}; expected a floating-point tensor")
    if w.dim() == 0:
        raise ValueError("mxfp4.quantize: w is a scalar; expected shape (..., K) with K % 32 == 0")
    _check_k("w", w.shape[-1])
    if not torch.isfinite(w).all():
        raise ValueError(
            "mxfp4.quantize: w contains NaN or inf; MXFP4 can only encode finite weights"
        )
    lead, G = w.shape[:-1], w.shape[-1] // BLOCK_SIZE
    work = torch.float64 if w.dtype == torch.float64 else torch.float32  # bf16/fp16 -> f32: exact
    v = w.reshape(*lead, G, BLOCK_SIZE).to(work)  # (..., G, 32)

    # 1. the shared exponent. frexp gives amax = m * 2^e with m in [0.5, 1), so floor(log2) = e - 1,
    #    exactly (torch.log2 could round 2^e - tiny up to e).
    amax = v.abs().amax(dim=-1)  # (..., G)
    _, e = torch.frexp(amax)
    s = (e.long() - 1 - 2 + SCALE_BIAS).clamp(0, SCALE_NAN - 1)
    s = torch.where(amax == 0, ZERO_BLOCK_SCALE, s)  # (..., G)

    # 2. scale into the E2M1 range: multiply by 2^(127 - s) = scale_table[254 - s], a power of two,
    #    so the product is exact (no rounding before the E2M1 rounding below).
    inv_scale = scale_table(work).to(w.device)[2 * SCALE_BIAS - s]  # (..., G)
    scaled = v * inv_scale.unsqueeze(-1)  # (..., G, 32)
    mag = scaled.abs()
    code = torch.zeros(mag.shape, dtype=torch.uint8, device=w.device)
    for i, mid in enumerate(_MIDPOINTS):  # code = number of midpoints below |v| (ties: even code)
        code += (mag >= mid if i % 2 == 1 else mag > mid).to(torch.uint8)
    code |= torch.signbit(scaled).to(torch.uint8) << 3  # -0.0 and small negatives keep their sign

    # 3. pack: element 2j -> low nibble, element 2j+1 -> high nibble of byte j.
    blocks = code[..., 0::2] | (code[..., 1::2] << 4)  # (..., G, 16)
    return blocks.contiguous(), s.to(torch.uint8)


def _check_packed(blocks: torch.Tensor, scales: torch.Tensor) -> None:
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise TypeError(
            f"mxfp4: blocks/scales have dtypes {blocks.dtype}/{scales.dtype}; expected torch.uint8 both"
        )
    if blocks.dim() < 2 or blocks.shape[-1] != BYTES_PER_BLOCK:
        raise ValueError(
            f"mxfp4: blocks has shape {tuple(blocks.shape)}; expected (..., G, {BYTES_PER_BLOCK})"
        )
    if blocks.shape[:-1] != scales.shape:
        raise ValueError(
            f"mxfp4: blocks has shape {tuple(blocks.shape)} and scales {tuple(scales.shape)}; "
            f"expected scales to be blocks.shape[:-1] = {tuple(blocks.shape[:-1])}"
        )


def unpack_codes(blocks: torch.Tensor) -> torch.Tensor:
    """(..., G, 16) uint8 -> (..., G, 32) uint8 codes 0..15, element 2j from the low nibble."""
    low, high = blocks & 0x0F, blocks >> 4
    return torch.stack([low, high], dim=-1).flatten(-2)


def dequantize(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """Decode MXFP4: blocks (..., G, 16), scales (..., G) -> (..., G*32) in `dtype`.

    value = FP4_VALUES[code] * 2^(s - 127); s = 255 gives NaN; -0 stays -0. The product of an
    E2M1 value (at most 2 significant bits) and a power of two is exact in float32 unless it
    overflows (6 * 2^127 > float32 max -> inf), so casting to bf16 afterwards is exact too.
    float64 output is computed in float64 (no overflow).
    """
    _check_packed(blocks, scales)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    lut = torch.tensor(FP4_VALUES, dtype=work, device=blocks.device)
    values = lut[unpack_codes(blocks).long()]  # (..., G, 32)
    scale = scale_table(work).to(blocks.device)[scales.long()]  # (..., G)
    out = values * scale.unsqueeze(-1)  # (..., G, 32)
    return out.flatten(-2).to(dtype)  # (..., G*32)


class MXFP4Tensor:
    """A weight of logical shape (..., N, K) kept packed: 4.25 bits per weight instead of 16.

    blocks (..., N, K//32, 16) uint8 and scales (..., N, K//32) uint8, exactly as in the gpt-oss
    checkpoint (`mlp1_weight.blocks` / `.scales`). Leading dims are experts: `w[e]` is expert e.
    """

    def __init__(self, blocks: torch.Tensor, scales: torch.Tensor):
        _check_packed(blocks, scales)
        if blocks.dim() < 3:
            raise ValueError(
                f"MXFP4Tensor: blocks has shape {tuple(blocks.shape)}; expected (..., N, K//32, 16)"
            )
        self.blocks = blocks
        self.scales = scales

    @classmethod
    def from_float(cls, w: torch.Tensor) -> MXFP4Tensor:
        """Quantize a float weight (..., N, K) with K % 32 == 0."""
        if w.dim() < 2:
            raise ValueError(
                f"MXFP4Tensor.from_float: w has shape {tuple(w.shape)}; expected (..., N, K)"
            )
        return cls(*quantize(w))

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.blocks.shape[:-2], self.blocks.shape[-2] * BLOCK_SIZE))

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    @property
    def nbytes(self) -> int:
        return self.blocks.numel() + self.scales.numel()  # both uint8

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.nbytes / self.shape.numel()  # (16 + 1) * 8 / 32 = 4.25

    def dequantize(self, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return dequantize(self.blocks, self.scales, dtype)  # (..., N, K)

    def linear(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, tile_rows: int = 256
    ) -> torch.Tensor:
        """x (..., K) @ W.T + bias -> (..., N) in x.dtype, accumulated in float32.

        Decodes `tile_rows` output rows at a time, so the full (N, K) float matrix never exists:
        peak extra memory is tile_rows * K floats instead of N * K.
        """
        if self.blocks.dim() != 3:
            raise ValueError(
                f"MXFP4Tensor.linear: weight has shape {tuple(self.shape)}; expected a 2-D (N, K) "
                "weight. Select an expert first: w[e].linear(x)"
            )
        N, K = self.shape
        if x.shape[-1] != K:
            raise ValueError(
                f"MXFP4Tensor.linear: x has last dimension {x.shape[-1]}; expected K = {K}"
            )
        if bias is not None and bias.shape != (N,):
            raise ValueError(
                f"MXFP4Tensor.linear: bias has shape {tuple(bias.shape)}; expected ({N},)"
            )
        xf = x.reshape(-1, K).float()  # (T, K)
        out = torch.empty(xf.shape[0], N, dtype=torch.float32, device=x.device)  # (T, N)
        for n0 in range(0, N, tile_rows):
            n1 = min(n0 + tile_rows, N)
            w_tile = dequantize(self.blocks[n0:n1], self.scales[n0:n1], torch.float32)  # (n, K)
            out[:, n0:n1] = xf @ w_tile.T
        if bias is not None:
            out += bias.float()
        return out.reshape(*x.shape[:-1], N).to(x.dtype)

    def __getitem__(self, index) -> MXFP4Tensor:
        """Index the leading (expert) dims only: w[3], w[:4], w[[0, 5]]; the (N, K) dims stay whole."""
        if self.blocks.dim() < 4:
            raise IndexError(
                f"MXFP4Tensor: shape {tuple(self.shape)} has no leading (expert) dims to index"
            )
        blocks, scales = self.blocks[index], self.scales[index]
        if blocks.dim() < 3:
            raise IndexError(
                f"MXFP4Tensor: index {index!r} reaches into the (N, K) dims; index experts only"
            )
        return MXFP4Tensor(blocks, scales)

    def to(self, device) -> MXFP4Tensor:
        return MXFP4Tensor(self.blocks.to(device), self.scales.to(device))

    def __repr__(self) -> str:
        return (
            f"MXFP4Tensor(shape={tuple(self.shape)}, {self.nbytes / 2**20:.2f} MiB, "
            f"{self.bits_per_weight:.2f} bits/weight, device={self.device})"
        )


# ------------------------------------------------------------------ packed expert weights
# The packed side of the model's seam for speed (see gptoss_edu/model/moe.py): an object that
# stands where a float (E, N, K) expert tensor would, and multiplies with `linear(e, x)`.


class MXFP4Weight(torch.nn.Module):
    """An expert weight of logical shape (E, N, K) kept packed, as in the checkpoint (chapter 12).

    Buffers (in the state dict, so keys read `...mlp1_weight.blocks` / `...mlp1_weight.scales`,
    the checkpoint's own names): blocks (E, N, K//32, 16) uint8, scales (E, N, K//32) uint8.

    The MoE block uses one method: `linear(e, x)` = x @ W_e.T, run by the kernel back end
    `backend` of `gptoss_edu.kernels` ("auto": the fastest for the device; which one runs is said
    once per process). For reading and teaching it behaves like the float tensor it encodes:
    `w[e]` is expert e's (N, K) weight decoded to `w.dtype`, `w.dequantize()` is all of it, and any
    other tensor attribute (`w.data`, `w.T`, ...) acts on a freshly decoded copy. Writing goes the
    other way: `w.copy_(t)` quantizes t into the packed bytes. `w.dtype` is the float type it
    decodes to; it follows `model.to(dtype)` like a float tensor.
    """

    def __init__(
        self, E: int, N: int, K: int, dtype: torch.dtype | None = None, backend: str = "auto"
    ):
        super().__init__()
        from .kernels import BACKENDS

        if K % BLOCK_SIZE:
            raise ValueError(f"MXFP4Weight: input size K = {K} must be a multiple of {BLOCK_SIZE}")
        if backend not in BACKENDS:
            raise ValueError(f"MXFP4Weight: backend must be one of {BACKENDS}; found {backend!r}")
        G = K // BLOCK_SIZE
        self.register_buffer("blocks", torch.zeros(E, N, G, BYTES_PER_BLOCK, dtype=torch.uint8))
        self.register_buffer("scales", torch.full((E, N, G), SCALE_BIAS, dtype=torch.uint8))
        self.dtype = dtype or torch.get_default_dtype()
        self.backend = backend

    def linear(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """x (n, K) @ W_e.T -> (n, N) in x.dtype, decoded tile by tile by the kernel back end."""
        from . import kernels

        backend = _backend_name(self.backend, x.device.type)
        if x.requires_grad and torch.is_grad_enabled():  # training through frozen experts (ch. 16)
            from .posttrain.lora import packed_linear

            return packed_linear(x, self.blocks[e], self.scales[e], backend)
        return kernels.mxfp4_linear(x, self.blocks[e], self.scales[e], None, backend)

    @property
    def shape(self) -> torch.Size:
        E, N, G, _ = self.blocks.shape
        return torch.Size((E, N, G * BLOCK_SIZE))

    @property
    def device(self) -> torch.device:
        return self.blocks.device

    @property
    def nbytes(self) -> int:
        return self.blocks.numel() + self.scales.numel()  # uint8: 17 bytes per 32 weights

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """All experts decoded, (E, N, K). Expert by expert, so the temporaries stay small."""
        out = torch.empty(self.shape, dtype=dtype or self.dtype, device=self.device)
        for e in range(out.shape[0]):
            out[e] = dequantize(self.blocks[e], self.scales[e], out.dtype)
        return out

    def __getitem__(self, e) -> torch.Tensor:
        """Expert e's weight (N, K), decoded to self.dtype."""
        return dequantize(self.blocks[e], self.scales[e], self.dtype)

    @torch.no_grad()
    def copy_(self, w: torch.Tensor) -> MXFP4Weight:
        """Quantize the float weight w (E, N, K) into the packed bytes (round to MXFP4)."""
        if tuple(w.shape) != tuple(self.shape):
            raise ValueError(
                f"MXFP4Weight.copy_: w has shape {tuple(w.shape)}; expected {tuple(self.shape)}"
            )
        for e in range(w.shape[0]):  # expert by expert: quantize works in float32
            blocks, scales = quantize(w[e].detach().to(self.device))
            self.blocks[e].copy_(blocks)
            self.scales[e].copy_(scales)
        return self

    def _apply(self, fn, recurse=True):
        # The buffers are uint8 and do not change type under .to(dtype) / .float(); record what
        # such a call does to a float tensor, so that decoded reads follow the model's dtype.
        probe = fn(torch.empty(0, dtype=self.dtype, device=self.blocks.device))
        if probe.is_floating_point():
            self.dtype = probe.dtype
        return super()._apply(fn, recurse)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # blocks, scales (nn.Module keeps buffers here)
        except AttributeError:
            if name.startswith("_") or not hasattr(torch.Tensor, name):
                raise
        return getattr(self.dequantize(), name)  # read-only view: acts on a decoded copy

    def extra_repr(self) -> str:
        E, N, K = self.shape
        return (
            f"experts={E}, out={N}, in={K}, {self.nbytes / 2**20:.1f} MiB packed, "
            f"decodes to {self.dtype}, backend={self.backend!r}"
        )


_said_backend: set[tuple[str, str]] = set()


def _backend_name(backend: str, device_type: str) -> str:
    """Resolve "auto" to the back end that will run, and say once per process which one it is."""
    import warnings

    from . import kernels

    module = kernels.get_backend(backend, device_type)
    name = module.__name__.rsplit(".", 1)[-1]
    name = {"reference": "torch", "numba_cpu": "numba"}.get(name, name)
    if (name, device_type) not in _said_backend:
        _said_backend.add((name, device_type))
        warnings.warn(
            f"gptoss_edu: MXFP4 experts on {device_type} run on the {name!r} kernel back end "
            f"(backend={backend!r}; pass backend=... to GptOss or load_checkpoint to choose)",
            stacklevel=4,
        )
    return name
