"""Probabilities from version-4 int8 codes in one pass: an LLVM kernel built for this CPU at run time.

The torch path of :mod:`landprompt.query.scoring` converts a block of codes to float32, multiplies it by
the query columns, computes the version-4 norms and the exponentials, each a pass of its own over memory.
This kernel does all of it while a pixel's codes are in registers and L1: 64 pixels' codes converted to
float32 (their ``sum_i w_i k_i^2`` with them), then 8 pixels at a time scored against the query columns,
16 a vector, one a lane (each code broadcast from L1 into a fused multiply-add), scaled by
``1 / sqrt(sum_i w_i k_i^2)``, exponentiated (a Cephes polynomial) and finished: one concept's
``1 / (1 + sum_j exp(l_j - l_c))``, or up to 16 concepts' ``sigmoid(l_i - logsumexp(l_background))``,
against up to 32 background columns (two vectors over 16); NaN where the pixel is not valid. Everything
is float32, as in the torch path (tests hold it to 2e-6 of a float64 reference). On a CPU with
AVX512-VNNI the products are integer instead (:func:`_products`): the query columns rounded to
int16 (15 bits of each column's largest value), the codes converted to int16, two codes a ``vpdpwssd``
(exact int32 sums), half the instructions of the float multiply-adds; the rest is float32 as above.

The LLVM IR is generated here for a code count and kind (one concept or many; one background vector or
two), compiled by llvmlite for the host CPU (AVX-512 where there is one) once per process, and called
through ctypes, which lets go of the GIL. Without llvmlite, or on a CPU without vector fused
multiply-adds (x86 without FMA3 and AVX2, where each lane's would be a call), :func:`probability_kernel_fn`
returns None and the torch path scores.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

#: Query columns a vector holds (one a lane): up to 16 concepts and 2 vectors of background columns.
LANES = 16
#: Pixels scored side by side (independent multiply-add chains to keep both FMA ports busy).
GROUP = 8
#: Pixels ahead whose codes are fetched into the cache while a pixel is converted.
PREFETCH = 256
#: Pixels converted to float32 at a time (64 x 80 floats: 20 KB, in L1).
SEGMENT = 64

#: Whether kernels multiply int16 query columns by AVX512-VNNI where the CPU has it (else float32 FMA).
USE_VNNI = True

#: Most codes a pixel the integer kernel takes: its int32 sums of 128 x 32767 a code stay under 2^31.
INTEGER_MAX_WIDTH = (2**31 - 1) // (128 * 32767)

#: ``fn(concepts, background, codes, rows, cols, row_stride, valid, valid_row_stride, columns, w_last - 1,
#: out, out_row_stride)``.
_SIGNATURE = ctypes.CFUNCTYPE(
    None,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_void_p,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_void_p,
    ctypes.c_int64,
    ctypes.c_void_p,
    ctypes.c_float,
    ctypes.c_void_p,
    ctypes.c_int64,
)

_LOCK = threading.Lock()
_COMPILED: dict[tuple[int, bool, bool, bool], Callable[..., None] | None] = {}
_INTEGER: set[int] = set()  # the ids of the compiled kernels that read integer columns
_ENGINES: list[Any] = []  # the JIT engines stay alive as long as the process (their code is called)


def _f32(value: float) -> str:
    """A float32 constant as LLVM IR writes it (the double of the same value, in hex)."""
    bits = struct.unpack("<Q", struct.pack("<d", float(np.float32(value))))[0]
    return f"0x{bits:016X}"


def _vec(value: float) -> str:
    """A <16 x float> constant with every lane ``value``."""
    return "<" + ", ".join(f"float {_f32(value)}" for _ in range(LANES)) + ">"


def _mask(on: Callable[[int], bool]) -> str:
    """A <16 x i1> constant, lane ``i`` set where ``on(i)``."""
    return "<" + ", ".join(f"i1 {'true' if on(i) else 'false'}" for i in range(LANES)) + ">"


#: Cephes ``expf``: exp(x) = 2^n exp(r), r = x - n ln 2 in two parts, exp(r) by a degree-7 polynomial.
_EXP_POLY = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)


def _exp_ir() -> str:
    """``@exp16``: lane-wise exp of a <16 x float>, clamped to [-87, 88] (the result stays finite, normal)."""
    v = "<16 x float>"
    lines = [
        f"define internal {v} @exp16({v} %x0) alwaysinline {{",
        f"  %x1 = call {v} @llvm.maxnum.v16f32({v} %x0, {v} {_vec(-87.0)})",
        f"  %x = call {v} @llvm.minnum.v16f32({v} %x1, {v} {_vec(88.0)})",
        f"  %fx = fmul {v} %x, {_vec(1.44269504088896341)}",
        f"  %n = call {v} @llvm.roundeven.v16f32({v} %fx)",
        f"  %r1 = call {v} @llvm.fma.v16f32({v} %n, {v} {_vec(-0.693359375)}, {v} %x)",
        f"  %r = call {v} @llvm.fma.v16f32({v} %n, {v} {_vec(2.12194440e-4)}, {v} %r1)",
        f"  %z = fmul {v} %r, %r",
        f"  %y0 = fadd {v} {_vec(0.0)}, {_vec(_EXP_POLY[0])}",
    ]
    for k, c in enumerate(_EXP_POLY[1:], 1):
        lines.append(f"  %y{k} = call {v} @llvm.fma.v16f32({v} %y{k - 1}, {v} %r, {v} {_vec(c)})")
    last = len(_EXP_POLY) - 1
    lines += [
        f"  %y{last + 1} = call {v} @llvm.fma.v16f32({v} %y{last}, {v} %z, {v} %r)",
        f"  %y = fadd {v} %y{last + 1}, {_vec(1.0)}",
        "  %ni = fptosi <16 x float> %n to <16 x i32>",
        "  %e = add <16 x i32> %ni, " + "<" + ", ".join("i32 127" for _ in range(LANES)) + ">",
        "  %sh = shl <16 x i32> %e, " + "<" + ", ".join("i32 23" for _ in range(LANES)) + ">",
        f"  %pw = bitcast <16 x i32> %sh to {v}",
        f"  %res = fmul {v} %y, %pw",
        f"  ret {v} %res",
        "}",
    ]
    return "\n".join(lines)


def _convert_ir(width: int, padded: int, integer: bool) -> str:
    """``@convert``: ``m`` pixels' codes to rows of ``padded`` float32 (``integer``: int16), multipliers.

    The multiplier is ``1 / sqrt(sum_i k_i^2 + (w_last - 1) k_last^2)``, 0 for all-zero codes. The codes
    are read 16 at a time; a last part overlapping the one before is masked out of the sum.
    """
    offsets = list(range(0, width - LANES + 1, LANES))
    overlap = width % LANES
    if overlap:
        offsets.append(width - LANES)
    lines = [
        "define internal void @convert(ptr %src, i64 %m, ptr %buf, ptr %sb, float %wm1) noinline {",
        "entry:",
        "  br label %loop",
        "loop:",
        "  %p = phi i64 [0, %entry], [%p.next, %body]",
        "  %done = icmp sge i64 %p, %m",
        "  br i1 %done, label %exit, label %body",
        "body:",
        f"  %sbase = mul i64 %p, {width}",
        f"  %pfo = add i64 %sbase, {PREFETCH * width}",
        "  %pfp = getelementptr i8, ptr %src, i64 %pfo",
        "  call void @llvm.prefetch.p0(ptr %pfp, i32 0, i32 3, i32 1)",
        f"  %bbase = mul i64 %p, {padded}",
    ]
    acc = "zeroinitializer"
    for c, off in enumerate(offsets):
        lines += [
            f"  %a{c} = add i64 %sbase, {off}",
            f"  %sp{c} = getelementptr i8, ptr %src, i64 %a{c}",
            f"  %v{c} = load <16 x i8>, ptr %sp{c}, align 1",
            f"  %w{c} = sext <16 x i8> %v{c} to <16 x i32>",
            f"  %f{c} = sitofp <16 x i32> %w{c} to <16 x float>",
            f"  %b{c} = add i64 %bbase, {off}",
            *(
                [
                    f"  %h{c} = sext <16 x i8> %v{c} to <16 x i16>",
                    f"  %bp{c} = getelementptr i16, ptr %buf, i64 %b{c}",
                    f"  store <16 x i16> %h{c}, ptr %bp{c}, align 2",
                ]
                if integer
                else [
                    f"  %bp{c} = getelementptr float, ptr %buf, i64 %b{c}",
                    f"  store <16 x float> %f{c}, ptr %bp{c}, align 4",
                ]
            ),
            f"  %q{c} = fmul <16 x float> %f{c}, %f{c}",
        ]
        square = f"%q{c}"
        if overlap and c == len(offsets) - 1:  # lanes already counted by the part before
            fresh = _mask(lambda i: i >= LANES - overlap)
            zero = "<16 x float> zeroinitializer"
            lines.append(f"  %qm{c} = select <16 x i1> {fresh}, <16 x float> %q{c}, {zero}")
            square = f"%qm{c}"
        lines.append(f"  %s{c} = fadd <16 x float> {acc}, {square}")
        acc = f"%s{c}"
    last = len(offsets) - 1
    lines += [
        f"  %tot = call reassoc float @llvm.vector.reduce.fadd.v16f32(float -0.0, <16 x float> {acc})",
        f"  %klast = extractelement <16 x float> %f{last}, i32 15",
        "  %k2 = fmul float %klast, %klast",
        "  %ss = call float @llvm.fma.f32(float %wm1, float %k2, float %tot)",
        "  %sptr = getelementptr float, ptr %sb, i64 %p",
        "  store float %ss, ptr %sptr, align 4",
        "  %p.next = add i64 %p, 1",
        "  br label %loop",
        "exit:",
    ]
    v = "<16 x float>"
    for k in range(0, SEGMENT, LANES):  # the segment's multipliers, 16 at a time (past m: unused)
        lines += [
            f"  %sv{k}p = getelementptr float, ptr %sb, i64 {k}",
            f"  %sv{k} = load {v}, ptr %sv{k}p, align 64",
            f"  %pos{k} = fcmp ogt {v} %sv{k}, zeroinitializer",
            f"  %rt{k} = call {v} @llvm.sqrt.v16f32({v} %sv{k})",
            f"  %inv{k} = fdiv {v} {_vec(1.0)}, %rt{k}",
            f"  %scale{k} = select <16 x i1> %pos{k}, {v} %inv{k}, {v} zeroinitializer",
            f"  store {v} %scale{k}, ptr %sv{k}p, align 64",
        ]
    lines += [
        "  ret void",
        "}",
    ]
    return "\n".join(lines)


def _splat(name: str, scalar: str, element: str = "float") -> list[str]:
    """IR lines making the 16-lane vector ``%{name}`` with every lane the ``element`` ``scalar``."""
    vector = f"<16 x {element}>"
    return [
        f"  %{name}.i = insertelement {vector} poison, {element} {scalar}, i32 0",
        f"  %{name} = shufflevector {vector} %{name}.i, {vector} poison, <16 x i32> zeroinitializer",
    ]


def _products(
    pixels: int, width: int, padded: int, parts: list[str], integer: bool
) -> tuple[list[str], dict[tuple[int, str], str]]:
    """IR lines of the products of ``pixels`` converted code rows with the column vectors ``parts``.

    Float32 (``padded_columns``: (width, parts, 16)): each code is broadcast into a fused multiply-add.
    ``integer`` (:func:`integer_columns`: int32 (1 + pairs, parts, 16)): row 0 holds the columns' float32
    scales, then for each pair of codes ``2p, 2p + 1`` lane ``j`` holds column ``j``'s two int16 values; a
    pixel's pair (int16 codes) is read as one int32, broadcast to the 16 lanes and multiplied-added by
    ``vpdpwssd`` (AVX512-VNNI: 32 products an instruction, summed exactly in int32), the sums then
    converted to float32 and scaled. Returns the lines and each (pixel, part)'s <16 x float> products.
    """
    element, code = ("i32", "i16") if integer else ("float", "float")
    step = 2 if integer else 1  # codes a broadcast
    first = 1 if integer else 0  # the columns' row of the first codes (after the scales)
    v = f"<16 x {element}>"
    lines = []
    acc = {(u, part): "zeroinitializer" for u in range(pixels) for part in parts}
    for i in range(-(-width // step)):
        for n, part in enumerate(parts):
            offset = ((first + i) * len(parts) + n) * LANES
            lines += [
                f"  %q{part}p{i} = getelementptr {element}, ptr %q, i64 {offset}",
                f"  %q{part}{i} = load {v}, ptr %q{part}p{i}, align 64",
            ]
        for u in range(pixels):
            name = f"{u}_{i}"
            lines += [
                f"  %xp{name} = getelementptr {code}, ptr %buf, i64 {u * padded + step * i}",
                f"  %x{name} = load {element}, ptr %xp{name}, align 4",
                *_splat(f"xs{name}", f"%x{name}", element),
            ]
            for part in parts:
                product = (
                    f"@llvm.x86.avx512.vpdpwssd.512({v} {acc[u, part]}, {v} %xs{name}, {v} %q{part}{i})"
                    if integer
                    else f"@llvm.fma.v16f32({v} %xs{name}, {v} %q{part}{i}, {v} {acc[u, part]})"
                )
                lines.append(f"  %acc{part}{name} = call {v} {product}")
                acc[u, part] = f"%acc{part}{name}"
    if not integer:
        return lines, acc
    for n, part in enumerate(parts):
        lines += [
            f"  %scp{part} = getelementptr float, ptr %q, i64 {n * LANES}",
            f"  %sc{part} = load <16 x float>, ptr %scp{part}, align 64",
        ]
    for (u, part), name in list(acc.items()):
        lines += [
            f"  %accf{part}{u} = sitofp {v} {name} to <16 x float>",
            f"  %accs{part}{u} = fmul <16 x float> %accf{part}{u}, %sc{part}",
        ]
        acc[u, part] = f"%accs{part}{u}"
    return lines, acc


def _group_ir(pixels: int, width: int, padded: int, many: bool, split: bool, integer: bool) -> str:
    """``@group{pixels}``: the outputs of ``pixels`` converted pixels into ``out``.

    The background columns are one vector (lanes ``%used_b``) or, ``split``, two (the first 16 columns,
    lanes ``%used_b``, then the rest, lanes ``%used_c``). Without ``many``, they are the differences
    ``l_j - l_c`` and each pixel gets ``1 / (1 + sum_j exp(s d_j))`` (the two vectors' exponentials
    added); with it, 16 concept columns (lanes ``%used_a``) come first and concept ``i`` gets
    ``sigmoid(s l_i - logsumexp(s l_background))``, written as ``1 / (1 + S exp(M - s l_i))`` with ``M``
    the largest background logit and ``S = sum exp(s l_j - M)``. The products are float32 or, ``integer``,
    int16 (:func:`_products`).
    """
    v = "<16 x float>"
    background = ["b", "c"] if split else ["b"]
    parts = (["a"] if many else []) + background
    head = (
        f"define internal void @group{pixels}(ptr %buf, ptr %sb, ptr %q, ptr %out, ptr %valid, "
        f"{_MASKS}) alwaysinline {{"
    )
    body, acc = _products(pixels, width, padded, parts, integer)
    lines = [head, "entry:", *body]
    for u in range(pixels):
        lines += [
            f"  %sp{u} = getelementptr float, ptr %sb, i64 {u}",
            f"  %s{u} = load float, ptr %sp{u}, align 4",
            *_splat(f"ss{u}", f"%s{u}"),
            f"  %oo{u} = mul i64 %outputs, {u}",
            f"  %op{u} = getelementptr float, ptr %out, i64 %oo{u}",
            f"  %vp{u} = getelementptr i8, ptr %valid, i64 {u}",
            f"  %vv{u} = load i8, ptr %vp{u}, align 1",
            f"  %ok{u} = icmp ne i8 %vv{u}, 0",
            # NaN added where invalid: a select of the results themselves becomes a branch (measured 2x)
            f"  %nan{u} = select i1 %ok{u}, float 0.0, float {_f32(float('nan'))}",
        ]
        for part in background:
            lines.append(f"  %l{part}{u} = fmul {v} {acc[u, part]}, %ss{u}")
        if not many:
            lines += [
                *_exp_sum(u, {part: f"%l{part}{u}" for part in background}, f"%t{u}"),
                f"  %d{u} = fadd float %t{u}, 1.0",
                f"  %o{u} = fdiv float 1.0, %d{u}",
                f"  %of{u} = fadd float %o{u}, %nan{u}",
                f"  store float %of{u}, ptr %op{u}, align 4",
            ]
            continue
        lines.append(f"  %la{u} = fmul {v} {acc[u, 'a']}, %ss{u}")
        for part in background:
            lines.append(
                f"  %l{part}m{u} = select <16 x i1> %used_{part}, {v} %l{part}{u}, {v} {_vec(float('-inf'))}"
            )
        combined, lm = _combine(f"lm{u}", [f"%l{part}m{u}" for part in background], "maxnum")
        lines += [
            *combined,
            f"  %top{u} = call nnan float @llvm.vector.reduce.fmax.v16f32({v} {lm})",
            *_splat(f"tops{u}", f"%top{u}"),
        ]
        lines += [f"  %d{part}{u} = fsub {v} %l{part}{u}, %tops{u}" for part in background]
        lines += [
            *_exp_sum(u, {part: f"%d{part}{u}" for part in background}, f"%sum{u}"),
            *_splat(f"sums{u}", f"%sum{u}"),
            f"  %da{u} = fsub {v} %tops{u}, %la{u}",
            f"  %ea{u} = call {v} @exp16({v} %da{u})",
            f"  %den{u} = call {v} @llvm.fma.v16f32({v} %sums{u}, {v} %ea{u}, {v} {_vec(1.0)})",
            f"  %pa{u} = fdiv {v} {_vec(1.0)}, %den{u}",
            *_splat(f"nans{u}", f"%nan{u}"),
            f"  %paf{u} = fadd {v} %pa{u}, %nans{u}",
            f"  call void @llvm.masked.store.v16f32.p0({v} %paf{u}, ptr %op{u}, i32 4, <16 x i1> %used_a)",
        ]
    lines += ["  ret void", "}"]
    return "\n".join(lines)


def _exp_sum(u: int, logits: dict[str, str], total: str) -> list[str]:
    """IR lines summing the exponentials of pixel ``u``'s logits (part: value), used lanes, into ``total``."""
    v = "<16 x float>"
    lines = []
    for part, value in logits.items():
        lines += [
            f"  %e{part}{u} = call {v} @exp16({v} {value})",
            f"  %em{part}{u} = select <16 x i1> %used_{part}, {v} %e{part}{u}, {v} zeroinitializer",
        ]
    combined, em = _combine(f"em{u}", [f"%em{part}{u}" for part in logits], "fadd")
    return [
        *lines,
        *combined,
        f"  {total} = call reassoc float @llvm.vector.reduce.fadd.v16f32(float -0.0, {v} {em})",
    ]


