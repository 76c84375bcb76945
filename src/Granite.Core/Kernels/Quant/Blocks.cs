using System.Runtime.CompilerServices;

namespace Granite.Core.Kernels.Quant;

/// <summary>ggml <c>block_q8_0</c>: <c>{ fp16 d; int8 qs[32]; }</c>, w[j] = d·qs[j].</summary>
internal static unsafe class BlockQ8_0
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block.</summary>
    public const int Bytes = 34;

    /// <summary>32 weights from one block.</summary>
    public static void Dequantize(byte* b, float* y)
    {
        float d = Fp16.ToFloat(*(ushort*)b);
        sbyte* q = (sbyte*)(b + 2);
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
        {
            // Same products as the loop below (one rounding each), 8 at a time: prefill dequantizes whole weights.
            var dv = System.Runtime.Intrinsics.Vector256.Create(d);
            for (int j = 0; j < 32; j += 8)
                System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.ConvertToSingle(System.Runtime.Intrinsics.X86.Avx2.ConvertToVector256Int32(q + j)) * dv, y + j);
            return;
        }
        for (int j = 0; j < 32; j++) y[j] = d * q[j];
    }

    /// <summary>ggml's reference quantizer: d = max|x|/127, q = round(x/d) (half away from zero).</summary>
    public static void Quantize(float* x, byte* b)
    {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
        float d = amax / 127f;
        float id = d != 0 ? 1f / d : 0f;
        *(ushort*)b = Fp16.FromFloat(d);
        sbyte* q = (sbyte*)(b + 2);
        for (int j = 0; j < 32; j++) q[j] = (sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
    }
}

/// <summary>ggml <c>block_q4_0</c>: <c>{ fp16 d; uint8 qs[16]; }</c>, w[j] = (lo(qs[j]) − 8)·d, w[16 + j] = (hi(qs[j]) − 8)·d.</summary>
internal static unsafe class BlockQ4_0
{
    /// <summary>Weights per block.</summary>
    public const int Elements = 32;

    /// <summary>Bytes per block.</summary>
    public const int Bytes = 18;

    /// <summary>32 weights from one block.</summary>
    public static void Dequantize(byte* b, float* y)
    {
        float d = Fp16.ToFloat(*(ushort*)b);
        byte* q = b + 2;
        for (int j = 0; j < 16; j++)
        {
            y[j] = ((q[j] & 0xF) - 8) * d;
            y[j + 16] = ((q[j] >> 4) - 8) * d;
        }
    }

    /// <summary>ggml's reference quantizer: d = (the value of largest magnitude)/−8, q = min(15, trunc(x/d + 8.5)).</summary>
    public static void Quantize(float* x, byte* b)
    {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (amax < MathF.Abs(x[j])) { amax = MathF.Abs(x[j]); max = x[j]; }
        float d = max / -8f;
        float id = d != 0 ? 1f / d : 0f;
        *(ushort*)b = Fp16.FromFloat(d);
        byte* q = b + 2;
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(15, (int)(sbyte)(x[j] * id + 8.5f));
            int q1 = Math.Min(15, (int)(sbyte)(x[j + 16] * id + 8.5f));
            q[j] = (byte)(q0 | (q1 << 4));
        }
    }
}

/// <summary>The 6-bit scale/min packing and the per-sub-block search shared by <see cref="BlockQ4K"/> and <see cref="BlockQ5K"/>.</summary>
internal static unsafe class KQuant
{
    /// <summary>Bytes of packed scales and mins in a Q4_K/Q5_K block.</summary>
    public const int ScaleBytes = 12;

