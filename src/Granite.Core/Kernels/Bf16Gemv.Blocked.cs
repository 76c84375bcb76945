using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Granite.Core.Kernels;

/// <summary>
/// The paired 512-bit kernel (Bf16Gemv.Paired.cs) register- and cache-blocked for calls with many input rows: routed
/// experts of a prefill (≈ 48 rows per expert for 512 tokens, 64 experts top-6) and, where measured faster, dense
/// prefill linears. Same arithmetic per output, so every result is bit-identical to the 256-bit GEMV and a row never
/// depends on how many rows share the call.
/// </summary>
/// <remarks>
/// The paired kernel computes 4 weight rows × 4 x rows per pass and streams the whole permuted x again for every 4
/// weight rows: with 48 rows and K = 1536 that is 288 KiB from L2 per 12 KiB of weights, and each 8-float x broadcast
/// feeds only 2 FMAs. Here a pass computes 8 weight rows × 4 x rows (16 accumulators): each x broadcast feeds 4 FMAs
/// (half the x traffic per FMA), the 8 rows are first copied once into a 64-byte-aligned buffer in the paired layout
/// ([row 2p | row 2p+1] per 16-column block, so one aligned 512-bit load replaces two 256-bit loads and an insert), and
/// x is processed in blocks of rows that stay in L2 while the weight rows of a work item sweep past them.
/// </remarks>
internal sealed unsafe partial class Bf16Gemv
{
    /// <summary>Fewest input rows for the blocked form (below it the packing copy is not repaid; the paired kernel runs).</summary>
    public const int BlockedMinRows = 8;

    /// <summary>Bytes of permuted x per row block of the blocked form (kept in L2 while the weight rows pass).</summary>
    private const int BlockedXBytes = 384 * 1024;