def _combine(name: str, vectors: list[str], op: str) -> tuple[list[str], str]:
    """IR lines combining one or two <16 x float> by ``fadd`` or ``maxnum`` into ``%{name}``; the result."""
    if len(vectors) == 1:
        return [], vectors[0]
    v = "<16 x float>"
    first, second = vectors
    if op == "fadd":
        return [f"  %{name} = fadd {v} {first}, {second}"], f"%{name}"
    return [f"  %{name} = call {v} @llvm.maxnum.v16f32({v} {first}, {v} {second})"], f"%{name}"


def _group_call(index: str, pixels: int, padded: int, code: str) -> str:
    """IR lines of ``@score`` calling ``@group{pixels}`` on the segment's pixels from ``%{index}`` on.

    The converted codes are of the IR type ``code`` (float, or i16 for integer products).
    """
    i = index
    return "\n".join(
        [
            f"  %{i}b = mul i64 %{i}, {padded}",
            f"  %{i}buf = getelementptr {code}, ptr %buf, i64 %{i}b",
            f"  %{i}sb = getelementptr float, ptr %sb, i64 %{i}",
            f"  %{i}o = mul i64 %{i}, %outputs",
            f"  %{i}out = getelementptr float, ptr %sdst, i64 %{i}o",
            f"  %{i}valid = getelementptr i8, ptr %svalid, i64 %{i}",
            f"  call void @group{pixels}(ptr %{i}buf, ptr %{i}sb, ptr %q, ptr %{i}out, ptr %{i}valid, "
            f"{_MASKS})",
        ]
    )


