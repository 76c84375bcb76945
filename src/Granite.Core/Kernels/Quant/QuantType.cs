namespace Granite.Core.Kernels.Quant;

/// <summary>
/// The ggml block formats the quantized kernels run on (values are ggml's type ids, as in a GGUF tensor header). Every
/// format packs a row of weights in blocks along the innermost (input) dimension; byte layouts are ggml's
/// (ggml-common.h), so a GGUF file's tensor data is used as it is.
/// </summary>
internal enum QuantType
{
    /// <summary>4-bit: 32 weights = fp16 d + 16 bytes of nibbles (element j low nibble of byte j, element 16 + j high); w = (q − 8)·d.</summary>
    Q4_0 = 2,

    /// <summary>8-bit: 32 weights = fp16 d + 32 int8; w = q·d.</summary>
    Q8_0 = 8,

    /// <summary>
    /// 4-bit K-quant: 256 weights = fp16 d, fp16 dmin, 12 bytes of eight 6-bit scales and eight 6-bit mins, 128 bytes of
    /// nibbles; sub-block j of 32: w = d·sc[j]·q − dmin·m[j].
    /// </summary>
    Q4_K = 12,

    /// <summary>5-bit K-quant: as <see cref="Q4_K"/> with 32 bytes of high bits (qh) before the nibbles: 176 bytes per 256 weights.</summary>
    Q5_K = 13,

    /// <summary>
    /// 6-bit K-quant: 256 weights = 128 bytes low nibbles (ql), 64 bytes 2-bit highs (qh), 16 int8 scales (one per 16
    /// weights), fp16 d: w = d·sc[j]·(q − 32).
    /// </summary>
    Q6_K = 14,
}

/// <summary>Sizes and row-level entry points of the <see cref="QuantType"/> formats (dispatch to the per-format code).</summary>
internal static unsafe class QuantFormat
{
    /// <summary>Weights per K-quant super-block.</summary>
    public const int QK_K = 256;

    /// <summary>Whether <paramref name="ggmlTypeId"/> is one of the formats of <see cref="QuantType"/>.</summary>
    public static bool IsQuantType(uint ggmlTypeId) => ggmlTypeId is 2 or 8 or 12 or 13 or 14;

    /// <summary>Weights per block.</summary>
    public static int BlockElements(QuantType t) => t switch
    {
        QuantType.Q4_0 or QuantType.Q8_0 => 32,
        QuantType.Q4_K or QuantType.Q5_K or QuantType.Q6_K => QK_K,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown quant type"),
    };

    /// <summary>Bytes per block.</summary>
    public static int BlockBytes(QuantType t) => t switch
    {
        QuantType.Q4_0 => BlockQ4_0.Bytes,
        QuantType.Q8_0 => BlockQ8_0.Bytes,
        QuantType.Q4_K => BlockQ4K.Bytes,
        QuantType.Q5_K => BlockQ5K.Bytes,
        QuantType.Q6_K => BlockQ6K.Bytes,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown quant type"),
    };

    /// <summary>Bytes of one row of <paramref name="k"/> weights; <paramref name="k"/> must be a multiple of the block size.</summary>
    /// <exception cref="ArgumentException"><paramref name="k"/> is not a positive multiple of the block size.</exception>
    public static long RowBytes(QuantType t, long k)
    {
        int be = BlockElements(t);
        if (k <= 0 || k % be != 0) throw new ArgumentException($"a {t} row holds a positive multiple of {be} weights, not {k}", nameof(k));
        return k / be * BlockBytes(t);
    }

    /// <summary>Bits per weight (storage, scales included).</summary>
    public static double BitsPerWeight(QuantType t) => 8.0 * BlockBytes(t) / BlockElements(t);

