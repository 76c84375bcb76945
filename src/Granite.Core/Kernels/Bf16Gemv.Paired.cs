using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Granite.Core.Kernels;

/// <summary>
/// The 256-bit GEMV's arithmetic carried by 512-bit instructions, for calls with several input rows (batched decode
/// steps, grouped experts, short prefills) on AVX-512 CPUs whose GEMV runs the 256-bit kernel (the default there).
/// </summary>
/// <remarks>
/// With several rows the GEMV stops being bound by reading the weights and becomes bound by the FMAs (a [8, 1536]·W
/// head at 2 × 256-bit FMA per cycle takes longer than streaming W). Here one 512-bit register holds the 8-lane
/// accumulators of two weight rows side by side ([row r | row r+1]), the two rows' 16 BF16 weights are loaded into its
/// halves, and the x block is broadcast into both halves: every lane sees exactly the fused multiply-adds, in the same
/// order, that the 256-bit kernel (<c>Dot1</c>/<c>Dot4</c>/<c>Dot4x2</c>) performs, and each half is reduced with the same
/// <see cref="Vector256.Sum{T}(Vector256{T})"/>. So every output is bit-identical to the 256-bit path (and a row's
/// result still never depends on how many rows share the call), with half the FMA instructions and four x rows per
/// weight load instead of two.
/// </remarks>
internal sealed unsafe partial class Bf16Gemv
{
    /// <summary>Whether the paired 512-bit form can run on this CPU (AVX-512 F/DQ with hardware-accelerated 512-bit vectors).</summary>
    internal static bool PairedSupported => Avx512DQ.IsSupported && Vector512.IsHardwareAccelerated;

