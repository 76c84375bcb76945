using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Kernels.Quant;

/// <summary>
/// Decode-shaped linear on quantized blocks: y[m, n] = Σ_k x[m, k]·W[n, k] with W a <see cref="QuantizedWeight"/> (rows of
/// ggml blocks, the checkpoint's <c>[out, in]</c> layout), x float32 [M, K] for a few rows, float32 result.
/// </summary>
/// <remarks>
/// <para>Activations stay float32 (not rounded to 8-bit like ggml's <c>vec_dot_q*_q8</c>): each block's integer levels
/// are widened to float32 in registers, multiplied with x, and the block sum scaled by the block's scale (K-quants: the
/// sub-block min term subtracted through precomputed per-32 sums of x). The only error against dequantize-then-float32
/// is float32 summation order, so the result is as accurate as the weights allow; the cost is float instead of int8
/// multiplies, which on the memory-bound decode path is not what limits speed.</para>
/// <para>Paths: <see cref="KernelIsa.Scalar"/> (block dequantized to a buffer, then a plain dot product), AVX2 (256-bit:
/// <c>vpmovzxbd</c>/<c>vpmovsxbd</c> byte widening, FMA) and AVX-512 (512-bit), chosen at model load by
/// <see cref="GraniteKernels"/>; rows are split over the <see cref="KernelWorkers"/> in blocks.</para>
/// </remarks>
internal sealed unsafe class QuantGemv
{
    /// <summary>Most input rows computed on the blocks (more rows: dequantize to float32 and run a GEMM).</summary>
    public const int MaxRows = 16;

    private readonly KernelIsa _isa;
    private readonly KernelWorkers _workers;
    private readonly long _parallelMinBytes;

    /// <param name="isa">Inner-loop instruction set (<see cref="KernelIsa.Avx512"/> and above: 512-bit).</param>
    /// <param name="workers">Threads the output rows are split over.</param>
    /// <param name="parallelMinBytes">Weights smaller than this (bytes) are computed on the calling thread only.</param>
    public QuantGemv(KernelIsa isa, KernelWorkers workers, long parallelMinBytes)
    {
        _isa = isa >= KernelIsa.Avx512 && !Avx512F.IsSupported ? KernelIsa.Avx2 : isa;
        if (_isa == KernelIsa.Avx2 && !(Avx2.IsSupported && Fma.IsSupported)) _isa = KernelIsa.Scalar;
        _workers = workers;
        _parallelMinBytes = parallelMinBytes;
    }

    /// <summary>The instruction set in use.</summary>
    public KernelIsa Isa => _isa;

    /// <summary>x [..., K] (any float dtype, CPU) · Wᵀ (+ bias) → float32 [..., N], for at most <see cref="MaxRows"/> rows.</summary>
    public Tensor Linear(Tensor x, QuantizedWeight w, Tensor? bias)
    {
        if (w.Experts != 0) throw new ArgumentException("pass an expert view (Expert(e)), not a stack", nameof(w));
        if (x.shape[^1] != w.Cols) throw new ArgumentException($"x has {x.shape[^1]} columns, the weight {w.Cols}", nameof(x));
        long rows = x.numel() / w.Cols;
        var outShape = x.shape.ToArray();
        outShape[^1] = w.Rows;
        using var x32 = x.to_type(ScalarType.Float32).contiguous();
        var y = torch.empty(outShape, ScalarType.Float32, x.device);
        Run((float*)TorchNative.DataPointer(x32), (int)rows, w, (float*)TorchNative.DataPointer(y));
        if (bias is not null) y.add_(bias);
        return y;
    }