def _score_ir(width: int, padded: int, group: int, integer: bool) -> str:
    """``@score``: rows of pixels (codes ``rstride`` bytes apart, outputs ``ostride`` floats apart)."""
    code = "i16" if integer else "float"
    return f"""
define void @score(i64 %na, i64 %nb, ptr %codes, i64 %rows, i64 %cols, i64 %rstride, ptr %valid,
                   i64 %vstride, ptr %q, float %wm1, ptr %out, i64 %ostride) {{
entry:
  %na32 = trunc i64 %na to i32
  %nai = insertelement <16 x i32> poison, i32 %na32, i32 0
  %nas = shufflevector <16 x i32> %nai, <16 x i32> poison, <16 x i32> zeroinitializer
  %used_a = icmp ult <16 x i32> {_LANE_INDEX}, %nas
  %nb32 = trunc i64 %nb to i32
  %nbi = insertelement <16 x i32> poison, i32 %nb32, i32 0
  %nbs = shufflevector <16 x i32> %nbi, <16 x i32> poison, <16 x i32> zeroinitializer
  %used_b = icmp ult <16 x i32> {_LANE_INDEX}, %nbs
  %used_c = icmp ult <16 x i32> {_lane_index(LANES)}, %nbs
  %one = icmp eq i64 %na, 0
  %outputs = select i1 %one, i64 1, i64 %na
  %buf = alloca float, i64 {SEGMENT * padded}, align 64
  %sb = alloca float, i64 {SEGMENT}, align 64
  call void @llvm.memset.p0.i64(ptr %sb, i8 0, i64 {4 * SEGMENT}, i1 false)
  br label %rloop
rloop:
  %r = phi i64 [0, %entry], [%r.next, %slatch.exit]
  %rdone = icmp sge i64 %r, %rows
  br i1 %rdone, label %exit, label %rbody
rbody:
  %roff = mul i64 %r, %rstride
  %src = getelementptr i8, ptr %codes, i64 %roff
  %ooff = mul i64 %r, %ostride
  %dst = getelementptr float, ptr %out, i64 %ooff
  %voff = mul i64 %r, %vstride
  %vrow = getelementptr i8, ptr %valid, i64 %voff
  br label %sloop
sloop:
  %s0 = phi i64 [0, %rbody], [%s0.next, %slatch]
  %sdone = icmp sge i64 %s0, %cols
  br i1 %sdone, label %slatch.exit, label %sbody
sbody:
  %left = sub i64 %cols, %s0
  %short = icmp slt i64 %left, {SEGMENT}
  %m = select i1 %short, i64 %left, i64 {SEGMENT}
  %coff = mul i64 %s0, {width}
  %csrc = getelementptr i8, ptr %src, i64 %coff
  call void @convert(ptr %csrc, i64 %m, ptr %buf, ptr %sb, float %wm1)
  %sout = mul i64 %s0, %outputs
  %sdst = getelementptr float, ptr %dst, i64 %sout
  %svalid = getelementptr i8, ptr %vrow, i64 %s0
  br label %gloop
gloop:
  %g = phi i64 [0, %sbody], [%g.next, %gbody]
  %gend = add i64 %g, {group}
  %gok = icmp sle i64 %gend, %m
  br i1 %gok, label %gbody, label %tloop
gbody:
{_group_call("g", group, padded, code)}
  %g.next = add i64 %g, {group}
  br label %gloop
tloop:
  %t = phi i64 [%g, %gloop], [%t.next, %tbody]
  %tdone = icmp sge i64 %t, %m
  br i1 %tdone, label %slatch, label %tbody
tbody:
{_group_call("t", 1, padded, code)}
  %t.next = add i64 %t, 1
  br label %tloop
slatch:
  %s0.next = add i64 %s0, {SEGMENT}
  br label %sloop
slatch.exit:
  %r.next = add i64 %r, 1
  br label %rloop
exit:
  ret void
}}
"""


