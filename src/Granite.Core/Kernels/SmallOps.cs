using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Kernels;

/// <summary>
/// The small per-token ops of a decode step done in managed code (<see cref="TensorPrimitives"/> on the tensors' memory)
/// instead of several LibTorch dispatches each: RMSNorm, SiLU(gate)·up, residual adds, router top-k + softmax and the
/// expert gather/scatter. Each op rounds like the LibTorch ops it replaces (same float32 operations in the same order, so
/// results differ by float32 summation order at most, ≈ 1e-7 relative). Used for float32 activations with few rows
/// (<see cref="MaxRows"/>); longer passes keep LibTorch's multi-threaded ops.
/// </summary>
internal static unsafe class SmallOps
{
    /// <summary>Most rows done in managed code (a prefill is faster in LibTorch's threaded ops).</summary>
    public const int MaxRows = Bf16Gemv.MaxRows;

    /// <summary>Whether <paramref name="x"/> is a float32 CPU tensor of at most <see cref="MaxRows"/> rows.</summary>
    public static bool Supports(Tensor x) =>
        x.dtype == ScalarType.Float32 && x.device_type == DeviceType.CPU && x.dim() >= 1 && x.shape[^1] > 0
        && x.numel() / x.shape[^1] <= MaxRows;

    private static bool IsFloat32Cpu(Tensor x) => x.dtype == ScalarType.Float32 && x.device_type == DeviceType.CPU;

    private static bool IsWeight(Tensor w, long n) =>
        (w.dtype == ScalarType.Float32 || w.dtype == ScalarType.BFloat16) && w.device_type == DeviceType.CPU && w.is_contiguous() && w.numel() == n;

    /// <summary>
    /// Granite RMSNorm of float32 rows: y = (x·rsqrt(mean(x²) + eps))·w, w BF16 or float32 [H]; null when not applicable
    /// (the caller runs the LibTorch ops).
    /// </summary>
    public static Tensor? RmsNorm(Tensor x, Tensor weight, double eps)
    {
        long h = x.shape[^1];
        if (!Supports(x) || !IsWeight(weight, h)) return null;
        using var xc = x.contiguous();
        var y = torch.empty(x.shape, ScalarType.Float32, x.device);
        int rows = (int)(x.numel() / h);
        float* xp = (float*)TorchNative.DataPointer(xc), yp = (float*)TorchNative.DataPointer(y);
        var w = WeightFloats(weight, (int)h);
        try
        {
            for (int r = 0; r < rows; r++)
            {
                var src = new ReadOnlySpan<float>(xp + (long)r * h, (int)h);
                var dst = new Span<float>(yp + (long)r * h, (int)h);
                // LibTorch: mean in float32, + eps, rsqrt (= 1/sqrt), x·r, then ·w (two roundings).
                float mean = SumOfSquares(src) / h;
                float inv = 1f / MathF.Sqrt(mean + (float)eps);
                TensorPrimitives.Multiply(src, inv, dst);
                TensorPrimitives.Multiply(dst, w.Span, dst);
            }
        }
        finally { w.Dispose(); }
        return y;
    }

    /// <summary>h + (a [+ b])·scale for float32 tensors of one shape (b optional); null when not applicable.</summary>
    public static Tensor? Residual(Tensor h, Tensor a, Tensor? b, double scale)
    {
        if (!Supports(h) || !Supports(a) || (b is not null && !Supports(b))) return null;
        if (!h.shape.SequenceEqual(a.shape) || (b is not null && !b.shape.SequenceEqual(a.shape))) return null;
        using var hc = h.contiguous();
        using var ac = a.contiguous();
        using var bc = b?.contiguous();
        var y = torch.empty(h.shape, ScalarType.Float32, h.device);
        int n = (int)h.numel();
        var hs = new ReadOnlySpan<float>((float*)TorchNative.DataPointer(hc), n);
        var @as = new ReadOnlySpan<float>((float*)TorchNative.DataPointer(ac), n);
        var ys = new Span<float>((float*)TorchNative.DataPointer(y), n);
        // (a [+ b])·s + h with every operation rounded on its own (not MultiplyAdd, which may fuse on some paths).
        if (bc is not null)
        {
            TensorPrimitives.Add(@as, new ReadOnlySpan<float>((float*)TorchNative.DataPointer(bc), n), ys);
            TensorPrimitives.Multiply(ys, (float)scale, ys);
        }
        else TensorPrimitives.Multiply(@as, (float)scale, ys);
        TensorPrimitives.Add(ys, hs, ys);
        return y;
    }