    /// <summary>ggml's <c>get_scale_min_k4</c>: 6-bit scale and min of sub-block <paramref name="j"/> (0..7).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleMin(int j, byte* q, out int sc, out int m)
    {
        if (j < 4)
        {
            sc = q[j] & 63;
            m = q[j + 4] & 63;
        }
        else
        {
            sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    /// <summary>Inverse of <see cref="ScaleMin"/>: packs eight 6-bit scales and mins into 12 bytes.</summary>
    public static void PackScaleMin(ReadOnlySpan<int> sc, ReadOnlySpan<int> m, byte* q)
    {
        for (int j = 0; j < ScaleBytes; j++) q[j] = 0;
        for (int j = 0; j < 8; j++)
        {
            if (j < 4)
            {
                q[j] |= (byte)sc[j];
                q[j + 4] |= (byte)m[j];
            }
            else
            {
                q[j + 4] = (byte)((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
                q[j - 4] |= (byte)((sc[j] >> 4) << 6);
                q[j] |= (byte)((m[j] >> 4) << 6);
            }
        }
    }

    /// <summary>
    /// Fits x ≈ scale·L − min with L ∈ [0, <paramref name="nmax"/>], min ≥ 0, over <paramref name="n"/> values: a search
    /// over 21 candidate inverse scales around nmax/(max − min), each refined by least squares; the smallest squared error
    /// wins. Returns (scale, min); both are ≥ 0.
    /// </summary>
    public static (float Scale, float Min) FitScaleMin(float* x, int n, int nmax)
    {
        float lo = 0, hi = float.MinValue;
        for (int i = 0; i < n; i++) { lo = MathF.Min(lo, x[i]); hi = MathF.Max(hi, x[i]); }
        if (hi <= lo) return (0f, -lo);
        float bestScale = (hi - lo) / nmax, bestMin = -lo, bestErr = Error(x, n, nmax, bestScale, bestMin);
        for (int s = -10; s <= 10; s++)
        {
            float iscale = (nmax + 0.1f * s) / (hi - lo);
            if (iscale <= 0) continue;
            // Least squares of x = a·L + b over the L this candidate picks (b = −min).
            double sl = 0, sll = 0, sx = 0, sxl = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp((int)MathF.Round(iscale * (x[i] - lo)), 0, nmax);
                sl += l; sll += (double)l * l; sx += x[i]; sxl += (double)x[i] * l;
            }
            double det = n * sll - sl * sl;
            if (det <= 0) continue;
            double a = (n * sxl - sl * sx) / det;
            double b = (sll * sx - sl * sxl) / det;
            if (b > 0) { b = 0; a = sll > 0 ? sxl / sll : 0; } // min must be ≥ 0 (value = a·L − min)
            if (a <= 0) continue;
            float err = Error(x, n, nmax, (float)a, (float)-b);
            if (err < bestErr) { bestErr = err; bestScale = (float)a; bestMin = (float)-b; }
        }
        return (bestScale, bestMin);
    }

    private static float Error(float* x, int n, int nmax, float scale, float min)
    {
        if (scale <= 0) return float.MaxValue;
        float e = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Clamp((int)MathF.Round((x[i] + min) / scale), 0, nmax);
            float d = scale * l - min - x[i];
            e += d * d;
        }
        return e;
    }

    /// <summary>
    /// Quantizes 256 weights the Q4_K/Q5_K way: per 32-weight sub-block a (scale, min) fit, the 8 scales and 8 mins to 6
    /// bits against fp16 super-scales d and dmin, then every weight against its quantized scale and min. Writes d, dmin
    /// and the packed scales at <paramref name="b"/>; returns the levels 0..<paramref name="nmax"/> in <paramref name="levels"/>.
    /// </summary>
    public static void QuantizeSuperBlock(float* x, byte* b, int nmax, Span<byte> levels)
    {
        Span<float> scales = stackalloc float[8], mins = stackalloc float[8];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            (scales[j], mins[j]) = FitScaleMin(x + 32 * j, 32, nmax);
            maxScale = MathF.Max(maxScale, scales[j]);
            maxMin = MathF.Max(maxMin, mins[j]);
        }
        Span<int> ls = stackalloc int[8], lm = stackalloc int[8];
        float invScale = maxScale > 0 ? 63f / maxScale : 0f, invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            ls[j] = Math.Min(63, (int)MathF.Round(invScale * scales[j]));
            lm[j] = Math.Min(63, (int)MathF.Round(invMin * mins[j]));
        }
        ushort dBits = Fp16.FromFloat(maxScale / 63f), dminBits = Fp16.FromFloat(maxMin / 63f);
        ((ushort*)b)[0] = dBits;
        ((ushort*)b)[1] = dminBits;
        PackScaleMin(ls, lm, b + 4);
        float d = Fp16.ToFloat(dBits), dmin = Fp16.ToFloat(dminBits);
        for (int j = 0; j < 8; j++)
        {
            float s = d * ls[j], m = dmin * lm[j];
            for (int i = 0; i < 32; i++)
                levels[32 * j + i] = s == 0 ? (byte)0 : (byte)Math.Clamp((int)MathF.Round((x[32 * j + i] + m) / s), 0, nmax);
        }
    }
}

