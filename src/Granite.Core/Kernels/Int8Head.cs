using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Kernels;

/// <summary>
/// An int8 copy of the LM head (opt-in, <see cref="Modeling.GraniteModelOptions.Int8LmHead"/>): each weight row r
/// quantised symmetrically, q[r, k] = round(W[r, k] / s[r]) with s[r] = max_k |W[r, k]| / 127, and y = s[r]·Σ_k q[r, k]·x[k]
/// with float32 x and accumulation (x is not quantised). Half the bytes of BF16 for the largest weight of a decode step
/// (the tied 100,352 × 1,536 head is a third of H-Tiny's bytes per token at 10 layers). Per logit the error is at most
/// Σ_k |x[k]|·s[r]/2 (<see cref="ErrorBound"/>); measured effect in docs/benchmarks.md.
/// </summary>
internal sealed unsafe class Int8Head
{
    private readonly sbyte[] _q;      // [N, K], pinned
    private readonly float[] _scales; // [N]

    private Int8Head(sbyte[] q, float[] scales, int n, int k, IntPtr source)
    {
        _q = q;
        _scales = scales;
        N = n;
        K = k;
        Source = source;
    }

    /// <summary>Output rows (vocabulary).</summary>
    public int N { get; }

    /// <summary>Input width (hidden size).</summary>
    public int K { get; }

    /// <summary>Address of the weight it was quantised from.</summary>
    public IntPtr Source { get; }

    /// <summary>Bytes held (int8 weights + float32 scales).</summary>
    public long Bytes => _q.LongLength + 4L * _scales.Length;

    /// <summary>Per-row scales s[r].</summary>
    public ReadOnlySpan<float> Scales => _scales;

    /// <summary>Whether <paramref name="weight"/> can be quantised: contiguous CPU BF16/float32 [N, K] with N·K &lt; 2³¹.</summary>
    public static bool Supports(Tensor weight) =>
        weight.dim() == 2 && weight.device_type == DeviceType.CPU && weight.is_contiguous()
        && (weight.dtype == ScalarType.BFloat16 || weight.dtype == ScalarType.Float32) && weight.numel() < int.MaxValue;

    /// <summary>Quantises <paramref name="weight"/> (rows split over <paramref name="workers"/>).</summary>
    public static Int8Head Quantize(Tensor weight, KernelWorkers workers)
    {
        if (!Supports(weight)) throw new ArgumentException("the head must be a contiguous CPU BF16/float32 [N, K] tensor", nameof(weight));
        int n = (int)weight.shape[0], k = (int)weight.shape[1];
        var q = GC.AllocateUninitializedArray<sbyte>(n * k, pinned: true);
        var scales = new float[n];
        var src = TorchNative.DataPointer(weight);
        fixed (sbyte* qp = q)
        fixed (float* sp = scales)
        {
            var body = new QuantizeRows(src, weight.dtype == ScalarType.BFloat16, qp, sp, n, k);
            workers.For((n + 255) / 256, body);
        }
        return new Int8Head(q, scales, n, k, src);
    }

    private readonly struct QuantizeRows(IntPtr src, bool bf16, sbyte* q, float* scales, int n, int k) : IKernelLoop
    {
        public void Run(int index)
        {
            float[] row = new float[k];
            for (int r = index * 256, end = Math.Min(n, r + 256); r < end; r++)
            {
                for (int i = 0; i < k; i++)
                    row[i] = bf16 ? BitConverter.Int32BitsToSingle(((ushort*)src)[(long)r * k + i] << 16) : ((float*)src)[(long)r * k + i];
                float max = 0;
                foreach (float v in row) max = Math.Max(max, Math.Abs(v));
                float s = max / 127f;
                scales[r] = s;
                sbyte* qr = q + (long)r * k;
                for (int i = 0; i < k; i++)
                    qr[i] = s == 0 ? (sbyte)0 : (sbyte)Math.Clamp(MathF.Round(row[i] / s), -127f, 127f);
            }
        }
    }