    /// <summary>SiLU(a[..., :inter])·a[..., inter:2·inter] for float32 a [rows, 2·inter]; null when not applicable.</summary>
    public static Tensor? SiluMul(Tensor a, long inter)
    {
        if (!Supports(a) || a.dim() != 2 || a.shape[1] != 2 * inter) return null;
        using var ac = a.contiguous();
        int rows = (int)a.shape[0], m = (int)inter;
        var y = torch.empty(new long[] { rows, inter }, ScalarType.Float32, a.device);
        float* ap = (float*)TorchNative.DataPointer(ac), yp = (float*)TorchNative.DataPointer(y);
        for (int r = 0; r < rows; r++)
            SiluMulRow(new ReadOnlySpan<float>(ap + (long)r * 2 * m, m), new ReadOnlySpan<float>(ap + (long)r * 2 * m + m, m), new Span<float>(yp + (long)r * m, m));
        return y;
    }

    /// <summary>y = gate / (1 + exp(−gate)) · up (LibTorch's SiLU formula, then the product).</summary>
    public static void SiluMulRow(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> y)
    {
        TensorPrimitives.Negate(gate, y);
        TensorPrimitives.Exp(y, y);
        TensorPrimitives.Add(y, 1f, y);
        TensorPrimitives.Divide(gate, y, y);
        TensorPrimitives.Multiply(y, up, y);
    }

    /// <summary>
    /// The Mamba output gate of few float32 rows: v = (y + x·D)·SiLU(z), RMS-normalised per group of
    /// <c>inner / groups</c> channels, times <paramref name="weight"/>: y, x [T, n_m, P], D [n_m], z [T, n_m·P]; null when
    /// not applicable.
    /// </summary>
    public static Tensor? GatedNorm(Tensor y, Tensor x, Tensor d, Tensor z, Tensor weight, int groups, double eps)
    {
        // Rows are tokens (y.shape[0]), not y's flattened leading dimensions [T, n_m]: the managed path must not depend on
        // how many tokens share the call beyond MaxRows, or a batched decode row would round differently from that
        // sequence decoded alone.
        if (y.dim() != 3 || y.shape[0] > MaxRows || !IsFloat32Cpu(y) || !IsFloat32Cpu(x) || !IsFloat32Cpu(z)
            || d.dtype != ScalarType.Float32 || !d.is_contiguous()) return null;
        int t = (int)y.shape[0], heads = (int)y.shape[1], p = (int)y.shape[2], inner = heads * p;
        if (!x.shape.SequenceEqual(y.shape) || z.numel() != (long)t * inner || d.numel() != heads || !IsWeight(weight, inner) || inner % groups != 0) return null;
        using var yc = y.contiguous();
        using var xc = x.contiguous();
        using var zc = z.contiguous();
        var output = torch.empty(new long[] { t, inner }, ScalarType.Float32, y.device);
        float* yp = (float*)TorchNative.DataPointer(yc), xp = (float*)TorchNative.DataPointer(xc), zp = (float*)TorchNative.DataPointer(zc);
        float* op = (float*)TorchNative.DataPointer(output), dp = (float*)TorchNative.DataPointer(d);
        var w = WeightFloats(weight, inner);
        float[] gate = System.Buffers.ArrayPool<float>.Shared.Rent(inner);
        try
        {
            int size = inner / groups;
            for (int r = 0; r < t; r++)
            {
                var v = new Span<float>(op + (long)r * inner, inner);
                for (int h = 0; h < heads; h++)                                     // y + x·D (two roundings, as LibTorch)
                {
                    var dst = v.Slice(h * p, p);
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(xp + (long)r * inner + h * p, p), dp[h], dst);
                    TensorPrimitives.Add(new ReadOnlySpan<float>(yp + (long)r * inner + h * p, p), dst, dst);
                }
                var zr = new ReadOnlySpan<float>(zp + (long)r * inner, inner);
                var g = gate.AsSpan(0, inner);                                      // SiLU(z) = z / (1 + exp(−z))
                TensorPrimitives.Negate(zr, g);
                TensorPrimitives.Exp(g, g);
                TensorPrimitives.Add(g, 1f, g);
                TensorPrimitives.Divide(zr, g, g);
                TensorPrimitives.Multiply(v, g, v);
                for (int q = 0; q < groups; q++)
                {
                    var vg = v.Slice(q * size, size);
                    float inv = 1f / MathF.Sqrt(SumOfSquares(vg) / size + (float)eps);
                    TensorPrimitives.Multiply(vg, inv, vg);
                }
                TensorPrimitives.Multiply(v, w.Span, v);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(gate);
            w.Dispose();
        }
        return output;
    }

