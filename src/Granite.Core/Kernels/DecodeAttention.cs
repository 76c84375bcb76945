using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Kernels;

/// <summary>
/// Attention of one new token against its own cache (CPU, managed): for query head h of KV group j = h / r,
/// <c>o[h] = softmax(q[h]·K[j]ᵀ·scale) · V[j]</c> over all S cached positions (the new token is the last one, so nothing
/// is masked). BF16 or float32 caches are read in place and widened in registers; accumulation is float32. With a BF16
/// cache it rounds where the LibTorch path it replaces (and the reference's BF16 eager attention) rounds: q and the raw
/// scores q·Kᵀ to BF16, the scale and softmax in float32, the probabilities to BF16 before ·V.
/// </summary>
/// <remarks>
/// Replaces two LibTorch batched matmuls whose shape changes with every token. With a BF16 cache those went to oneDNN,
/// which builds and caches a new matmul primitive (~120 KiB each) for every new key length: measured +1 MiB of native
/// heap per decoded token on the H-Tiny shape until oneDNN's primitive caches filled, and the primitive creation cost
/// on every step.
/// </remarks>
internal static unsafe class DecodeAttention
{
    /// <summary>
    /// Whether the managed path applies: CPU, one query row, q float32 [1, n_h, d], keys/values [n_kv, S, d] of the same
    /// dtype (BF16 or float32) with rows of d contiguous elements, n_h a multiple of n_kv.
    /// </summary>
    public static bool Supports(Tensor q, Tensor keys, Tensor values) =>
        q.device_type == DeviceType.CPU && keys.device_type == DeviceType.CPU && values.device_type == DeviceType.CPU
        && q.dim() == 3 && q.shape[0] == 1 && q.dtype == ScalarType.Float32
        && keys.dim() == 3 && values.dim() == 3 && keys.dtype == values.dtype
        && (keys.dtype == ScalarType.BFloat16 || keys.dtype == ScalarType.Float32)
        && keys.shape[0] == values.shape[0] && keys.shape[1] == values.shape[1] && keys.shape[2] == values.shape[2]
        && keys.shape[2] == q.shape[2] && keys.shape[1] > 0 && q.shape[1] % keys.shape[0] == 0
        && keys.stride(2) == 1 && values.stride(2) == 1 && keys.stride(1) == keys.shape[2] && values.stride(1) == values.shape[2];

    /// <summary>Returns float32 [1, n_h·d] (head-major), see the type remarks.</summary>
    public static Tensor Attend(KernelIsa isa, Tensor q, Tensor keys, Tensor values, double scale)
    {
        int heads = (int)q.shape[1], d = (int)q.shape[2];
        int kvHeads = (int)keys.shape[0], s = (int)keys.shape[1];
        bool bf16 = keys.dtype == ScalarType.BFloat16;
        using var qc = bf16 ? q.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32).contiguous() : q.contiguous();
        var o = torch.empty(new long[] { 1, (long)heads * d }, ScalarType.Float32, q.device);
        float[] scores = System.Buffers.ArrayPool<float>.Shared.Rent(s);
        try
        {
            Run((float*)TorchNative.DataPointer(qc), (byte*)TorchNative.DataPointer(keys), (byte*)TorchNative.DataPointer(values),
                keys.stride(0), values.stride(0), bf16, (float*)TorchNative.DataPointer(o),
                heads, kvHeads, s, d, (float)scale, scores, vector: isa >= KernelIsa.Avx2 && Vector256.IsHardwareAccelerated);
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(scores); }
        return o;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run(float* q, byte* k, byte* v, long kHeadStride, long vHeadStride, bool bf16, float* o,
        int heads, int kvHeads, int s, int d, float scale, float[] scoreBuffer, bool vector)
    {
        int r = heads / kvHeads, elem = bf16 ? 2 : 4;
        var scores = scoreBuffer.AsSpan(0, s);
        for (int h = 0; h < heads; h++)
        {
            int j = h / r;
            float* qh = q + (long)h * d;
            byte* kj = k + j * kHeadStride * elem, vj = v + j * vHeadStride * elem;
            for (int t = 0; t < s; t++)
            {
                float dot = Dot(qh, kj + (long)t * d * elem, d, bf16, vector);
                scores[t] = (bf16 ? RoundBf16(dot) : dot) * scale;
            }
            float max = TensorPrimitives.Max(scores);
            TensorPrimitives.Subtract(scores, max, scores);
            TensorPrimitives.Exp(scores, scores);
            float inv = 1f / TensorPrimitives.Sum(scores);
            float* oh = o + (long)h * d;
            new Span<float>(oh, d).Clear();
            for (int t = 0; t < s; t++)
            {
                float p = scores[t] * inv;
                Axpy(bf16 ? RoundBf16(p) : p, vj + (long)t * d * elem, oh, d, bf16, vector);
            }
        }
    }

    private static float Dot(float* x, byte* row, int d, bool bf16, bool vector)
    {
        int i = 0;
        float acc = 0;
        if (vector)
        {
            var sum = Vector256<float>.Zero;
            for (; i + 8 <= d; i += 8)
                sum = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Load8(row, i, bf16), sum);
            acc = Vector256.Sum(sum);
        }
        for (; i < d; i++) acc += x[i] * Scalar(row, i, bf16);
        return acc;
    }

    private static void Axpy(float a, byte* row, float* y, int d, bool bf16, bool vector)
    {
        int i = 0;
        if (vector)
        {
            var av = Vector256.Create(a);
            for (; i + 8 <= d; i += 8)
                Vector256.FusedMultiplyAdd(av, Load8(row, i, bf16), Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < d; i++) y[i] += a * Scalar(row, i, bf16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8(byte* row, int i, bool bf16)
    {
        if (!bf16) return Vector256.Load((float*)row + i);
        var raw = Vector128.Load((ushort*)row + i);                                 // 8 BF16 values
        return Vector256.ShiftLeft(Vector256.WidenLower(raw.ToVector256Unsafe()).AsUInt32(), 16).AsSingle();
    }

    /// <summary>Round to nearest even BF16, returned widened (finite inputs; softmax inputs and outputs are).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float RoundBf16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(bits);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Scalar(byte* row, int i, bool bf16) =>
        bf16 ? BitConverter.Int32BitsToSingle(((ushort*)row)[i] << 16) : ((float*)row)[i];
}