def _lane_index(start: int) -> str:
    """The <16 x i32> constant ``start, start + 1, ..., start + 15``."""
    return "<" + ", ".join(f"i32 {start + i}" for i in range(LANES)) + ">"


_LANE_INDEX = _lane_index(0)
#: The lanes of each column vector (concepts; background columns 0-15; 16-31) and the outputs a pixel.
#: (the group functions' last parameters, and the arguments ``@score`` calls them with).
_MASKS = "<16 x i1> %used_a, <16 x i1> %used_b, <16 x i1> %used_c, i64 %outputs"

_DECLARATIONS = """
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
declare <16 x float> @llvm.maxnum.v16f32(<16 x float>, <16 x float>)
declare <16 x float> @llvm.minnum.v16f32(<16 x float>, <16 x float>)
declare <16 x float> @llvm.roundeven.v16f32(<16 x float>)
declare float @llvm.vector.reduce.fadd.v16f32(float, <16 x float>)
declare float @llvm.fma.f32(float, float, float)
declare float @llvm.sqrt.f32(float)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)
declare <16 x float> @llvm.sqrt.v16f32(<16 x float>)
declare void @llvm.prefetch.p0(ptr, i32, i32, i32)
declare float @llvm.vector.reduce.fmax.v16f32(<16 x float>)
declare void @llvm.masked.store.v16f32.p0(<16 x float>, ptr, i32, <16 x i1>)
declare <16 x i32> @llvm.x86.avx512.vpdpwssd.512(<16 x i32>, <16 x i32>, <16 x i32>)
"""