    /// <summary>y[m·N + n] for m &lt; <paramref name="rows"/>, n &lt; N.</summary>
    public void Run(float* x, int rows, QuantizedWeight w, float* y)
    {
        int n = checked((int)w.Rows), k = checked((int)w.Cols);
        var sums = Sums32(w.Type, x, rows, k);
        try
        {
            fixed (float* s = sums)
            {
                var job = new Job(_isa, w.Type, x, s, rows, w, n, k, y);
                int threads = _workers.Count;
                if (threads == 1 || w.Rows * w.RowBytes < _parallelMinBytes) { job.Rows(0, n); return; }
                int block = Math.Max(16, n / (threads * 8));
                _workers.For((n + block - 1) / block, new RowBlocks<Job>(job, block, n));
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(sums); }
    }

    /// <summary>
    /// Routed-expert linears in one parallel pass: consecutive row groups of <paramref name="x"/> [R, K] go through their own
    /// weight (all of one type and shape), <paramref name="rowCounts"/> (each 1..<see cref="MaxRows"/>) summing to R;
    /// float32 [R, N].
    /// </summary>
    public Tensor LinearGrouped(Tensor x, IReadOnlyList<QuantizedWeight> weights, ReadOnlySpan<int> rowCounts)
    {
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Count != rowCounts.Length || weights.Count == 0) throw new ArgumentException($"{weights.Count} weights for {rowCounts.Length} row groups", nameof(rowCounts));
        var w0 = weights[0];
        foreach (var w in weights)
        {
            if (w.Type != w0.Type || w.Rows != w0.Rows || w.Cols != w0.Cols) throw new ArgumentException("weights must share one type and shape", nameof(weights));
            if (w.Experts != 0) throw new ArgumentException("pass expert views (Expert(e)), not a stack", nameof(weights));
        }
        long total = 0;
        foreach (int c in rowCounts)
        {
            if (c < 1 || c > MaxRows) throw new ArgumentOutOfRangeException(nameof(rowCounts), c, $"a row group has 1..{MaxRows} rows");
            total += c;
        }
        int n = checked((int)w0.Rows), k = checked((int)w0.Cols);
        if (x.dim() != 2 || x.shape[1] != k || x.shape[0] != total || x.device_type != DeviceType.CPU)
            throw new ArgumentException($"x must be a CPU tensor [{total}, {k}]", nameof(x));
        using var x32 = x.to_type(ScalarType.Float32).contiguous();
        var y = torch.empty(new long[] { total, n }, ScalarType.Float32, x.device);
        var xp = (float*)TorchNative.DataPointer(x32);
        var yp = (float*)TorchNative.DataPointer(y);
        var sums = Sums32(w0.Type, xp, (int)total, k);
        try
        {
            fixed (float* s = sums)
            {
                var jobs = new Job[weights.Count];
                long row = 0;
                int sumStride = k / 32;
                for (int g = 0; g < jobs.Length; g++)
                {
                    jobs[g] = new Job(_isa, w0.Type, xp + row * k, s + row * sumStride, rowCounts[g], weights[g], n, k, yp + row * n);
                    row += rowCounts[g];
                }
                if (_workers.Count == 1) { foreach (var job in jobs) job.Rows(0, n); return y; }
                int block = Math.Max(64, n / 4);
                int perGroup = (n + block - 1) / block;
                _workers.For(jobs.Length * perGroup, new GroupedRowBlocks<Job>(jobs, block, perGroup, n));
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(sums); }
        return y;
    }

    /// <summary>Per x row, the sums of each 32 consecutive values (the min term of Q4_K/Q5_K; other formats skip it).</summary>
    private static float[] Sums32(QuantType type, float* x, int rows, int k)
    {
        int per = k / 32;
        var sums = System.Buffers.ArrayPool<float>.Shared.Rent(Math.Max(1, rows * per));
        if (type is not (QuantType.Q4_K or QuantType.Q5_K)) return sums;
        for (int m = 0; m < rows; m++)
            for (int b = 0; b < per; b++)
            {
                float* p = x + (long)m * k + 32 * b;
                float s = 0;
                for (int i = 0; i < 32; i++) s += p[i];
                sums[m * per + b] = s;
            }
        return sums;
    }

    /// <summary>One call's operands; <see cref="Rows"/> computes a range of output rows for every input row.</summary>
    private readonly struct Job(KernelIsa isa, QuantType type, float* x, float* sums, int rows, QuantizedWeight w, int n, int k, float* y) : IRowRangeJob
    {
        public void Rows(int from, int to)
        {
            int sumStride = k / 32;
            for (int r = from; r < to; r++)
            {
                byte* wr = w.RowPointer(r);
                for (int m = 0; m < rows; m++)
                    y[(long)m * n + r] = QuantDot.Dot(isa, type, wr, x + (long)m * k, sums + (long)m * sumStride, k);
            }
        }
    }
}

/// <summary>Dot products of one quantized weight row with a float32 vector, per format and instruction set.</summary>
internal static unsafe class QuantDot
{
    /// <summary>Σ_i w[i]·x[i] over <paramref name="k"/> weights; <paramref name="sums32"/> holds the sums of each 32 x values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(KernelIsa isa, QuantType type, byte* w, float* x, float* sums32, int k)
    {
        if (isa >= KernelIsa.Avx512)
        {
            return type switch
            {
                QuantType.Q8_0 => Q8_0x512(w, x, k),
                QuantType.Q4_0 => Q4_0x512(w, x, k),
                QuantType.Q4_K => Q4Kx512(w, x, sums32, k),
                QuantType.Q5_K => Q5Kx512(w, x, sums32, k),
                QuantType.Q6_K => Q6Kx512(w, x, k),
                _ => Scalar(type, w, x, k),
            };
        }
        if (isa == KernelIsa.Avx2)
        {
            return type switch
            {
                QuantType.Q8_0 => Q8_0x256(w, x, k),
                QuantType.Q4_0 => Q4_0x256(w, x, k),
                QuantType.Q4_K => Q4Kx256(w, x, sums32, k),
                QuantType.Q5_K => Q5Kx256(w, x, sums32, k),
                QuantType.Q6_K => Q6Kx256(w, x, k),
                _ => Scalar(type, w, x, k),
            };
        }
        return Scalar(type, w, x, k);
    }