    private readonly partial struct Job
    {
        /// <summary>
        /// <see cref="RowsVector256"/>'s results for every output column in [from, to), four weight rows × four x rows per
        /// pass in paired 512-bit registers; columns past the last 4-row block use <c>Dot1</c> as there.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RowsPaired512(int from, int to)
        {
            float* sums = stackalloc float[128];                    // a 4 × 4 tile's accumulators, stored before reduction
            int r = from;
            for (; r + 4 <= to; r += 4)
            {
                int m = 0;
                for (; m + 4 <= _rows; m += 4) Pair4x4(r, m, sums);
                for (; m < _rows; m++) Pair4x1(r, m);
            }
            for (; r < to; r++)
                for (int m = 0; m < _rows; m++) _y[(long)m * _n + r] = Dot1(_w + (long)r * _k, m);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<float> Broadcast(float* p) => Avx512DQ.BroadcastVector256ToVector512(p);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<uint> Halves(ushort* lower, ushort* upper) =>
            // Not Vector512.Create(lo, hi): the JIT built that through a stack slot, a store and a reload per call.
            Avx512F.InsertVector256(Vector256.Load((uint*)lower).ToVector512Unsafe(), Vector256.Load((uint*)upper), 1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Pair4x4(int r, int m, float* sums)
        {
            int k = _k, kBlocks = k / 16;
            long stride = (long)kBlocks * 16;
            var mask = Vector512.Create(0xFFFF0000u);
            ushort* w0 = _w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* x0 = _perm + m * stride, x1 = x0 + stride, x2 = x1 + stride, x3 = x2 + stride;
            // aJ: rows r | r+1 for x row m+J; bJ: rows r+2 | r+3.
            Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                int o = b * 16;
                var v01 = Halves(w0 + o, w1 + o);
                var v23 = Halves(w2 + o, w3 + o);
                var e01 = (v01 << 16).AsSingle();
                var d01 = (v01 & mask).AsSingle();
                var e23 = (v23 << 16).AsSingle();
                var d23 = (v23 & mask).AsSingle();
                var xe = Broadcast(x0 + o);
                var xo = Broadcast(x0 + o + 8);
                a0 = Vector512.FusedMultiplyAdd(d01, xo, Vector512.FusedMultiplyAdd(e01, xe, a0));
                b0 = Vector512.FusedMultiplyAdd(d23, xo, Vector512.FusedMultiplyAdd(e23, xe, b0));
                xe = Broadcast(x1 + o);
                xo = Broadcast(x1 + o + 8);
                a1 = Vector512.FusedMultiplyAdd(d01, xo, Vector512.FusedMultiplyAdd(e01, xe, a1));
                b1 = Vector512.FusedMultiplyAdd(d23, xo, Vector512.FusedMultiplyAdd(e23, xe, b1));
                xe = Broadcast(x2 + o);
                xo = Broadcast(x2 + o + 8);
                a2 = Vector512.FusedMultiplyAdd(d01, xo, Vector512.FusedMultiplyAdd(e01, xe, a2));
                b2 = Vector512.FusedMultiplyAdd(d23, xo, Vector512.FusedMultiplyAdd(e23, xe, b2));
                xe = Broadcast(x3 + o);
                xo = Broadcast(x3 + o + 8);
                a3 = Vector512.FusedMultiplyAdd(d01, xo, Vector512.FusedMultiplyAdd(e01, xe, a3));
                b3 = Vector512.FusedMultiplyAdd(d23, xo, Vector512.FusedMultiplyAdd(e23, xe, b3));
            }
            // Stored first and reduced from memory (Reduce4): reduced straight from registers, the JIT spilled every
            // accumulator to the stack on each iteration of the loop above.
            a0.Store(sums); b0.Store(sums + 16); a1.Store(sums + 32); b1.Store(sums + 48);
            a2.Store(sums + 64); b2.Store(sums + 80); a3.Store(sums + 96); b3.Store(sums + 112);
            Reduce4(r, m, sums);
        }

        /// <summary>
        /// <see cref="Store"/> for x rows m..m+3 from accumulators stored as [rows r|r+1, rows r+2|r+3] per x row (32 floats):
        /// the same reductions in the same order.
        /// </summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        private void Reduce4(int r, int m, float* sums)
        {
            for (int j = 0; j < 4; j++)
            {
                float* yr = _y + (long)(m + j) * _n + r;
                float* a = sums + j * 32;
                for (int i = 0; i < 4; i++) yr[i] = Vector256.Sum(Vector256.Load(a + 8 * i));
                if ((_k & 15) != 0)
                    for (int i = 0; i < 4; i++) yr[i] += Tail(_w + (long)(r + i) * _k, m + j);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Pair4x1(int r, int m)
        {
            int k = _k, kBlocks = k / 16;
            var mask = Vector512.Create(0xFFFF0000u);
            ushort* w0 = _w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* x0 = _perm + m * (long)kBlocks * 16;
            Vector512<float> a = default, c = default;
            for (int b = 0; b < kBlocks; b++)
            {
                int o = b * 16;
                var v01 = Halves(w0 + o, w1 + o);
                var v23 = Halves(w2 + o, w3 + o);
                var xe = Broadcast(x0 + o);
                var xo = Broadcast(x0 + o + 8);
                a = Vector512.FusedMultiplyAdd((v01 & mask).AsSingle(), xo, Vector512.FusedMultiplyAdd((v01 << 16).AsSingle(), xe, a));
                c = Vector512.FusedMultiplyAdd((v23 & mask).AsSingle(), xo, Vector512.FusedMultiplyAdd((v23 << 16).AsSingle(), xe, c));
            }
            Store(r, m, a, c);
        }

        /// <summary>Reduces each half as the 256-bit kernel reduces its accumulator, then adds the column tail the same way.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Store(int r, int m, Vector512<float> rows01, Vector512<float> rows23)
        {
            float* yr = _y + (long)m * _n + r;
            yr[0] = Vector256.Sum(rows01.GetLower());
            yr[1] = Vector256.Sum(rows01.GetUpper());
            yr[2] = Vector256.Sum(rows23.GetLower());
            yr[3] = Vector256.Sum(rows23.GetUpper());
            if ((_k & 15) != 0)
            {
                long k = _k;
                ushort* w0 = _w + r * k;
                yr[0] += Tail(w0, m);
                yr[1] += Tail(w0 + k, m);
                yr[2] += Tail(w0 + 2 * k, m);
                yr[3] += Tail(w0 + 3 * k, m);
            }
        }
    }
}