    private readonly partial struct Job
    {
        /// <summary>Output columns [from, to) for every input row: 8-row packed weight chunks × 4-row x tiles, x in L2-sized row blocks.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RowsBlocked512(int from, int to)
        {
            int kBlocks = _k / 16;
            int chunkEnd = from + (to - from) / 8 * 8;
            if (kBlocks == 0 || chunkEnd == from) { RowsPaired512(from, to); return; }
            long stride = (long)kBlocks * 16;
            int rowBlock = (int)Math.Max(4, BlockedXBytes / (stride * 4) / 4 * 4);
            // The packed chunk, then 256 floats where a tile's 16 accumulators are stored before they are reduced.
            var pack = (uint*)NativeMemory.AlignedAlloc((nuint)(((long)kBlocks * 64 + 256) * sizeof(uint)), 64);
            var sums = (float*)(pack + (long)kBlocks * 64);
            try
            {
                for (int m0 = 0; m0 < _rows; m0 += rowBlock)
                {
                    int m1 = Math.Min(_rows, m0 + rowBlock);
                    for (int r = from; r < chunkEnd; r += 8)
                    {
                        Pack8(r, pack, kBlocks);
                        int m = m0;
                        for (; m + 4 <= m1; m += 4) Packed8x4(pack, kBlocks, r, m, sums);
                        for (; m < m1; m++) Packed8x1(pack, kBlocks, r, m, sums);
                    }
                }
            }
            finally { NativeMemory.AlignedFree(pack); }
            if (chunkEnd < to) RowsPaired512(chunkEnd, to);
        }

        /// <summary>Weight rows r..r+7 into <paramref name="pack"/>: per 16-column block, pairs (r+2p | r+2p+1) of 8 uints each.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Pack8(int r, uint* pack, int kBlocks)
        {
            long k = _k;
            ushort* w = _w + r * k;
            for (int p = 0; p < 4; p++)
            {
                var lo = (uint*)(w + 2 * p * k);
                var hi = (uint*)(w + (2 * p + 1) * k);
                uint* dst = pack + p * 16;
                for (int b = 0; b < kBlocks; b++)
                {
                    Vector256.Load(lo + b * 8).Store(dst + b * 64);
                    Vector256.Load(hi + b * 8).Store(dst + b * 64 + 8);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too large to inline; fully optimised at once
        private void Packed8x4(uint* pack, int kBlocks, int r, int m, float* sums)
        {
            long stride = (long)kBlocks * 16;
            var mask = Vector512.Create(0xFFFF0000u);
            float* x0 = _perm + m * stride, x1 = x0 + stride, x2 = x1 + stride, x3 = x2 + stride;
            // aJP: x row m+J, weight rows r+2P | r+2P+1 (P = 0..3).
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
            Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                uint* q = pack + b * 64;
                int o = b * 16;
                var v = Vector512.LoadAligned(q);
                var e0 = (v << 16).AsSingle();
                var d0 = (v & mask).AsSingle();
                v = Vector512.LoadAligned(q + 16);
                var e1 = (v << 16).AsSingle();
                var d1 = (v & mask).AsSingle();
                v = Vector512.LoadAligned(q + 32);
                var e2 = (v << 16).AsSingle();
                var d2 = (v & mask).AsSingle();
                v = Vector512.LoadAligned(q + 48);
                var e3 = (v << 16).AsSingle();
                var d3 = (v & mask).AsSingle();
                var xe = Broadcast(x0 + o);
                var xo = Broadcast(x0 + o + 8);
                a00 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a00));
                a01 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a01));
                a02 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a02));
                a03 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a03));
                xe = Broadcast(x1 + o);
                xo = Broadcast(x1 + o + 8);
                a10 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a10));
                a11 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a11));
                a12 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a12));
                a13 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a13));
                xe = Broadcast(x2 + o);
                xo = Broadcast(x2 + o + 8);
                a20 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a20));
                a21 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a21));
                a22 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a22));
                a23 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a23));
                xe = Broadcast(x3 + o);
                xo = Broadcast(x3 + o + 8);
                a30 = Vector512.FusedMultiplyAdd(d0, xo, Vector512.FusedMultiplyAdd(e0, xe, a30));
                a31 = Vector512.FusedMultiplyAdd(d1, xo, Vector512.FusedMultiplyAdd(e1, xe, a31));
                a32 = Vector512.FusedMultiplyAdd(d2, xo, Vector512.FusedMultiplyAdd(e2, xe, a32));
                a33 = Vector512.FusedMultiplyAdd(d3, xo, Vector512.FusedMultiplyAdd(e3, xe, a33));
            }
            // Stored first and reduced from memory: reduced straight from registers, the JIT spilled every accumulator to
            // the stack on each iteration of the loop above (measured: half the FMA rate).
            a00.StoreAligned(sums); a01.StoreAligned(sums + 16); a02.StoreAligned(sums + 32); a03.StoreAligned(sums + 48);
            a10.StoreAligned(sums + 64); a11.StoreAligned(sums + 80); a12.StoreAligned(sums + 96); a13.StoreAligned(sums + 112);
            a20.StoreAligned(sums + 128); a21.StoreAligned(sums + 144); a22.StoreAligned(sums + 160); a23.StoreAligned(sums + 176);
            a30.StoreAligned(sums + 192); a31.StoreAligned(sums + 208); a32.StoreAligned(sums + 224); a33.StoreAligned(sums + 240);
            Reduce(r, m, sums, 4);
        }

        /// <summary>
        /// Writes the outputs of x rows m..m+rows−1 × weight rows r..r+7 from their stored accumulators (per x row, pairs
        /// 0..3 of 16 floats): each 8-lane half reduced as the 256-bit kernel reduces its accumulator, then the column tail.
        /// </summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        private void Reduce(int r, int m, float* sums, int rows)
        {
            for (int j = 0; j < rows; j++)
            {
                float* yr = _y + (long)(m + j) * _n + r;
                float* a = sums + j * 64;
                for (int i = 0; i < 8; i++) yr[i] = Vector256.Sum(Vector256.LoadAligned(a + 8 * i));
                if ((_k & 15) != 0)
                    for (int i = 0; i < 8; i++) yr[i] += Tail(_w + (long)(r + i) * _k, m + j);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // too large to inline; fully optimised at once
        private void Packed8x1(uint* pack, int kBlocks, int r, int m, float* sums)
        {
            var mask = Vector512.Create(0xFFFF0000u);
            float* x0 = _perm + m * (long)kBlocks * 16;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                uint* q = pack + b * 64;
                int o = b * 16;
                var xe = Broadcast(x0 + o);
                var xo = Broadcast(x0 + o + 8);
                var v = Vector512.LoadAligned(q);
                a0 = Vector512.FusedMultiplyAdd((v & mask).AsSingle(), xo, Vector512.FusedMultiplyAdd((v << 16).AsSingle(), xe, a0));
                v = Vector512.LoadAligned(q + 16);
                a1 = Vector512.FusedMultiplyAdd((v & mask).AsSingle(), xo, Vector512.FusedMultiplyAdd((v << 16).AsSingle(), xe, a1));
                v = Vector512.LoadAligned(q + 32);
                a2 = Vector512.FusedMultiplyAdd((v & mask).AsSingle(), xo, Vector512.FusedMultiplyAdd((v << 16).AsSingle(), xe, a2));
                v = Vector512.LoadAligned(q + 48);
                a3 = Vector512.FusedMultiplyAdd((v & mask).AsSingle(), xo, Vector512.FusedMultiplyAdd((v << 16).AsSingle(), xe, a3));
            }
            a0.StoreAligned(sums); a1.StoreAligned(sums + 16); a2.StoreAligned(sums + 32); a3.StoreAligned(sums + 48);
            Reduce(r, m, sums, 1);
        }
    }

    /// <summary>
    /// <see cref="Permute"/> for 16-column blocks with AVX-512: one lane permute per block ([even 8 | odd 8]), the same
    /// layout the scalar loop writes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Permute16Avx512(float* x, int rows, int k, float* perm)
    {
        int kBlocks = k / 16;
        var idx = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int m = 0; m < rows; m++)
        {
            float* src = x + (long)m * k, dst = perm + (long)m * kBlocks * 16;
            for (int b = 0; b < kBlocks; b++)
                Avx512F.PermuteVar16x32(Vector512.Load(src + b * 16), idx).Store(dst + b * 16);
        }
    }
}