    /// <summary>Portable reference: each block dequantized into a buffer, then multiplied out in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Scalar(QuantType type, byte* w, float* x, int k)
    {
        int be = QuantFormat.BlockElements(type), bb = QuantFormat.BlockBytes(type);
        float* buf = stackalloc float[QuantFormat.QK_K];
        float s = 0;
        for (int b = 0; b < k / be; b++)
        {
            QuantFormat.DequantizeRow(type, w + (long)b * bb, buf, be);
            float* xb = x + (long)b * be;
            for (int i = 0; i < be; i++) s += buf[i] * xb[i];
        }
        return s;
    }

    // ---- AVX2 (256-bit) ----

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8_0x256(byte* w, float* x, int k)
    {
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < k / 32; b++, w += BlockQ8_0.Bytes, x += 32)
        {
            sbyte* q = (sbyte*)(w + 2);
            var s0 = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q)) * Vector256.Load(x);
            var s1 = Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q + 8)) * Vector256.Load(x + 8);
            s0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q + 16)), Vector256.Load(x + 16), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(q + 24)), Vector256.Load(x + 24), s1);
            acc = Vector256.FusedMultiplyAdd(s0 + s1, Vector256.Create(Fp16.ToFloat(*(ushort*)w)), acc);
        }
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_0x256(byte* w, float* x, int k)
    {
        var acc = Vector256<float>.Zero;
        var low = Vector256.Create(0xF);
        var eight = Vector256.Create(8);
        for (int b = 0; b < k / 32; b++, w += BlockQ4_0.Bytes, x += 32)
        {
            var v0 = Avx2.ConvertToVector256Int32(w + 2);
            var v1 = Avx2.ConvertToVector256Int32(w + 10);
            var s0 = Vector256.ConvertToSingle((v0 & low) - eight) * Vector256.Load(x);
            var s1 = Vector256.ConvertToSingle((v1 & low) - eight) * Vector256.Load(x + 8);
            s0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v0 >>> 4) - eight), Vector256.Load(x + 16), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v1 >>> 4) - eight), Vector256.Load(x + 24), s1);
            acc = Vector256.FusedMultiplyAdd(s0 + s1, Vector256.Create(Fp16.ToFloat(*(ushort*)w)), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>Σ over 32 weights (4 × 8) of level·x for nibble bytes <paramref name="q"/> (low or high half by <paramref name="high"/>), plus optional 5th bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Nibbles32x256(byte* q, float* x, bool high)
    {
        var low = Vector256.Create(0xF);
        Vector256<float> s0, s1;
        var v0 = Avx2.ConvertToVector256Int32(q);
        var v1 = Avx2.ConvertToVector256Int32(q + 8);
        var v2 = Avx2.ConvertToVector256Int32(q + 16);
        var v3 = Avx2.ConvertToVector256Int32(q + 24);
        if (high) { v0 >>>= 4; v1 >>>= 4; v2 >>>= 4; v3 >>>= 4; }
        else { v0 &= low; v1 &= low; v2 &= low; v3 &= low; }
        s0 = Vector256.ConvertToSingle(v0) * Vector256.Load(x);
        s1 = Vector256.ConvertToSingle(v1) * Vector256.Load(x + 8);
        s0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(v2), Vector256.Load(x + 16), s0);
        s1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(v3), Vector256.Load(x + 24), s1);
        return s0 + s1;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4Kx256(byte* w, float* x, float* sums32, int k)
    {
        var acc = Vector256<float>.Zero;
        float mins = 0;
        for (int b = 0; b < k / QuantFormat.QK_K; b++, w += BlockQ4K.Bytes, x += QuantFormat.QK_K, sums32 += 8)
        {
            float d = Fp16.ToFloat(((ushort*)w)[0]), dmin = Fp16.ToFloat(((ushort*)w)[1]);
            byte* scales = w + 4, q = w + 16;
            for (int c = 0; c < 4; c++)
            {
                KQuant.ScaleMin(2 * c, scales, out int sc1, out int m1);
                KQuant.ScaleMin(2 * c + 1, scales, out int sc2, out int m2);
                acc = Vector256.FusedMultiplyAdd(Nibbles32x256(q + 32 * c, x + 64 * c, high: false), Vector256.Create(d * sc1), acc);
                acc = Vector256.FusedMultiplyAdd(Nibbles32x256(q + 32 * c, x + 64 * c + 32, high: true), Vector256.Create(d * sc2), acc);
                mins += dmin * (m1 * sums32[2 * c] + m2 * sums32[2 * c + 1]);
            }
        }
        return Vector256.Sum(acc) - mins;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q5Kx256(byte* w, float* x, float* sums32, int k)
    {
        var acc = Vector256<float>.Zero;
        var low = Vector256.Create(0xF);
        var one = Vector256.Create(1);
        float mins = 0;
        for (int b = 0; b < k / QuantFormat.QK_K; b++, w += BlockQ5K.Bytes, x += QuantFormat.QK_K, sums32 += 8)
        {
            float d = Fp16.ToFloat(((ushort*)w)[0]), dmin = Fp16.ToFloat(((ushort*)w)[1]);
            byte* scales = w + 4, qh = w + 16, q = w + 48;
            var h0 = Avx2.ConvertToVector256Int32(qh);
            var h1 = Avx2.ConvertToVector256Int32(qh + 8);
            var h2 = Avx2.ConvertToVector256Int32(qh + 16);
            var h3 = Avx2.ConvertToVector256Int32(qh + 24);
            for (int c = 0; c < 4; c++)
            {
                KQuant.ScaleMin(2 * c, scales, out int sc1, out int m1);
                KQuant.ScaleMin(2 * c + 1, scales, out int sc2, out int m2);
                byte* qc = q + 32 * c;
                float* xc = x + 64 * c;
                var v0 = Avx2.ConvertToVector256Int32(qc);
                var v1 = Avx2.ConvertToVector256Int32(qc + 8);
                var v2 = Avx2.ConvertToVector256Int32(qc + 16);
                var v3 = Avx2.ConvertToVector256Int32(qc + 24);
                int sl = 2 * c, sh = 2 * c + 1;
                var lo = Vector256.ConvertToSingle((v0 & low) | (((h0 >>> sl) & one) << 4)) * Vector256.Load(xc);
                lo = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v1 & low) | (((h1 >>> sl) & one) << 4)), Vector256.Load(xc + 8), lo);
                lo = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v2 & low) | (((h2 >>> sl) & one) << 4)), Vector256.Load(xc + 16), lo);
                lo = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v3 & low) | (((h3 >>> sl) & one) << 4)), Vector256.Load(xc + 24), lo);
                var hi = Vector256.ConvertToSingle((v0 >>> 4) | (((h0 >>> sh) & one) << 4)) * Vector256.Load(xc + 32);
                hi = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v1 >>> 4) | (((h1 >>> sh) & one) << 4)), Vector256.Load(xc + 40), hi);
                hi = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v2 >>> 4) | (((h2 >>> sh) & one) << 4)), Vector256.Load(xc + 48), hi);
                hi = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle((v3 >>> 4) | (((h3 >>> sh) & one) << 4)), Vector256.Load(xc + 56), hi);
                acc = Vector256.FusedMultiplyAdd(lo, Vector256.Create(d * sc1), acc);
                acc = Vector256.FusedMultiplyAdd(hi, Vector256.Create(d * sc2), acc);
                mins += dmin * (m1 * sums32[2 * c] + m2 * sums32[2 * c + 1]);
            }
        }
        return Vector256.Sum(acc) - mins;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6Kx256(byte* w, float* x, int k)
    {
        var acc = Vector256<float>.Zero;
        var low = Vector256.Create(0xF);
        var three = Vector256.Create(3);
        var bias = Vector256.Create(32);
        for (int b = 0; b < k / QuantFormat.QK_K; b++, w += BlockQ6K.Bytes, x += QuantFormat.QK_K)
        {
            sbyte* sc = (sbyte*)(w + 192);
            float d = Fp16.ToFloat(*(ushort*)(w + 208));
            for (int h = 0; h < 2; h++)
            {
                byte* ql = w + 64 * h, qh = w + 128 + 32 * h;
                float* xh = x + 128 * h;
                for (int g = 0; g < 4; g += 2)
                {
                    // Two groups of 8 share one 16-weight scale.
                    Vector256<float> t1 = default, t2 = default, t3 = default, t4 = default;
                    for (int u = 0; u < 2; u++)
                    {
                        int o = 8 * (g + u);
                        var a = Avx2.ConvertToVector256Int32(ql + o);
                        var c = Avx2.ConvertToVector256Int32(ql + 32 + o);
                        var hb = Avx2.ConvertToVector256Int32(qh + o);
                        var q1 = Vector256.ConvertToSingle(((a & low) | ((hb & three) << 4)) - bias);
                        var q2 = Vector256.ConvertToSingle(((c & low) | (((hb >>> 2) & three) << 4)) - bias);
                        var q3 = Vector256.ConvertToSingle(((a >>> 4) | (((hb >>> 4) & three) << 4)) - bias);
                        var q4 = Vector256.ConvertToSingle(((c >>> 4) | (((hb >>> 6) & three) << 4)) - bias);
                        t1 = Vector256.FusedMultiplyAdd(q1, Vector256.Load(xh + o), t1);
                        t2 = Vector256.FusedMultiplyAdd(q2, Vector256.Load(xh + 32 + o), t2);
                        t3 = Vector256.FusedMultiplyAdd(q3, Vector256.Load(xh + 64 + o), t3);
                        t4 = Vector256.FusedMultiplyAdd(q4, Vector256.Load(xh + 96 + o), t4);
                    }
                    int s = 8 * h + g / 2;
                    acc = Vector256.FusedMultiplyAdd(t1, Vector256.Create(d * sc[s]), acc);
                    acc = Vector256.FusedMultiplyAdd(t2, Vector256.Create(d * sc[s + 2]), acc);
                    acc = Vector256.FusedMultiplyAdd(t3, Vector256.Create(d * sc[s + 4]), acc);
                    acc = Vector256.FusedMultiplyAdd(t4, Vector256.Create(d * sc[s + 6]), acc);
                }
            }
        }
        return Vector256.Sum(acc);
    }

    // ---- AVX-512 (512-bit) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> U8x16(byte* p) => Avx512F.ConvertToVector512Int32(Vector128.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8_0x512(byte* w, float* x, int k)
    {
        var acc = Vector512<float>.Zero;
        for (int b = 0; b < k / 32; b++, w += BlockQ8_0.Bytes, x += 32)
        {
            sbyte* q = (sbyte*)(w + 2);
            var s = Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load(q))) * Vector512.Load(x);
            s = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load(q + 16))), Vector512.Load(x + 16), s);
            acc = Vector512.FusedMultiplyAdd(s, Vector512.Create(Fp16.ToFloat(*(ushort*)w)), acc);
        }
        return Vector512.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_0x512(byte* w, float* x, int k)
    {
        var acc = Vector512<float>.Zero;
        var low = Vector512.Create(0xF);
        var eight = Vector512.Create(8);
        for (int b = 0; b < k / 32; b++, w += BlockQ4_0.Bytes, x += 32)
        {
            var v = U8x16(w + 2);
            var s = Vector512.ConvertToSingle((v & low) - eight) * Vector512.Load(x);
            s = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle((v >>> 4) - eight), Vector512.Load(x + 16), s);
            acc = Vector512.FusedMultiplyAdd(s, Vector512.Create(Fp16.ToFloat(*(ushort*)w)), acc);
        }
        return Vector512.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4Kx512(byte* w, float* x, float* sums32, int k)
    {
        var acc = Vector512<float>.Zero;
        var low = Vector512.Create(0xF);
        float mins = 0;
        for (int b = 0; b < k / QuantFormat.QK_K; b++, w += BlockQ4K.Bytes, x += QuantFormat.QK_K, sums32 += 8)
        {
            float d = Fp16.ToFloat(((ushort*)w)[0]), dmin = Fp16.ToFloat(((ushort*)w)[1]);
            byte* scales = w + 4, q = w + 16;
            for (int c = 0; c < 4; c++)
            {
                KQuant.ScaleMin(2 * c, scales, out int sc1, out int m1);
                KQuant.ScaleMin(2 * c + 1, scales, out int sc2, out int m2);
                var v0 = U8x16(q + 32 * c);
                var v1 = U8x16(q + 32 * c + 16);
                float* xc = x + 64 * c;
                var lo = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(v1 & low), Vector512.Load(xc + 16), Vector512.ConvertToSingle(v0 & low) * Vector512.Load(xc));
                var hi = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(v1 >>> 4), Vector512.Load(xc + 48), Vector512.ConvertToSingle(v0 >>> 4) * Vector512.Load(xc + 32));
                acc = Vector512.FusedMultiplyAdd(lo, Vector512.Create(d * sc1), acc);
                acc = Vector512.FusedMultiplyAdd(hi, Vector512.Create(d * sc2), acc);
                mins += dmin * (m1 * sums32[2 * c] + m2 * sums32[2 * c + 1]);
            }
        }
        return Vector512.Sum(acc) - mins;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q5Kx512(byte* w, float* x, float* sums32, int k)
    {
        var acc = Vector512<float>.Zero;
        var low = Vector512.Create(0xF);
        var one = Vector512.Create(1);
        float mins = 0;
        for (int b = 0; b < k / QuantFormat.QK_K; b++, w += BlockQ5K.Bytes, x += QuantFormat.QK_K, sums32 += 8)
        {
            float d = Fp16.ToFloat(((ushort*)w)[0]), dmin = Fp16.ToFloat(((ushort*)w)[1]);
            byte* scales = w + 4, qh = w + 16, q = w + 48;
            var h0 = U8x16(qh);
            var h1 = U8x16(qh + 16);
            for (int c = 0; c < 4; c++)
            {
                KQuant.ScaleMin(2 * c, scales, out int sc1, out int m1);
                KQuant.ScaleMin(2 * c + 1, scales, out int sc2, out int m2);
                var v0 = U8x16(q + 32 * c);
                var v1 = U8x16(q + 32 * c + 16);
                int sl = 2 * c, sh = 2 * c + 1;
                float* xc = x + 64 * c;
                var lo = Vector512.ConvertToSingle((v0 & low) | (((h0 >>> sl) & one) << 4)) * Vector512.Load(xc);
                lo = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle((v1 & low) | (((h1 >>> sl) & one) << 4)), Vector512.Load(xc + 16), lo);
                var hi = Vector512.ConvertToSingle((v0 >>> 4) | (((h0 >>> sh) & one) << 4)) * Vector512.Load(xc + 32);
                hi = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle((v1 >>> 4) | (((h1 >>> sh) & one) << 4)), Vector512.Load(xc + 48), hi);
                acc = Vector512.FusedMultiplyAdd(lo, Vector512.Create(d * sc1), acc);
                acc = Vector512.FusedMultiplyAdd(hi, Vector512.Create(d * sc2), acc);
                mins += dmin * (m1 * sums32[2 * c] + m2 * sums32[2 * c + 1]);
            }
        }
        return Vector512.Sum(acc) - mins;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6Kx512(byte* w, float* x, int k)
    {
        var acc = Vector512<float>.Zero;
        var low = Vector512.Create(0xF);
        var three = Vector512.Create(3);
        var bias = Vector512.Create(32);
        for (int b = 0; b < k / QuantFormat.QK_K; b++, w += BlockQ6K.Bytes, x += QuantFormat.QK_K)
        {
            sbyte* sc = (sbyte*)(w + 192);
            float d = Fp16.ToFloat(*(ushort*)(w + 208));
            for (int h = 0; h < 2; h++)
            {
                byte* ql = w + 64 * h, qh = w + 128 + 32 * h;
                float* xh = x + 128 * h;
                for (int g = 0; g < 2; g++)
                {
                    int o = 16 * g;
                    var a = U8x16(ql + o);
                    var c = U8x16(ql + 32 + o);
                    var hb = U8x16(qh + o);
                    var q1 = Vector512.ConvertToSingle(((a & low) | ((hb & three) << 4)) - bias);
                    var q2 = Vector512.ConvertToSingle(((c & low) | (((hb >>> 2) & three) << 4)) - bias);
                    var q3 = Vector512.ConvertToSingle(((a >>> 4) | (((hb >>> 4) & three) << 4)) - bias);
                    var q4 = Vector512.ConvertToSingle(((c >>> 4) | (((hb >>> 6) & three) << 4)) - bias);
                    int s = 8 * h + g;
                    acc = Vector512.FusedMultiplyAdd(q1 * Vector512.Load(xh + o), Vector512.Create(d * sc[s]), acc);
                    acc = Vector512.FusedMultiplyAdd(q2 * Vector512.Load(xh + 32 + o), Vector512.Create(d * sc[s + 2]), acc);
                    acc = Vector512.FusedMultiplyAdd(q3 * Vector512.Load(xh + 64 + o), Vector512.Create(d * sc[s + 4]), acc);
                    acc = Vector512.FusedMultiplyAdd(q4 * Vector512.Load(xh + 96 + o), Vector512.Create(d * sc[s + 6]), acc);
                }
            }
        }
        return Vector512.Sum(acc);
    }
}