def kernel_ir(width: int, many: bool, split: bool = False, integer: bool = False) -> str:
    """The LLVM IR module of a kernel for ``width`` codes a pixel and one concept or ``many``.

    It takes up to 16 background columns or, ``split``, up to 32. The column counts are arguments of
    ``@score`` (see :func:`_group_ir`). ``integer``: the products are int16 by ``vpdpwssd`` (AVX512-VNNI),
    of the columns of :func:`integer_columns`.
    """
    padded = -(-width // LANES) * LANES
    parts = [
        _DECLARATIONS,
        _exp_ir(),
        _convert_ir(width, padded, integer),
        _group_ir(GROUP, width, padded, many, split, integer),
        _group_ir(1, width, padded, many, split, integer),
        _score_ir(width, padded, GROUP, integer),
    ]
    return "\n".join(parts)


@functools.cache
def _host_cpu() -> tuple[str, dict[str, bool]]:
    """This process's LLVM target triple and the host CPU's features (``{"fma": True, ...}``)."""
    import llvmlite.binding as llvm

    return llvm.get_process_triple(), dict(llvm.get_host_cpu_features())


def _fast_fma(triple: str, features: dict[str, bool]) -> bool:
    """Whether the CPU multiplies-adds vectors in one instruction (else each lane is an ``fmaf`` call).

    x86 needs FMA3 and AVX2 or AVX-512; 64-bit Arm has it always; other CPUs are left to torch.
    """
    arch = triple.split("-")[0]
    if arch in ("x86_64", "i386", "i686"):
        return bool(features.get("fma")) and bool(features.get("avx2") or features.get("avx512f"))
    return arch in ("aarch64", "arm64")


def _vnni(triple: str, features: dict[str, bool]) -> bool:
    """Whether the CPU has AVX512-VNNI's ``vpdpwssd`` (int16 pairs multiplied-added into int32 lanes)."""
    return triple.split("-")[0] == "x86_64" and bool(features.get("avx512vnni") and features.get("avx512bw"))


def integer_products() -> bool:
    """Whether kernels compiled now use integer products (:data:`USE_VNNI` and a CPU with VNNI)."""
    if not USE_VNNI:
        return False
    try:
        return _vnni(*_host_cpu())
    except ImportError:
        return False


def _compile(width: int, many: bool, split: bool, integer: bool) -> Callable[..., None] | None:
    """The compiled ``score`` function, or None if llvmlite is missing or cannot build fast for this CPU."""
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return None
    try:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        triple, features = _host_cpu()
        if not _fast_fma(triple, features):  # measured 4x slower than torch, compiled in 5 s
            return None
        target = llvm.Target.from_triple(triple)
        # fast-dpwssd: else the code generator splits each vpdpwssd into vpmaddwd + vpaddd where the chain
        # of a pixel's sums is long (a shorter critical path, twice the instructions: measured 1.5x slower)
        flags = llvm.get_host_cpu_features().flatten() + (",+fast-dpwssd" if integer else "")
        machine = target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=flags, opt=3)
        module = llvm.parse_assembly(kernel_ir(width, many, split, integer))
        module.triple = triple
        module.data_layout = str(machine.target_data)
        module.verify()
        # the IR is written as the loop should run: -O0 inlines the always-inline parts, the code generator
        # at -O3 does the rest (measured as fast as -O3 passes, compiled 3-5x sooner)
        tuning = llvm.create_pipeline_tuning_options(speed_level=0)
        builder = llvm.create_pass_builder(machine, tuning)
        builder.getModulePassManager().run(module, builder)
        engine = llvm.create_mcjit_compiler(module, machine)
        engine.finalize_object()
    except (RuntimeError, AttributeError):  # an LLVM that refuses the IR, an older llvmlite
        return None
    _ENGINES.append(engine)
    fn = _SIGNATURE(engine.get_function_address("score"))
    if integer:
        _INTEGER.add(id(fn))
    return fn