    /// <summary>Upper bound of |y_int8 − y_exact| for logit row <paramref name="r"/> and input <paramref name="x"/>: Σ|x|·s[r]/2.</summary>
    public double ErrorBound(ReadOnlySpan<float> x, int r)
    {
        double l1 = 0;
        foreach (float v in x) l1 += Math.Abs(v);
        return l1 * _scales[r] / 2;
    }

    /// <summary>x [..., K] (any float dtype, ≤ <see cref="Bf16Gemv.MaxRows"/> rows) · dequantised Wᵀ → float32 [..., N].</summary>
    public Tensor Linear(Tensor x, KernelIsa isa, KernelWorkers workers)
    {
        long rows = x.numel() / K;
        if (x.shape[^1] != K || rows < 1 || rows > Bf16Gemv.MaxRows) throw new ArgumentException($"x must be [..., {K}] with 1..{Bf16Gemv.MaxRows} rows", nameof(x));
        var outShape = x.shape.ToArray();
        outShape[^1] = N;
        using var x32 = x.to_type(ScalarType.Float32).contiguous();
        var y = torch.empty(outShape, ScalarType.Float32, x.device);
        fixed (sbyte* qp = _q)
        fixed (float* sp = _scales)
        {
            var job = new HeadJob(isa, (float*)TorchNative.DataPointer(x32), (int)rows, qp, sp, N, K, (float*)TorchNative.DataPointer(y));
            int threads = workers.Count;
            if (threads == 1) job.Rows(0, N);
            else
            {
                int block = Math.Max(16, N / (threads * 8)) / 4 * 4;
                workers.For((N + block - 1) / block, new RowBlocks<HeadJob>(job, block, N));
            }
        }
        return y;
    }

    private readonly struct HeadJob(KernelIsa isa, float* x, int rows, sbyte* q, float* scales, int n, int k, float* y) : IRowRangeJob
    {
        public void Rows(int from, int to)
        {
            for (int r = from; r < to; r++)
            {
                sbyte* w = q + (long)r * k;
                for (int m = 0; m < rows; m++)
                {
                    float* xr = x + (long)m * k;
                    float dot = isa >= KernelIsa.Avx512 ? Dot512(w, xr, k) : isa == KernelIsa.Avx2 ? Dot256(w, xr, k) : DotScalar(w, xr, k);
                    y[(long)m * n + r] = dot * scales[r];
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float Dot512(sbyte* w, float* x, int k)
        {
            Vector512<float> a0 = default, a1 = default;
            int i = 0;
            for (; i + 32 <= k; i += 32)
            {
                var w0 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(w + i)));
                var w1 = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(w + i + 16)));
                a0 = Avx512F.FusedMultiplyAdd(w0, Vector512.Load(x + i), a0);
                a1 = Avx512F.FusedMultiplyAdd(w1, Vector512.Load(x + i + 16), a1);
            }
            float s = Vector512.Sum(a0 + a1);
            for (; i < k; i++) s += w[i] * x[i];
            return s;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float Dot256(sbyte* w, float* x, int k)
        {
            Vector256<float> a0 = default, a1 = default;
            int i = 0;
            for (; i + 16 <= k; i += 16)
            {
                var w0 = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(w + i));
                var w1 = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(w + i + 8));
                a0 = Fma.MultiplyAdd(w0, Vector256.Load(x + i), a0);
                a1 = Fma.MultiplyAdd(w1, Vector256.Load(x + i + 8), a1);
            }
            float s = Vector256.Sum(a0 + a1);
            for (; i < k; i++) s += w[i] * x[i];
            return s;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static float DotScalar(sbyte* w, float* x, int k)
        {
            double s = 0;
            for (int i = 0; i < k; i++) s += (double)(w[i] * x[i]);
            return (float)s;
        }
    }
}