    /// <summary>
    /// Router of few tokens in managed code: for float32 logits [T, E], each token's top-k experts (descending; ties to the
    /// lower index) and the softmax over those k, grouped by expert ascending (a stable order: token, then rank), as
    /// <c>topk</c> + <c>softmax</c> + stable <c>sort</c> + <c>bincount</c> give it. Null when not applicable.
    /// </summary>
    public static MoeRoute? Route(Tensor logits, int topK)
    {
        if (!Supports(logits) || logits.dim() != 2) return null;
        int t = (int)logits.shape[0], e = (int)logits.shape[1];
        if (topK < 1 || topK > e) return null;
        using var lc = logits.contiguous();
        float* lp = (float*)TorchNative.DataPointer(lc);
        var experts = new int[t * topK];
        var gates = new float[t * topK];
        Span<float> vals = stackalloc float[topK];
        for (int r = 0; r < t; r++)
        {
            var row = new ReadOnlySpan<float>(lp + (long)r * e, e);
            var idx = experts.AsSpan(r * topK, topK);
            TopK(row, idx, vals);
            // softmax over the k (float32): exp(v − max) / Σ
            float max = vals[0], sum = 0;
            for (int j = 0; j < topK; j++) { vals[j] = MathF.Exp(vals[j] - max); sum += vals[j]; }
            for (int j = 0; j < topK; j++) gates[r * topK + j] = vals[j] / sum;
        }
        var counts = new long[e];
        foreach (int x in experts) counts[x]++;
        var start = new int[e];
        for (int x = 1; x < e; x++) start[x] = start[x - 1] + (int)counts[x - 1];
        var tokens = new int[t * topK];
        var sortedGates = new float[t * topK];
        for (int i = 0; i < experts.Length; i++)
        {
            int slot = start[experts[i]]++;
            tokens[slot] = i / topK;
            sortedGates[slot] = gates[i];
        }
        return new MoeRoute(counts, tokens, sortedGates);
    }

    /// <summary>Top-k of a short row by repeated selection (k ≤ E ≤ a few hundred): descending, first index wins ties.</summary>
    private static void TopK(ReadOnlySpan<float> row, Span<int> idx, Span<float> vals)
    {
        int k = idx.Length;
        for (int j = 0; j < k; j++)
        {
            int best = -1;
            float bv = float.NegativeInfinity;
            for (int x = 0; x < row.Length; x++)
            {
                bool taken = false;
                for (int q = 0; q < j; q++) if (idx[q] == x) { taken = true; break; }
                if (taken) continue;
                if (best < 0 || row[x] > bv) { best = x; bv = row[x]; }
            }
            idx[j] = best;
            vals[j] = bv;
        }
    }

    /// <summary>Rows of float32 <paramref name="x"/> [T, H] at <paramref name="tokens"/>, as a new [n, H] tensor.</summary>
    public static Tensor Gather(Tensor x, int[] tokens)
    {
        long h = x.shape[1];
        using var xc = x.contiguous();
        var y = torch.empty(new long[] { tokens.Length, h }, ScalarType.Float32, x.device);
        float* xp = (float*)TorchNative.DataPointer(xc), yp = (float*)TorchNative.DataPointer(y);
        for (int i = 0; i < tokens.Length; i++)
            new ReadOnlySpan<float>(xp + tokens[i] * h, (int)h).CopyTo(new Span<float>(yp + i * h, (int)h));
        return y;
    }