def probability_kernel_fn(width: int, concepts: int, background: int) -> Callable[..., None] | None:
    """The compiled kernel for ``width`` int8 codes, ``concepts`` and ``background`` columns.

    ``concepts == 0``: one concept, ``background`` (<= 32) columns of differences ``l_j - l_c``; else
    up to 16 concepts against up to 32 background columns. Over 16 background columns, the kernel scores
    them as two vectors (the shipped vocabulary is 17 prompts). Compiled once per process, code count and
    kind (under a second); None without llvmlite, on a CPU without vector FMA (x86 without FMA3 and AVX2)
    or for shapes it does not take (fewer than 16 codes, more columns). Where the CPU has AVX512-VNNI
    (and :data:`USE_VNNI`), the kernel multiplies int16 columns (:func:`kernel_columns`), for up to
    :data:`INTEGER_MAX_WIDTH` codes.
    """
    if width < LANES or not 0 <= concepts <= LANES or not 0 < background <= 2 * LANES:
        return None
    key = (width, concepts > 0, background > LANES, integer_products() and width <= INTEGER_MAX_WIDTH)
    with _LOCK:
        if key not in _COMPILED:
            _COMPILED[key] = _compile(*key)
        fn = _COMPILED[key]
    return None if fn is None else partial(fn, concepts, background)