/// <summary>
/// ggml <c>block_q4_K</c>: <c>{ fp16 d; fp16 dmin; uint8 scales[12]; uint8 qs[128]; }</c>. Chunk c (0..3) of 64 weights uses
/// bytes qs[32c .. 32c+31]: low nibbles are sub-block 2c, high nibbles sub-block 2c + 1; w = d·sc·q − dmin·m.
/// </summary>
internal static unsafe class BlockQ4K
{
    /// <summary>Bytes per block.</summary>
    public const int Bytes = 144;

    /// <summary>256 weights from one block.</summary>
    public static void Dequantize(byte* b, float* y)
    {
        float d = Fp16.ToFloat(((ushort*)b)[0]), dmin = Fp16.ToFloat(((ushort*)b)[1]);
        byte* scales = b + 4, q = b + 16;
        for (int c = 0; c < 4; c++)
        {
            KQuant.ScaleMin(2 * c, scales, out int sc1, out int m1);
            KQuant.ScaleMin(2 * c + 1, scales, out int sc2, out int m2);
            float d1 = d * sc1, n1 = dmin * m1, d2 = d * sc2, n2 = dmin * m2;
            for (int l = 0; l < 32; l++)
            {
                y[64 * c + l] = d1 * (q[32 * c + l] & 0xF) - n1;
                y[64 * c + 32 + l] = d2 * (q[32 * c + l] >> 4) - n2;
            }
        }
    }

    /// <summary>Reference-quality quantizer (see <see cref="KQuant.QuantizeSuperBlock"/>).</summary>
    public static void Quantize(float* x, byte* b)
    {
        Span<byte> levels = stackalloc byte[256];
        KQuant.QuantizeSuperBlock(x, b, 15, levels);
        byte* q = b + 16;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                q[32 * c + l] = (byte)(levels[64 * c + l] | (levels[64 * c + 32 + l] << 4));
    }
}

/// <summary>
/// ggml <c>block_q5_K</c>: <c>{ fp16 d; fp16 dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }</c>: Q4_K's nibbles plus
/// a fifth bit, weight 64c + l in bit 2c of qh[l], weight 64c + 32 + l in bit 2c + 1.
/// </summary>
internal static unsafe class BlockQ5K
{
    /// <summary>Bytes per block.</summary>
    public const int Bytes = 176;

