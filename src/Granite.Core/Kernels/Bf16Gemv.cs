using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Kernels;

/// <summary>
/// Decode-shaped linear for BF16 weights: y[m, n] = Σ_k x[m, k]·W[n, k] with W BF16 [N, K] (row-major, the checkpoint's
/// <c>[out, in]</c> layout), x float32 [M, K] for a few rows, float32 accumulation and a float32 result.
/// </summary>
/// <remarks>
/// Why: LibTorch 2.10's CPU BF16 GEMV reads weights at a fraction of memory bandwidth (measured on an AVX2-only VM), and
/// its OpenMP parallel regions stall whenever a worker thread is descheduled on a shared machine. This kernel streams
/// each weight row once with 512-bit (AVX-512) or 256-bit (AVX2) SIMD, chosen at load from the CPU (a BF16 value is the
/// top half of a float32, so widening is a shift/mask; .NET 10 exposes no AVX512-BF16 dot-product intrinsic), and
/// splits rows over the kernel workers with work stealing.
/// The activations are not rounded to BF16 (more accurate than BF16×BF16). One instance per <see cref="GraniteKernels"/>:
/// the instruction set and the worker count are chosen at model load; <see cref="KernelIsa.Scalar"/> runs portable loops.
/// </remarks>
internal sealed unsafe partial class Bf16Gemv
{
    /// <summary>
    /// Most input rows the kernel handles (more rows ⇒ a GEMM, see <see cref="GraniteKernels.Linear(Tensor, Tensor, Tensor?, KernelPart)"/>). The kernel
    /// reads each BF16 weight once whatever the row count, and keeps beating upcast + MKL GEMM up to about this many rows on
    /// the 2-vCPU AVX2 box (measured per shape in docs/benchmarks.md: 32 rows of a 1024×1536 expert 2.8 vs 4.7 ms, of the
    /// 6448×1536 Mamba in_proj 12.8 vs 37.4 ms; at 64 rows roughly even on the smallest weights). This is what makes a
    /// short prefill on top of a resumed session cost little more than a few decode steps.
    /// </summary>
    public const int MaxRows = 64;

    private readonly KernelIsa _isa;
    private readonly KernelWorkers _workers;
    private readonly long _parallelMinBytes;
    private readonly bool _paired512;
    private readonly bool _blocked;

    /// <param name="isa">Instruction set of the inner loops (<see cref="KernelIsa.Avx512"/> and above: 512-bit vectors).</param>
    /// <param name="workers">Threads the rows are split over.</param>
    /// <param name="parallelMinBytes">Weights smaller than this (bytes) are computed on the calling thread only.</param>
    /// <param name="paired512">With <paramref name="isa"/> = <see cref="KernelIsa.Avx2"/>: run calls of two or more rows in
    /// the paired 512-bit form (bit-identical results, see Bf16Gemv.Paired.cs); ignored where the CPU lacks AVX-512.</param>
    /// <param name="blocked">With the paired form: calls of ≥ <see cref="BlockedMinRows"/> rows run its register- and
    /// cache-blocked variant (bit-identical, see Bf16Gemv.Blocked.cs).</param>
    public Bf16Gemv(KernelIsa isa, KernelWorkers workers, long parallelMinBytes, bool paired512 = false, bool blocked = false)
    {
        _isa = isa;
        _workers = workers;
        _parallelMinBytes = parallelMinBytes;
        _paired512 = paired512 && isa == KernelIsa.Avx2 && PairedSupported;
        _blocked = _paired512 && blocked;
    }

    /// <summary>Whether multi-row calls use the paired 512-bit form of the 256-bit kernel.</summary>
    public bool Paired512 => _paired512;

    /// <summary>Whether calls of ≥ <see cref="BlockedMinRows"/> rows use the blocked form of the paired kernel (Bf16Gemv.Blocked.cs).</summary>
    public bool Blocked => _blocked;

    /// <summary>Whether <paramref name="weight"/>/<paramref name="x"/> qualify: CPU, contiguous BF16 [N, K], x with ≤ <paramref name="maxRows"/> rows.</summary>
    public static bool Supports(Tensor x, Tensor weight, int maxRows = MaxRows)
    {
        if (weight.dtype != ScalarType.BFloat16 || weight.dim() != 2 || weight.device_type != DeviceType.CPU || !weight.is_contiguous()) return false;
        if (x.device_type != DeviceType.CPU || x.dim() < 1 || x.shape[^1] != weight.shape[1]) return false;
        long rows = x.numel() / weight.shape[1];
        return rows >= 1 && rows <= maxRows;
    }