def _column_parts(concepts: int, background: int) -> int:
    """Vectors of 16 columns a code the kernel reads: the concepts' (if several), 1 or 2 of background."""
    return (concepts > 0) + (2 if background > LANES else 1)


def is_integer(fn: Callable[..., None]) -> bool:
    """Whether a kernel of :func:`probability_kernel_fn` reads integer columns (:func:`integer_columns`)."""
    return id(fn.func if isinstance(fn, partial) else fn) in _INTEGER


def kernel_columns(
    fn: Callable[..., None], concepts: np.ndarray | None, background: np.ndarray
) -> np.ndarray:
    """Query columns as the kernel ``fn`` reads them: :func:`padded_columns`, integer ones if it is."""
    columns = padded_columns(concepts, background)
    return integer_columns(columns) if is_integer(fn) else columns


def _aligned(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zeroed array of 4-byte items, 64-byte aligned (the kernel's vector loads)."""
    size = int(np.prod(shape))
    raw: np.ndarray = np.zeros(size + LANES, dtype)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start : start + size].reshape(shape)


def padded_columns(concepts: np.ndarray | None, background: np.ndarray) -> np.ndarray:
    """Query columns as the kernel reads them: float32 (width, parts, 16), 64-byte aligned, zero-padded.

    The parts are the concepts' columns (if any), then the first 16 background columns, then (over 16)
    the rest.

    Args:
        concepts: Concept columns (width, m), or None for one concept's differences.
        background: Background columns (width, k) (the differences for one concept).
    """
    parts = [background[:, i : i + LANES] for i in range(0, background.shape[1], LANES)]
    parts = parts if concepts is None else [concepts, *parts]
    out = _aligned((background.shape[0], len(parts), LANES), np.float32)
    for n, part in enumerate(parts):
        out[:, n, : part.shape[1]] = part
    return out


def integer_columns(columns: np.ndarray) -> np.ndarray:
    """Padded float32 columns (width, parts, 16) quantised for the integer kernel: int32 (1 + pairs, ...).

    Each column ``j`` is scaled by ``S_j = 32767 / max_i |q_ij|`` and rounded to int16 (15 bits of the
    largest value; errors of at most ``max_i |q_ij| / 65534`` a value). Row 0 holds the float32 ``1 / S_j``
    (as int32 bits); row ``1 + p`` lane ``j`` the int16 pair ``q_(2p)j S_j`` (low half), ``q_(2p+1)j S_j``
    (high half), as ``vpdpwssd`` multiplies them with a pixel's codes ``2p, 2p + 1`` read as one int32.
    """
    width, parts, lanes = columns.shape
    pairs = -(-width // 2)
    top = np.abs(columns.astype(np.float64)).max(axis=0)
    scale = np.where(top > 0, 32767.0 / np.where(top > 0, top, 1.0), 1.0)
    quantised = np.zeros((2 * pairs, parts, lanes), np.int16)
    quantised[:width] = np.rint(columns * scale)
    out = _aligned((1 + pairs, parts, lanes), np.int32)
    out[0] = (1.0 / scale).astype(np.float32).view(np.int32)
    out[1:] = quantised.reshape(pairs, 2, parts, lanes).transpose(0, 2, 3, 1).copy().view(np.int32)[..., 0]
    return out


def score_int8(
    fn: Callable[..., None],
    codes: np.ndarray,
    columns: np.ndarray,
    w_last: float,
    out: np.ndarray,
    valid: np.ndarray | None = None,
) -> None:
    """Run a compiled kernel over codes (rows, cols, width) into ``out`` (rows, cols, outputs) float32.

    Args:
        fn: From :func:`probability_kernel_fn`.
        codes: int8 codes whose pixels are contiguous within a row (any row stride).
        columns: From :func:`kernel_columns`, or float32 ones of :func:`padded_columns` (quantised here,
            on each call, for an integer kernel).
        w_last: The last code's norm weight (the others are 1).
        out: float32 outputs whose pixels are contiguous within a row (any row stride).
        valid: bool or uint8 (rows, cols), pixels contiguous within a row: outputs are NaN where 0.

    Raises:
        ValueError: If the pixels are not contiguous within rows, or the columns are not of the codes'
            width or not 64-byte aligned (the kernel reads them as the code count and stride it was
            compiled for, in aligned loads), or not laid out for the kernel's column counts, or ``out``
            has not one output a concept.
    """
    rows, cols, width = codes.shape
    outputs = out.shape[2]
    integer = is_integer(fn)
    if integer and columns.dtype == np.float32 and columns.shape[0] == width:
        columns = integer_columns(columns)
    rows_needed, dtype = (1 + -(-width // 2), np.int32) if integer else (width, np.float32)
    if columns.shape[0] != rows_needed or columns.dtype != dtype or columns.ctypes.data % 64:
        raise ValueError(
            f"the fused kernel needs query columns of the codes' width {width}, 64-byte aligned "
            f"(kernel_columns), got {columns.dtype} {columns.shape}, {columns.ctypes.data % 64} bytes past 64"
        )
    if isinstance(fn, partial):  # the column counts it was given: the layout and outputs they need
        concepts, background = fn.args
        if columns.shape[1:] != (_column_parts(concepts, background), LANES) or outputs != max(concepts, 1):
            raise ValueError(
                f"the fused kernel of {concepts} concepts and {background} background columns needs "
                f"their padded_columns and {max(concepts, 1)} outputs a pixel, got columns {columns.shape} "
                f"and {outputs} outputs"
            )
    if valid is None:  # a row of ones read for every row
        valid = np.broadcast_to(np.ones(cols, np.uint8), (rows, cols))
    if codes.dtype != np.int8 or out.shape[:2] != (rows, cols) or valid.shape != (rows, cols):
        raise ValueError(
            f"the fused kernel scores int8 codes into outputs and a valid mask of their (rows, cols), got "
            f"{codes.dtype} codes {codes.shape[:2]}, outputs {out.shape[:2]}, valid {valid.shape}"
        )
    if (
        codes.strides[1:] != (width, 1)
        or out.strides[1:] != (4 * outputs, 4)
        or valid.strides[1] != 1
        or valid.itemsize != 1
        or out.dtype != np.float32
    ):
        raise ValueError("the fused kernel needs pixels contiguous within each row")
    fn(
        codes.ctypes.data,
        rows,
        cols,
        codes.strides[0],
        valid.ctypes.data,
        valid.strides[0],
        columns.ctypes.data,
        float(w_last) - 1.0,
        out.ctypes.data,
        out.strides[0] // 4,
    )
