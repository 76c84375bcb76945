using Granite.Core.Weights.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>The per-tensor type choice of a quantized export (llama-quantize --pure's rules) and the Q5_0 fallback blocks.</summary>
public class GgufQuantizationTests
{
    [Theory]
    // row lengths that fit the requested block keep the type
    [InlineData("Q4_K", 1536, "Q4_K")]
    [InlineData("Q6_K", 512, "Q6_K")]
    [InlineData("Q8_0", 64, "Q8_0")]
    [InlineData("Q4_0", 96, "Q4_0")]
    // llama.cpp's tensor_type_fallback: K-quants to the 32-block types, F16 when even 32 does not divide the row
    [InlineData("Q4_K", 896, "Q5_0")]
    [InlineData("Q4_K", 64, "Q5_0")]
    [InlineData("Q5_K", 128, "Q5_1")]
    [InlineData("Q6_K", 32, "Q8_0")]
    [InlineData("Q4_K", 40, "F16")]
    [InlineData("Q6_K", 100, "F16")]
    // Q8_0/Q4_0 rows that are not a multiple of 32: the converter's F16 fallback
    [InlineData("Q8_0", 48, "F16")]
    [InlineData("Q4_0", 16, "F16")]
    // float types never fall back
    [InlineData("BF16", 7, "BF16")]
    [InlineData("F32", 7, "F32")]
    public void TensorTypeFollowsLlamaQuantize(string requested, long row, string expected) =>
        GgufQuantization.TensorType(Enum.Parse<GgmlType>(requested), alwaysF32: false, row).Should().Be(Enum.Parse<GgmlType>(expected));

    [Theory]
    [InlineData("Q4_K")]
    [InlineData("Q8_0")]
    [InlineData("BF16")]
    public void TensorsKeptUnquantizedStayF32(string requested) =>
        GgufQuantization.TensorType(Enum.Parse<GgmlType>(requested), alwaysF32: true, 4096).Should().Be(GgmlType.F32);

    [Fact]
    public void Q5_0BlocksFollowGgmlsReferenceLayout()
    {
        // one block: the value of largest magnitude is −1.6, so d = −1.6 / −16 = 0.1 and q = trunc(x / 0.1 + 16.5) ∈ 0..31
        var x = new float[32];
        for (int i = 0; i < 32; i++) x[i] = (i - 16) * 0.1f;
        x[0] = -1.6f;
        x[31] = 1.55f; // 15.5 + 16.5 = 32, clamped to 31
        var b = new byte[22];
        Q5_0Blocks.QuantizeRow(x, b);
        ((float)BitConverter.ToHalf(b, 0)).Should().Be((float)(Half)0.1f);
        int Q(int i)
        {
            uint qh = BitConverter.ToUInt32(b, 2);
            int lo = i < 16 ? b[6 + i] & 0x0F : b[6 + i - 16] >> 4;
            return lo | (int)(((qh >> i) & 1) << 4);
        }
        Q(0).Should().Be(0);
        Q(16).Should().Be(16, "x = 0");
        Q(17).Should().Be(17);
        Q(31).Should().Be(31);
        Q(5).Should().Be(5, "x = −1.1 → trunc(−11 + 16.5) = 5");
        var y = new float[32];
        Q5_0Blocks.DequantizeRow(b, y);
        float d = (float)(Half)0.1f;
        for (int i = 0; i < 32; i++) y[i].Should().Be((Q(i) - 16) * d, $"element {i}");
    }

    [Fact]
    public void Q5_0RoundTripErrorIsWithinHalfAStep()
    {
        var rng = new Random(5);
        var x = Enumerable.Range(0, 32 * 64).Select(_ => (float)(rng.NextDouble() * 4 - 2) * (rng.Next(4) == 0 ? 10 : 1)).ToArray();
        var b = new byte[64 * 22];
        Q5_0Blocks.QuantizeRow(x, b);
        var y = new float[x.Length];
        Q5_0Blocks.DequantizeRow(b, y);
        for (int blk = 0; blk < 64; blk++)
        {
            float ds = (float)BitConverter.ToHalf(b, blk * 22), d = Math.Abs(ds);
            float amax = x.Skip(blk * 32).Take(32).Max(Math.Abs);
            d.Should().BeApproximately(amax / 16, amax / 16 * 1e-3f);
            for (int i = blk * 32; i < blk * 32 + 32; i++)
            {
                // half a step, except where q = 32 is clamped to 31 (the far end opposite the largest value): one step
                float step = x[i] / ds > 15.5f ? d : d * 0.5f;
                Math.Abs(y[i] - x[i]).Should().BeLessThanOrEqualTo(step + amax * 2e-3f, $"element {i}");
            }
        }
        var zeros = new byte[22];
        Q5_0Blocks.QuantizeRow(new float[32], zeros);
        Q5_0Blocks.DequantizeRow(zeros, y.AsSpan(0, 32));
        y.Take(32).Should().OnlyContain(v => v == 0);
    }
}