    /// <summary>x [..., K] (any float dtype) · Wᵀ (+ bias) → float32 [..., N].</summary>
    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        long n = weight.shape[0], k = weight.shape[1];
        long rows = x.numel() / k;
        var outShape = x.shape.ToArray();
        outShape[^1] = n;
        using var x32 = x.to_type(ScalarType.Float32).contiguous();
        var y = torch.empty(outShape, ScalarType.Float32, x.device);
        var xp = (float*)TorchNative.DataPointer(x32);
        var wp = (ushort*)TorchNative.DataPointer(weight);
        var yp = (float*)TorchNative.DataPointer(y);
        Run(xp, (int)rows, wp, (int)n, (int)k, yp);
        if (bias is not null) y.add_(bias);
        return y;
    }

    /// <summary>
    /// Routed-expert linears in one parallel pass: consecutive row groups of <paramref name="x"/> [R, K] go through their
    /// own weight, y[rows of group g] = x[rows of group g]·weights[g]ᵀ, with every weight a contiguous CPU BF16 [N, K]
    /// (same N, K) and <paramref name="rowCounts"/> (each 1..<paramref name="maxGroupRows"/>) summing to R; returns float32 [R, N].
    /// One call per MoE projection instead of one per expert: the per-call cost (thread wake-up, tensor wrappers) of small
    /// expert matrices exceeds their streaming time on a decode step, and a short prefill touches every expert.
    /// </summary>
    public Tensor LinearGrouped(Tensor x, IReadOnlyList<Tensor> weights, ReadOnlySpan<int> rowCounts, int maxGroupRows = MaxRows)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count != rowCounts.Length) throw new ArgumentException($"{weights.Count} weights for {rowCounts.Length} row groups", nameof(rowCounts));
        if (weights.Count == 0) throw new ArgumentException("no row groups", nameof(weights));
        long n = weights[0].shape.Length == 2 ? weights[0].shape[0] : -1, k = weights[0].shape.Length == 2 ? weights[0].shape[1] : -1;
        foreach (var w in weights)
            if (w.dtype != ScalarType.BFloat16 || w.dim() != 2 || !w.is_contiguous() || w.device_type != DeviceType.CPU || w.shape[0] != n || w.shape[1] != k)
                throw new ArgumentException("weights must be contiguous CPU BF16 tensors [N, K] of one shape", nameof(weights));
        long total = 0;
        foreach (int c in rowCounts)
        {
            if (c < 1 || c > maxGroupRows) throw new ArgumentOutOfRangeException(nameof(rowCounts), c, $"a row group has 1..{maxGroupRows} rows");
            total += c;
        }
        if (x.dim() != 2 || x.shape[1] != k || x.shape[0] != total || x.device_type != DeviceType.CPU)
            throw new ArgumentException($"x must be a CPU tensor [{total}, {k}]", nameof(x));
        using var x32 = x.to_type(ScalarType.Float32).contiguous();
        var y = torch.empty(new long[] { total, n }, ScalarType.Float32, x.device);
        var xp = (float*)TorchNative.DataPointer(x32);
        var yp = (float*)TorchNative.DataPointer(y);
        int width = BlockWidth(_isa);
        var pp = Permute(xp, (int)total, (int)k, width);
        try
        {
            int groups = rowCounts.Length;
            var jobs = new Job[groups];
            long row = 0, stride = k / width * width;
            for (int g = 0; g < groups; g++)
            {
                var wp = (ushort*)TorchNative.DataPointer(weights[g]);
                jobs[g] = new Job(_isa, xp + row * k, pp + row * stride, rowCounts[g], wp, (int)n, (int)k, yp + row * n, _paired512, _blocked);
                row += rowCounts[g];
            }
            if (_workers.Count == 1) { foreach (var job in jobs) job.Rows(0, (int)n); return y; }
            int block = (int)Math.Max(64, n / 4);
            int perGroup = (int)((n + block - 1) / block);
            _workers.For(groups * perGroup, new GroupedRowBlocks<Job>(jobs, block, perGroup, (int)n));
        }
        finally { NativeMemory.AlignedFree(pp); }
        return y;
    }

    /// <summary>Columns per permuted block: one vector load of BF16 weights (32 for 512-bit vectors, else 16).</summary>
    private static int BlockWidth(KernelIsa isa) => isa >= KernelIsa.Avx512 ? 32 : 16;

    /// <summary>
    /// x rows permuted per <paramref name="width"/>-column block into [even | odd] halves, so one vector load of
    /// <paramref name="width"/> BF16 values splits into two float vectors (even = word &lt;&lt; 16, odd = word &amp;
    /// 0xFFFF0000) that line up with it. 64-byte aligned native memory; the caller frees it (<see cref="NativeMemory.AlignedFree"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // fully optimised at once: tier-0 SIMD code is several times slower
    private float* Permute(float* x, int rows, int k, int width)
    {
        int kBlocks = k / width, half = width / 2;
        var perm = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(1L, (long)rows * kBlocks * width) * sizeof(float), 64);
        if (width == 16 && _paired512) { Permute16Avx512(x, rows, k, perm); return perm; }
        for (int m = 0; m < rows; m++)
            for (int b = 0; b < kBlocks; b++)
                for (int i = 0; i < half; i++)
                {
                    perm[((long)m * kBlocks + b) * width + i] = x[(long)m * k + b * width + 2 * i];
                    perm[((long)m * kBlocks + b) * width + half + i] = x[(long)m * k + b * width + 2 * i + 1];
                }
        return perm;
    }

    /// <summary>Computes y[m·N + n] for all m &lt; rows, n &lt; N.</summary>
    public void Run(float* x, int rows, ushort* w, int n, int k, float* y)
    {
        float* pp = Permute(x, rows, k, BlockWidth(_isa));
        try
        {
            int threads = _workers.Count;
            long work = (long)n * k * 2 * Math.Max(1, rows / 4);
            var job = new Job(_isa, x, pp, rows, w, n, k, y, _paired512, _blocked);
            if (threads == 1 || work < _parallelMinBytes) { job.Rows(0, n); return; }
            // Blocks of rows, several per thread so a descheduled worker's share is stolen by the others (a multiple of
            // 8 for the blocked form's 8-row chunks; results do not depend on the blocking).
            int block = (Math.Max(16, n / (threads * 8)) + 7) / 8 * 8;
            int blocks = (n + block - 1) / block;
            _workers.For(blocks, new RowBlocks<Job>(job, block, n));
        }
        finally { NativeMemory.AlignedFree(pp); }
    }

    private readonly partial struct Job : IRowRangeJob
    {
        private readonly float* _x, _perm, _y;
        private readonly ushort* _w;
        private readonly int _rows, _n, _k;
        private readonly KernelIsa _isa;
        private readonly bool _paired512, _blocked;

        public Job(KernelIsa isa, float* x, float* perm, int rows, ushort* w, int n, int k, float* y, bool paired512, bool blocked)
        {
            _isa = isa; _x = x; _perm = perm; _rows = rows; _w = w; _n = n; _k = k; _y = y; _paired512 = paired512; _blocked = blocked;
        }

        /// <summary>Computes output columns [from, to) for every input row.</summary>
        public void Rows(int from, int to)
        {
            if (_isa >= KernelIsa.Avx512) RowsVector512(from, to);
            else if (_isa == KernelIsa.Avx2 && _blocked && _rows >= BlockedMinRows) RowsBlocked512(from, to);
            else if (_isa == KernelIsa.Avx2 && _paired512 && _rows >= 2) RowsPaired512(from, to);
            else if (_isa == KernelIsa.Avx2) RowsVector256(from, to);
            else RowsScalar(from, to);
        }

        /// <summary>
        /// 512-bit variant of <see cref="RowsVector256"/>: 32 BF16 weights per load (one cache line per two loads), x
        /// permuted per 32-column block; same blocking (4 weight rows × 2 input rows per pass).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RowsVector512(int from, int to)
        {
            int r = from;
            for (; r + 4 <= to; r += 4)
            {
                int m = 0;
                for (; m + 2 <= _rows; m += 2) Dot4x2W(r, m);
                for (; m < _rows; m++) Dot4W(r, m);
            }
            for (; r < to; r++)
                for (int m = 0; m < _rows; m++) _y[(long)m * _n + r] = Dot1W(_w + (long)r * _k, m);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Dot4x2W(int r, int m)
        {
            int k = _k, kBlocks = k / 32;
            var mask = Vector512.Create(0xFFFF0000u);
            ushort* w0 = _w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* xp = _perm + (long)m * kBlocks * 32, xq = xp + kBlocks * 32;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                int o = b * 32;
                var xe = Vector512.Load(xp + o);
                var xo = Vector512.Load(xp + o + 16);
                var ye = Vector512.Load(xq + o);
                var yo = Vector512.Load(xq + o + 16);
                var v = Vector512.Load((uint*)(w0 + o));
                var ev = (v << 16).AsSingle();
                var od = (v & mask).AsSingle();
                a0 = Vector512.FusedMultiplyAdd(od, xo, Vector512.FusedMultiplyAdd(ev, xe, a0));
                c0 = Vector512.FusedMultiplyAdd(od, yo, Vector512.FusedMultiplyAdd(ev, ye, c0));
                v = Vector512.Load((uint*)(w1 + o));
                ev = (v << 16).AsSingle();
                od = (v & mask).AsSingle();
                a1 = Vector512.FusedMultiplyAdd(od, xo, Vector512.FusedMultiplyAdd(ev, xe, a1));
                c1 = Vector512.FusedMultiplyAdd(od, yo, Vector512.FusedMultiplyAdd(ev, ye, c1));
                v = Vector512.Load((uint*)(w2 + o));
                ev = (v << 16).AsSingle();
                od = (v & mask).AsSingle();
                a2 = Vector512.FusedMultiplyAdd(od, xo, Vector512.FusedMultiplyAdd(ev, xe, a2));
                c2 = Vector512.FusedMultiplyAdd(od, yo, Vector512.FusedMultiplyAdd(ev, ye, c2));
                v = Vector512.Load((uint*)(w3 + o));
                ev = (v << 16).AsSingle();
                od = (v & mask).AsSingle();
                a3 = Vector512.FusedMultiplyAdd(od, xo, Vector512.FusedMultiplyAdd(ev, xe, a3));
                c3 = Vector512.FusedMultiplyAdd(od, yo, Vector512.FusedMultiplyAdd(ev, ye, c3));
            }
            float* yr = _y + (long)m * _n + r, ys = yr + _n;
            yr[0] = Vector512.Sum(a0); yr[1] = Vector512.Sum(a1); yr[2] = Vector512.Sum(a2); yr[3] = Vector512.Sum(a3);
            ys[0] = Vector512.Sum(c0); ys[1] = Vector512.Sum(c1); ys[2] = Vector512.Sum(c2); ys[3] = Vector512.Sum(c3);
            if ((k & 31) != 0)
            {
                yr[0] += Tail(w0, m); yr[1] += Tail(w1, m); yr[2] += Tail(w2, m); yr[3] += Tail(w3, m);
                ys[0] += Tail(w0, m + 1); ys[1] += Tail(w1, m + 1); ys[2] += Tail(w2, m + 1); ys[3] += Tail(w3, m + 1);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Dot4W(int r, int m)
        {
            int k = _k, kBlocks = k / 32;
            var mask = Vector512.Create(0xFFFF0000u);
            ushort* w0 = _w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* xp = _perm + (long)m * kBlocks * 32;
            Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                int o = b * 32;
                var xe = Vector512.Load(xp + o);
                var xo = Vector512.Load(xp + o + 16);
                var v0 = Vector512.Load((uint*)(w0 + o));
                var v1 = Vector512.Load((uint*)(w1 + o));
                var v2 = Vector512.Load((uint*)(w2 + o));
                var v3 = Vector512.Load((uint*)(w3 + o));
                a0 = Vector512.FusedMultiplyAdd((v0 << 16).AsSingle(), xe, a0);
                b0 = Vector512.FusedMultiplyAdd((v0 & mask).AsSingle(), xo, b0);
                a1 = Vector512.FusedMultiplyAdd((v1 << 16).AsSingle(), xe, a1);
                b1 = Vector512.FusedMultiplyAdd((v1 & mask).AsSingle(), xo, b1);
                a2 = Vector512.FusedMultiplyAdd((v2 << 16).AsSingle(), xe, a2);
                b2 = Vector512.FusedMultiplyAdd((v2 & mask).AsSingle(), xo, b2);
                a3 = Vector512.FusedMultiplyAdd((v3 << 16).AsSingle(), xe, a3);
                b3 = Vector512.FusedMultiplyAdd((v3 & mask).AsSingle(), xo, b3);
            }
            float* yr = _y + (long)m * _n + r;
            yr[0] = Vector512.Sum(a0 + b0);
            yr[1] = Vector512.Sum(a1 + b1);
            yr[2] = Vector512.Sum(a2 + b2);
            yr[3] = Vector512.Sum(a3 + b3);
            if ((k & 31) != 0)
            {
                yr[0] += Tail(w0, m);
                yr[1] += Tail(w1, m);
                yr[2] += Tail(w2, m);
                yr[3] += Tail(w3, m);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private float Dot1W(ushort* wr, int m)
        {
            int k = _k, kBlocks = k / 32;
            var mask = Vector512.Create(0xFFFF0000u);
            float* xp = _perm + (long)m * kBlocks * 32;
            Vector512<float> a0 = default, b0 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                var v = Vector512.Load((uint*)(wr + b * 32));
                a0 = Vector512.FusedMultiplyAdd((v << 16).AsSingle(), Vector512.Load(xp + b * 32), a0);
                b0 = Vector512.FusedMultiplyAdd((v & mask).AsSingle(), Vector512.Load(xp + b * 32 + 16), b0);
            }
            return Vector512.Sum(a0 + b0) + Tail(wr, m);
        }

        /// <summary>
        /// The portable reference: one weight row at a time, widened element by element, products summed in double (a
        /// single float32 running sum over K = 1536 would drift more than the vector paths' partial sums do).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RowsScalar(int from, int to)
        {
            for (int r = from; r < to; r++)
            {
                ushort* wr = _w + (long)r * _k;
                for (int m = 0; m < _rows; m++)
                {
                    float* xr = _x + (long)m * _k;
                    double s = 0;
                    for (int i = 0; i < _k; i++) s += (double)(Widen(wr[i]) * xr[i]);
                    _y[(long)m * _n + r] = (float)s;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // fully optimised at once: tier-0 SIMD code is several times slower
        private void RowsVector256(int from, int to)
        {
            int r = from;
            // Four weight rows at a time: four independent streams, x loaded once per block; two x rows per pass share each
            // widened weight vector (a short prefill is compute-bound here, the widening costing as much as the FMA).
            for (; r + 4 <= to; r += 4)
            {
                int m = 0;
                for (; m + 2 <= _rows; m += 2) Dot4x2(r, m);
                for (; m < _rows; m++) Dot4(r, m);
            }
            for (; r < to; r++)
                for (int m = 0; m < _rows; m++) _y[(long)m * _n + r] = Dot1(_w + (long)r * _k, m);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Dot4x2(int r, int m)
        {
            int k = _k, kBlocks = k / 16;
            var mask = Vector256.Create(0xFFFF0000u);
            ushort* w0 = _w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* xp = _perm + (long)m * kBlocks * 16, xq = xp + kBlocks * 16;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                int o = b * 16;
                var xe = Vector256.Load(xp + o);
                var xo = Vector256.Load(xp + o + 8);
                var ye = Vector256.Load(xq + o);
                var yo = Vector256.Load(xq + o + 8);
                var v = Vector256.Load((uint*)(w0 + o));
                var ev = (v << 16).AsSingle();
                var od = (v & mask).AsSingle();
                a0 = Vector256.FusedMultiplyAdd(od, xo, Vector256.FusedMultiplyAdd(ev, xe, a0));
                c0 = Vector256.FusedMultiplyAdd(od, yo, Vector256.FusedMultiplyAdd(ev, ye, c0));
                v = Vector256.Load((uint*)(w1 + o));
                ev = (v << 16).AsSingle();
                od = (v & mask).AsSingle();
                a1 = Vector256.FusedMultiplyAdd(od, xo, Vector256.FusedMultiplyAdd(ev, xe, a1));
                c1 = Vector256.FusedMultiplyAdd(od, yo, Vector256.FusedMultiplyAdd(ev, ye, c1));
                v = Vector256.Load((uint*)(w2 + o));
                ev = (v << 16).AsSingle();
                od = (v & mask).AsSingle();
                a2 = Vector256.FusedMultiplyAdd(od, xo, Vector256.FusedMultiplyAdd(ev, xe, a2));
                c2 = Vector256.FusedMultiplyAdd(od, yo, Vector256.FusedMultiplyAdd(ev, ye, c2));
                v = Vector256.Load((uint*)(w3 + o));
                ev = (v << 16).AsSingle();
                od = (v & mask).AsSingle();
                a3 = Vector256.FusedMultiplyAdd(od, xo, Vector256.FusedMultiplyAdd(ev, xe, a3));
                c3 = Vector256.FusedMultiplyAdd(od, yo, Vector256.FusedMultiplyAdd(ev, ye, c3));
            }
            float* yr = _y + (long)m * _n + r, ys = yr + _n;
            yr[0] = Vector256.Sum(a0); yr[1] = Vector256.Sum(a1); yr[2] = Vector256.Sum(a2); yr[3] = Vector256.Sum(a3);
            ys[0] = Vector256.Sum(c0); ys[1] = Vector256.Sum(c1); ys[2] = Vector256.Sum(c2); ys[3] = Vector256.Sum(c3);
            if ((k & 15) != 0)
            {
                yr[0] += Tail(w0, m); yr[1] += Tail(w1, m); yr[2] += Tail(w2, m); yr[3] += Tail(w3, m);
                ys[0] += Tail(w0, m + 1); ys[1] += Tail(w1, m + 1); ys[2] += Tail(w2, m + 1); ys[3] += Tail(w3, m + 1);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Dot4(int r, int m)
        {
            int k = _k, kBlocks = k / 16;
            var mask = Vector256.Create(0xFFFF0000u);
            ushort* w0 = _w + (long)r * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
            float* xp = _perm + (long)m * kBlocks * 16;
            // Same accumulation order per x row as Dot4x2 (even then odd lanes into one accumulator), so a row's result never
            // depends on how many rows share the call: a batched decode step equals one-sequence steps (BatchedDecodeTests).
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                int o = b * 16;
                var xe = Vector256.Load(xp + o);
                var xo = Vector256.Load(xp + o + 8);
                var v0 = Vector256.Load((uint*)(w0 + o));
                var v1 = Vector256.Load((uint*)(w1 + o));
                var v2 = Vector256.Load((uint*)(w2 + o));
                var v3 = Vector256.Load((uint*)(w3 + o));
                a0 = Vector256.FusedMultiplyAdd((v0 & mask).AsSingle(), xo, Vector256.FusedMultiplyAdd((v0 << 16).AsSingle(), xe, a0));
                a1 = Vector256.FusedMultiplyAdd((v1 & mask).AsSingle(), xo, Vector256.FusedMultiplyAdd((v1 << 16).AsSingle(), xe, a1));
                a2 = Vector256.FusedMultiplyAdd((v2 & mask).AsSingle(), xo, Vector256.FusedMultiplyAdd((v2 << 16).AsSingle(), xe, a2));
                a3 = Vector256.FusedMultiplyAdd((v3 & mask).AsSingle(), xo, Vector256.FusedMultiplyAdd((v3 << 16).AsSingle(), xe, a3));
            }
            float* yr = _y + (long)m * _n + r;
            yr[0] = Vector256.Sum(a0);
            yr[1] = Vector256.Sum(a1);
            yr[2] = Vector256.Sum(a2);
            yr[3] = Vector256.Sum(a3);
            if ((k & 15) != 0)
            {
                yr[0] += Tail(w0, m);
                yr[1] += Tail(w1, m);
                yr[2] += Tail(w2, m);
                yr[3] += Tail(w3, m);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // fully optimised at once: tier-0 SIMD code is several times slower
        private float Dot1(ushort* wr, int m)
        {
            int k = _k, kBlocks = k / 16;
            var mask = Vector256.Create(0xFFFF0000u);
            float* xp = _perm + (long)m * kBlocks * 16;
            // Same order as Dot4/Dot4x2: how output rows fall into 4-row blocks (thread blocking) never changes a result.
            Vector256<float> a0 = default;
            for (int b = 0; b < kBlocks; b++)
            {
                var v = Vector256.Load((uint*)(wr + b * 16));
                a0 = Vector256.FusedMultiplyAdd((v & mask).AsSingle(), Vector256.Load(xp + b * 16 + 8),
                    Vector256.FusedMultiplyAdd((v << 16).AsSingle(), Vector256.Load(xp + b * 16), a0));
            }
            return Vector256.Sum(a0) + Tail(wr, m);
        }

        /// <summary>Columns past the last full vector block (none for Granite widths).</summary>
        private float Tail(ushort* wr, int m)
        {
            float s = 0;
            float* xr = _x + (long)m * _k;
            int width = BlockWidth(_isa);
            for (int i = _k / width * width; i < _k; i++) s += Widen(wr[i]) * xr[i];
            return s;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static float Widen(ushort bf16) => BitConverter.Int32BitsToSingle(bf16 << 16);
    }
}
