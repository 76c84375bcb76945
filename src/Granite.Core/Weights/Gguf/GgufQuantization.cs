namespace Granite.Core.Weights.Gguf;

/// <summary>Quantizes one row of float32 values into ggml blocks of one type (<c>row.Length</c> a multiple of the
/// block size; <c>blocks.Length</c> = row.Length / block elements × block bytes). Layout identical to ggml's.</summary>
internal delegate void GgufQuantizeRow(ReadOnlySpan<float> row, Span<byte> blocks);

/// <summary>Dequantizes one row of ggml blocks into float32 values (the inverse layout of <see cref="GgufQuantizeRow"/>).</summary>
internal delegate void GgufDequantizeRow(ReadOnlySpan<byte> blocks, Span<float> row);

/// <summary>
/// Which ggml type each exported tensor gets for a requested <c>--type</c>, as llama.cpp's quantizer
/// (<c>llama-quantize --pure</c>, src/llama-quant.cpp) chooses it, and the row quantizers that produce the blocks.
/// </summary>
/// <remarks>
/// Kept unquantized, as llama.cpp does: 1-D tensors, <c>*_norm.weight</c>, the router <c>ffn_gate_inp</c>,
/// <c>ssm_conv1d</c>, and every name not ending in <c>weight</c> (<c>ssm_a</c>, <c>ssm_d</c>, biases) — the
/// <see cref="GgufTensorMapping.AlwaysF32"/> rule the converter already applies. Everything else, the token embedding
/// and <c>output.weight</c> included, takes the requested type; a tensor whose rows are not a multiple of the type's
/// block falls back like llama.cpp's <c>tensor_type_fallback</c>: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16
/// when even that block does not fit (for Q8_0 and Q4_0, which llama-quantize refuses, the converter's F16 fallback).
/// </remarks>
internal static class GgufQuantization
{
    /// <summary>Whether <paramref name="t"/> is a block-quantized type.</summary>
    public static bool IsQuantized(GgmlType t) => Gguf.BlockLayout(t).BlockElements > 1;

    /// <summary>The stored type of a tensor with row length <paramref name="rowLength"/> for the requested type.</summary>
    public static GgmlType TensorType(GgmlType requested, bool alwaysF32, long rowLength)
    {
        if (alwaysF32) return GgmlType.F32;
        if (!IsQuantized(requested)) return requested;
        if (rowLength % Gguf.BlockLayout(requested).BlockElements == 0) return requested;
        var fallback = requested switch
        {
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => GgmlType.F16,
        };
        return fallback == GgmlType.F16 || rowLength % Gguf.BlockLayout(fallback).BlockElements == 0 ? fallback : GgmlType.F16;
    }

    /// <summary>The row quantizer of <paramref name="t"/>, or null when this build has none.</summary>
    public static GgufQuantizeRow? Quantizer(GgmlType t) => t switch
    {
        GgmlType.Q5_0 => Q5_0Blocks.QuantizeRow,
        _ when Kernels.Quant.QuantFormat.IsQuantType((uint)t) => (row, blocks) => Kernels.Quant.QuantFormat.QuantizeRow((Kernels.Quant.QuantType)(uint)t, row, blocks),
        _ => null,
    };

    /// <summary>The row dequantizer of <paramref name="t"/>, or null when this build has none.</summary>
    public static GgufDequantizeRow? Dequantizer(GgmlType t) => t switch
    {
        GgmlType.Q5_0 => Q5_0Blocks.DequantizeRow,
        _ when Kernels.Quant.QuantFormat.IsQuantType((uint)t) => (blocks, row) => Kernels.Quant.QuantFormat.DequantizeRow((Kernels.Quant.QuantType)(uint)t, blocks, row),
        _ => null,
    };

    /// <summary>Whether tensors of <paramref name="t"/> can be read (as they are, or dequantized at load).</summary>
    public static bool IsReadable(GgmlType t) => t is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 || Dequantizer(t) is not null;

    /// <summary>The readable types, for messages.</summary>
    public static string ReadableTypes => string.Join(", ", Enum.GetValues<GgmlType>().Where(IsReadable));
}

/// <summary>
/// ggml's Q5_0 (32 values per 22-byte block: fp16 scale d, 32 high bits, 16 bytes of low nibbles; x = d·(q − 16)),
/// only as llama.cpp's fallback for Q4_K tensors whose rows are not a multiple of 256. Quantization as ggml's
/// reference <c>quantize_row_q5_0_ref</c>: d = the signed value of largest magnitude / −16.
/// </summary>
internal static class Q5_0Blocks
{
    /// <summary>Values per block.</summary>
    public const int BlockElements = 32;
    /// <summary>Bytes per block.</summary>
    public const int BlockBytes = 22;

    /// <summary>Quantizes <paramref name="row"/> (a multiple of 32 values) into <paramref name="blocks"/>.</summary>
    public static void QuantizeRow(ReadOnlySpan<float> row, Span<byte> blocks)
    {
        if (row.Length % BlockElements != 0 || blocks.Length != row.Length / BlockElements * BlockBytes)
            throw new ArgumentException($"Q5_0: {row.Length} values do not fill {blocks.Length} bytes of blocks");
        for (int b = 0; b < row.Length / BlockElements; b++)
        {
            var x = row.Slice(b * BlockElements, BlockElements);
            var o = blocks.Slice(b * BlockBytes, BlockBytes);
            float amax = 0, max = 0;
            foreach (float v in x)
                if (Math.Abs(v) > amax) { amax = Math.Abs(v); max = v; }
            float d = max / -16f;
            float id = d != 0 ? 1f / d : 0f;
            System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(o, (Half)d);
            uint qh = 0;
            for (int j = 0; j < BlockElements / 2; j++)
            {
                int q0 = Math.Min(31, (int)(sbyte)(x[j] * id + 16.5f));
                int q1 = Math.Min(31, (int)(sbyte)(x[j + 16] * id + 16.5f));
                o[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 & 0x10) >> 4) << j;
                qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
            }
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(o.Slice(2), qh);
        }
    }

    /// <summary>Dequantizes <paramref name="blocks"/> into <paramref name="row"/>.</summary>
    public static void DequantizeRow(ReadOnlySpan<byte> blocks, Span<float> row)
    {
        if (row.Length % BlockElements != 0 || blocks.Length != row.Length / BlockElements * BlockBytes)
            throw new ArgumentException($"Q5_0: {blocks.Length} bytes of blocks do not fill {row.Length} values");
        for (int b = 0; b < row.Length / BlockElements; b++)
        {
            var i = blocks.Slice(b * BlockBytes, BlockBytes);
            var y = row.Slice(b * BlockElements, BlockElements);
            float d = (float)System.Buffers.Binary.BinaryPrimitives.ReadHalfLittleEndian(i);
            uint qh = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(i.Slice(2));
            for (int j = 0; j < BlockElements / 2; j++)
            {
                int x0 = (i[6 + j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
                int x1 = (i[6 + j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
                y[j] = (x0 - 16) * d;
                y[j + 16] = (x1 - 16) * d;
            }
        }
    }
}