    /// <summary>256 weights from one block.</summary>
    public static void Dequantize(byte* b, float* y)
    {
        float d = Fp16.ToFloat(((ushort*)b)[0]), dmin = Fp16.ToFloat(((ushort*)b)[1]);
        byte* scales = b + 4, qh = b + 16, q = b + 48;
        for (int c = 0; c < 4; c++)
        {
            KQuant.ScaleMin(2 * c, scales, out int sc1, out int m1);
            KQuant.ScaleMin(2 * c + 1, scales, out int sc2, out int m2);
            float d1 = d * sc1, n1 = dmin * m1, d2 = d * sc2, n2 = dmin * m2;
            int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
            for (int l = 0; l < 32; l++)
            {
                y[64 * c + l] = d1 * ((q[32 * c + l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - n1;
                y[64 * c + 32 + l] = d2 * ((q[32 * c + l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - n2;
            }
        }
    }

    /// <summary>Reference-quality quantizer (see <see cref="KQuant.QuantizeSuperBlock"/>).</summary>
    public static void Quantize(float* x, byte* b)
    {
        Span<byte> levels = stackalloc byte[256];
        KQuant.QuantizeSuperBlock(x, b, 31, levels);
        byte* qh = b + 16, q = b + 48;
        for (int l = 0; l < 32; l++) qh[l] = 0;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
            {
                int a = levels[64 * c + l], e = levels[64 * c + 32 + l];
                q[32 * c + l] = (byte)((a & 0xF) | ((e & 0xF) << 4));
                qh[l] |= (byte)(((a >> 4) << (2 * c)) | ((e >> 4) << (2 * c + 1)));
            }
    }
}

/// <summary>
/// ggml <c>block_q6_K</c>: <c>{ uint8 ql[128]; uint8 qh[64]; int8 scales[16]; fp16 d; }</c>. Half h (0..1) of 128 weights:
/// weight 128h + 32i + l (i 0..3, l 0..31) has its low nibble in ql[64h + l + 32·(i &amp; 1)] (high nibble for i ≥ 2) and its
/// two high bits at bit 2i of qh[32h + l]; w = d·scales[(128h + 32i + l)/16]·(q − 32).
/// </summary>
internal static unsafe class BlockQ6K
{
    /// <summary>Bytes per block.</summary>
    public const int Bytes = 210;

    /// <summary>256 weights from one block.</summary>
    public static void Dequantize(byte* b, float* y)
    {
        byte* ql = b, qh = b + 128;
        sbyte* sc = (sbyte*)(b + 192);
        float d = Fp16.ToFloat(*(ushort*)(b + 208));
        for (int h = 0; h < 2; h++)
        {
            for (int l = 0; l < 32; l++)
            {
                int is_ = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is_] * q1;
                y[l + 32] = d * sc[is_ + 2] * q2;
                y[l + 64] = d * sc[is_ + 4] * q3;
                y[l + 96] = d * sc[is_ + 6] * q4;
            }
            y += 128; ql += 64; qh += 32; sc += 8;
        }
    }

    /// <summary>
    /// Reference-quality quantizer: per 16 weights a symmetric scale (search over 19 candidates around max/−32, each
    /// refined by least squares), the 16 scales to int8 against an fp16 super-scale, then every weight to 6 bits.
    /// </summary>
    public static void Quantize(float* x, byte* b)
    {
        Span<float> scales = stackalloc float[16];
        float maxAbs = 0, maxScale = 0;
        for (int j = 0; j < 16; j++)
        {
            scales[j] = FitSymmetric(x + 16 * j, 16);
            if (MathF.Abs(scales[j]) > maxAbs) { maxAbs = MathF.Abs(scales[j]); maxScale = scales[j]; }
        }
        byte* ql = b, qh = b + 128;
        sbyte* sc = (sbyte*)(b + 192);
        for (int i = 0; i < 192; i++) b[i] = 0;
        if (maxAbs == 0)
        {
            for (int j = 0; j < 16; j++) sc[j] = 0;
            *(ushort*)(b + 208) = 0;
            return;
        }
        float iscale = -128f / maxScale;
        ushort dBits = Fp16.FromFloat(1f / iscale);
        *(ushort*)(b + 208) = dBits;
        float d = Fp16.ToFloat(dBits);
        Span<byte> levels = stackalloc byte[256];
        for (int j = 0; j < 16; j++)
        {
            int s = Math.Min(127, (int)MathF.Round(iscale * scales[j]));
            sc[j] = (sbyte)s;
            float ds = d * s;
            for (int i = 0; i < 16; i++)
                levels[16 * j + i] = ds == 0 ? (byte)32 : (byte)(Math.Clamp((int)MathF.Round(x[16 * j + i] / ds), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++)
            {
                int q1 = levels[128 * h + l], q2 = levels[128 * h + l + 32], q3 = levels[128 * h + l + 64], q4 = levels[128 * h + l + 96];
                ql[64 * h + l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[64 * h + l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[32 * h + l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }

    /// <summary>Signed scale s with x ≈ s·L, L ∈ [−32, 31], the value of largest magnitude mapping near −32.</summary>
    private static float FitSymmetric(float* x, int n)
    {
        float amax = 0, max = 0;
        for (int i = 0; i < n; i++)
            if (MathF.Abs(x[i]) > amax) { amax = MathF.Abs(x[i]); max = x[i]; }
        if (amax == 0) return 0;
        float best = max / -32f, bestErr = float.MaxValue;
        for (int c = -9; c <= 9; c++)
        {
            float iscale = -(32f + 0.1f * c) / max;
            double sxl = 0, sll = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp((int)MathF.Round(iscale * x[i]), -32, 31);
                sxl += (double)x[i] * l; sll += (double)l * l;
            }
            if (sll == 0) continue;
            float s = (float)(sxl / sll);
            float err = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Clamp((int)MathF.Round(x[i] / s), -32, 31);
                float e = s * l - x[i];
                err += e * e;
            }
            if (err < bestErr) { bestErr = err; best = s; }
        }
        return best;
    }
}