    /// <summary>Dequantizes <paramref name="k"/> weights (a multiple of the block size) from <paramref name="src"/> into <paramref name="dst"/>.</summary>
    public static void DequantizeRow(QuantType t, byte* src, float* dst, long k)
    {
        long blocks = k / BlockElements(t);
        switch (t)
        {
            case QuantType.Q4_0: for (long b = 0; b < blocks; b++) BlockQ4_0.Dequantize(src + b * BlockQ4_0.Bytes, dst + b * 32); break;
            case QuantType.Q8_0: for (long b = 0; b < blocks; b++) BlockQ8_0.Dequantize(src + b * BlockQ8_0.Bytes, dst + b * 32); break;
            case QuantType.Q4_K: for (long b = 0; b < blocks; b++) BlockQ4K.Dequantize(src + b * BlockQ4K.Bytes, dst + b * QK_K); break;
            case QuantType.Q5_K: for (long b = 0; b < blocks; b++) BlockQ5K.Dequantize(src + b * BlockQ5K.Bytes, dst + b * QK_K); break;
            case QuantType.Q6_K: for (long b = 0; b < blocks; b++) BlockQ6K.Dequantize(src + b * BlockQ6K.Bytes, dst + b * QK_K); break;
            default: throw new ArgumentOutOfRangeException(nameof(t), t, "unknown quant type");
        }
    }

    /// <summary>Quantizes <paramref name="k"/> weights (a multiple of the block size) from <paramref name="src"/> into <paramref name="dst"/> (reference quality).</summary>
    public static void QuantizeRow(QuantType t, float* src, byte* dst, long k)
    {
        long blocks = k / BlockElements(t);
        switch (t)
        {
            case QuantType.Q4_0: for (long b = 0; b < blocks; b++) BlockQ4_0.Quantize(src + b * 32, dst + b * BlockQ4_0.Bytes); break;
            case QuantType.Q8_0: for (long b = 0; b < blocks; b++) BlockQ8_0.Quantize(src + b * 32, dst + b * BlockQ8_0.Bytes); break;
            case QuantType.Q4_K: for (long b = 0; b < blocks; b++) BlockQ4K.Quantize(src + b * QK_K, dst + b * BlockQ4K.Bytes); break;
            case QuantType.Q5_K: for (long b = 0; b < blocks; b++) BlockQ5K.Quantize(src + b * QK_K, dst + b * BlockQ5K.Bytes); break;
            case QuantType.Q6_K: for (long b = 0; b < blocks; b++) BlockQ6K.Quantize(src + b * QK_K, dst + b * BlockQ6K.Bytes); break;
            default: throw new ArgumentOutOfRangeException(nameof(t), t, "unknown quant type");
        }
    }

    /// <summary>Span form of <see cref="DequantizeRow(QuantType, byte*, float*, long)"/> (lengths checked).</summary>
    public static void DequantizeRow(QuantType t, ReadOnlySpan<byte> src, Span<float> dst)
    {
        long bytes = RowBytes(t, dst.Length);
        if (src.Length < bytes) throw new ArgumentException($"{dst.Length} {t} weights need {bytes} bytes, got {src.Length}", nameof(src));
        fixed (byte* s = src)
        fixed (float* d = dst) DequantizeRow(t, s, d, dst.Length);
    }

    /// <summary>Span form of <see cref="QuantizeRow(QuantType, float*, byte*, long)"/> (lengths checked).</summary>
    public static void QuantizeRow(QuantType t, ReadOnlySpan<float> src, Span<byte> dst)
    {
        long bytes = RowBytes(t, src.Length);
        if (dst.Length < bytes) throw new ArgumentException($"{src.Length} {t} weights need {bytes} bytes, got {dst.Length}", nameof(dst));
        fixed (float* s = src)
        fixed (byte* d = dst) QuantizeRow(t, s, d, src.Length);
    }
}

/// <summary>IEEE half ↔ float32 for block scales.</summary>
internal static class Fp16
{
    /// <summary>Exact widening of an IEEE binary16 bit pattern (normals, subnormals, zeros, infinities, NaN).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        uint rest = h & 0x7FFFu;
        if (rest >= 0x7C00u) return BitConverter.UInt32BitsToSingle(sign | 0x7F800000u | ((rest & 0x3FFu) << 13)); // inf / NaN
        // Exponent and mantissa shifted into float position, then rebiased by 2^112: exact for normals and subnormals.
        float magnitude = BitConverter.UInt32BitsToSingle(rest << 13) * 5.192296858534828e33f;
        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude) | sign);
    }

    /// <summary>Round-to-nearest-even narrowing (what ggml's GGML_FP32_TO_FP16 does).</summary>
    public static ushort FromFloat(float f) => BitConverter.HalfToUInt16Bits((Half)f);
}