    /// <summary>
    /// out[T, H] (new, zero-initialised) with out[tokens[i]] += ys[i]·gates[i] in order of i, as
    /// <c>index_add_(0, tokens, ys·gates)</c> does on the CPU.
    /// </summary>
    public static Tensor ScatterWeighted(Tensor ys, int[] tokens, float[] gates, long t)
    {
        long h = ys.shape[1];
        using var yc = ys.contiguous();
        var output = torch.zeros(new long[] { t, h }, ScalarType.Float32, ys.device);
        float* yp = (float*)TorchNative.DataPointer(yc), op = (float*)TorchNative.DataPointer(output);
        float[] tmp = System.Buffers.ArrayPool<float>.Shared.Rent((int)h);
        try
        {
            var scaled = tmp.AsSpan(0, (int)h);
            for (int i = 0; i < tokens.Length; i++)
            {
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(yp + i * h, (int)h), gates[i], scaled);
                var dst = new Span<float>(op + tokens[i] * h, (int)h);
                TensorPrimitives.Add(dst, scaled, dst);
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(tmp); }
        return output;
    }

    /// <summary>
    /// Σx² in a fixed order (4 × 256-bit partial sums, then the tail). Not <see cref="TensorPrimitives.SumOfSquares"/>: its
    /// vector loop starts at an alignment boundary, so its summation order (and the last bit) would depend on where a row
    /// lies in memory, and a batched decode row must equal the same sequence decoded alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float SumOfSquares(ReadOnlySpan<float> x)
    {
        int i = 0;
        float s = 0;
        if (System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated && x.Length >= 32)
        {
            fixed (float* p = x)
            {
                System.Runtime.Intrinsics.Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (; i + 32 <= x.Length; i += 32)
                {
                    var v0 = System.Runtime.Intrinsics.Vector256.Load(p + i);
                    var v1 = System.Runtime.Intrinsics.Vector256.Load(p + i + 8);
                    var v2 = System.Runtime.Intrinsics.Vector256.Load(p + i + 16);
                    var v3 = System.Runtime.Intrinsics.Vector256.Load(p + i + 24);
                    a0 += v0 * v0;
                    a1 += v1 * v1;
                    a2 += v2 * v2;
                    a3 += v3 * v3;
                }
                s = System.Runtime.Intrinsics.Vector256.Sum((a0 + a1) + (a2 + a3));
            }
        }
        for (; i < x.Length; i++) s += x[i] * x[i];
        return s;
    }

    /// <summary>A weight vector as float32 (BF16 widened into a pooled buffer; float32 read in place).</summary>
    private static PooledFloats WeightFloats(Tensor w, int n)
    {
        if (w.dtype == ScalarType.Float32) return new PooledFloats(null, (float*)TorchNative.DataPointer(w), n);
        var buf = System.Buffers.ArrayPool<float>.Shared.Rent(n);
        ushort* src = (ushort*)TorchNative.DataPointer(w);
        Widen(src, buf, n);
        return new PooledFloats(buf, null, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Widen(ushort* src, float[] dst, int n)
    {
        for (int i = 0; i < n; i++) dst[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
    }

    private readonly struct PooledFloats(float[]? array, float* pointer, int length) : IDisposable
    {
        public ReadOnlySpan<float> Span => array is not null ? array.AsSpan(0, length) : new ReadOnlySpan<float>(pointer, length);

        public void Dispose()
        {
            if (array is not null) System.Buffers.ArrayPool<float>.Shared.Return(array);
        }
    }
}

/// <summary>
/// A routing of T tokens to experts: <see cref="Counts"/>[e] rows per expert; <see cref="Tokens"/>/<see cref="Gates"/> the
/// token and gate of each (token, expert) pair, grouped by expert ascending.
/// </summary>
internal sealed record MoeRoute(long[] Counts, int[] Tokens, float[] Gates);
