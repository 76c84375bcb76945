using Granite.Core.Kernels.Quant;
using Xunit.Abstractions;

namespace Granite.Core.Tests.Kernels;

/// <summary>
/// The ggml block formats (Kernels/Quant): sizes, hand-built blocks dequantized to known values, the fp16 scale
/// conversion, and quantize → dequantize error bounds on random data.
/// </summary>
public class QuantFormatTests
{
    private readonly ITestOutputHelper _out;

    public QuantFormatTests(ITestOutputHelper output) => _out = output;

    /// <summary>The formats by name (QuantType is internal; theory data of public tests must be public).</summary>
    public static TheoryData<string> Types => new() { "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K" };

    [Fact]
    public void BlockSizesAreGgmls()
    {
        QuantFormat.BlockBytes(QuantType.Q8_0).Should().Be(34);
        QuantFormat.BlockBytes(QuantType.Q4_0).Should().Be(18);
        QuantFormat.BlockBytes(QuantType.Q4_K).Should().Be(144);
        QuantFormat.BlockBytes(QuantType.Q5_K).Should().Be(176);
        QuantFormat.BlockBytes(QuantType.Q6_K).Should().Be(210);
        QuantFormat.BlockElements(QuantType.Q8_0).Should().Be(32);
        QuantFormat.BlockElements(QuantType.Q4_0).Should().Be(32);
        foreach (var t in new[] { QuantType.Q4_K, QuantType.Q5_K, QuantType.Q6_K }) QuantFormat.BlockElements(t).Should().Be(256);
        QuantFormat.RowBytes(QuantType.Q8_0, 1536).Should().Be(48 * 34);
        QuantFormat.RowBytes(QuantType.Q4_K, 1536).Should().Be(6 * 144);
        QuantFormat.BitsPerWeight(QuantType.Q8_0).Should().Be(8.5);
        QuantFormat.BitsPerWeight(QuantType.Q4_0).Should().Be(4.5);
        QuantFormat.BitsPerWeight(QuantType.Q4_K).Should().Be(4.5);
        QuantFormat.BitsPerWeight(QuantType.Q5_K).Should().Be(5.5);
        QuantFormat.BitsPerWeight(QuantType.Q6_K).Should().Be(6.5625);
        // The ggml type ids, as GGUF tensor headers carry them.
        ((int)QuantType.Q8_0).Should().Be(8);
        ((int)QuantType.Q4_K).Should().Be(12);
        ((int)QuantType.Q6_K).Should().Be(14);
        var act = () => QuantFormat.RowBytes(QuantType.Q4_K, 100);
        act.Should().Throw<ArgumentException>().WithMessage("*multiple of 256*");
    }

    [Fact]
    public void Fp16WideningIsExactForEveryBitPattern()
    {
        for (int h = 0; h < 65536; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float got = Fp16.ToFloat((ushort)h);
            if (float.IsNaN(expected)) got.Should().Be(float.NaN);
            else BitConverter.SingleToInt32Bits(got).Should().Be(BitConverter.SingleToInt32Bits(expected), $"0x{h:X4}");
        }
        Fp16.FromFloat(0.5f).Should().Be(0x3800);
        Fp16.FromFloat(1f + 1f / 4096).Should().Be(0x3C00, "round to nearest even");
    }

    [Fact]
    public void Q8_0BlockDequantizesToScaleTimesLevel()
    {
        var b = new byte[34];
        BitConverter.TryWriteBytes(b.AsSpan(0, 2), (ushort)0x3800).Should().BeTrue(); // d = 0.5
        for (int j = 0; j < 32; j++) b[2 + j] = (byte)(sbyte)(j - 16);
        var y = new float[32];
        QuantFormat.DequantizeRow(QuantType.Q8_0, b, y);
        for (int j = 0; j < 32; j++) y[j].Should().Be(0.5f * (j - 16));
    }

    [Fact]
    public void Q4_0BlockDequantizesLowNibblesFirst()
    {
        var b = new byte[18];
        BitConverter.TryWriteBytes(b.AsSpan(0, 2), (ushort)0x4000).Should().BeTrue(); // d = 2
        for (int j = 0; j < 16; j++) b[2 + j] = (byte)(j | ((15 - j) << 4));
        var y = new float[32];
        QuantFormat.DequantizeRow(QuantType.Q4_0, b, y);
        for (int j = 0; j < 16; j++)
        {
            y[j].Should().Be(2f * (j - 8));
            y[16 + j].Should().Be(2f * (15 - j - 8));
        }
    }

    /// <summary>Scales 1,2,3,4,17,33,50,63 and mins 0,1,2,3,20,40,60,5 in ggml's 12-byte packing (computed by hand from
    /// get_scale_min_k4: the high two bits of sub-blocks 4..7 sit in the top bits of bytes 0..7).</summary>
    private static readonly byte[] PackedScales = { 65, 130, 195, 196, 64, 129, 194, 3, 65, 129, 194, 95 };
    private static readonly int[] Sc = { 1, 2, 3, 4, 17, 33, 50, 63 };
    private static readonly int[] Mn = { 0, 1, 2, 3, 20, 40, 60, 5 };

    [Fact]
    public void Q4_KBlockDequantizesWithSixBitScalesAndMins()
    {
        var b = new byte[144];
        BitConverter.TryWriteBytes(b.AsSpan(0, 2), (ushort)0x3C00).Should().BeTrue(); // d = 1
        BitConverter.TryWriteBytes(b.AsSpan(2, 2), (ushort)0x3800).Should().BeTrue(); // dmin = 0.5
        PackedScales.CopyTo(b, 4);
        for (int i = 0; i < 128; i++) b[16 + i] = (byte)((i % 16) | ((15 - i % 16) << 4));
        var y = new float[256];
        QuantFormat.DequantizeRow(QuantType.Q4_K, b, y);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
            {
                y[64 * c + l].Should().Be(1f * Sc[2 * c] * (l % 16) - 0.5f * Mn[2 * c], $"weight {64 * c + l}");
                y[64 * c + 32 + l].Should().Be(1f * Sc[2 * c + 1] * (15 - l % 16) - 0.5f * Mn[2 * c + 1], $"weight {64 * c + 32 + l}");
            }
        y[255].Should().Be(63f * 0 - 2.5f); // the last sub-block: scale 63, min 5, level 15 − 15 = 0
    }

    [Fact]
    public void Q5_KBlockAddsTheFifthBitFromQh()
    {
        var b = new byte[176];
        BitConverter.TryWriteBytes(b.AsSpan(0, 2), (ushort)0x3C00).Should().BeTrue();
        BitConverter.TryWriteBytes(b.AsSpan(2, 2), (ushort)0x3800).Should().BeTrue();
        PackedScales.CopyTo(b, 4);
        for (int l = 0; l < 32; l++) b[16 + l] = (byte)(l % 2 == 0 ? 0b0101_0101 : 0b1010_1010); // even l: low halves get +16; odd: high halves
        for (int i = 0; i < 128; i++) b[48 + i] = (byte)((i % 16) | ((15 - i % 16) << 4));
        var y = new float[256];
        QuantFormat.DequantizeRow(QuantType.Q5_K, b, y);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
            {
                int lo = l % 16 + (l % 2 == 0 ? 16 : 0), hi = 15 - l % 16 + (l % 2 == 1 ? 16 : 0);
                y[64 * c + l].Should().Be(1f * Sc[2 * c] * lo - 0.5f * Mn[2 * c], $"weight {64 * c + l}");
                y[64 * c + 32 + l].Should().Be(1f * Sc[2 * c + 1] * hi - 0.5f * Mn[2 * c + 1], $"weight {64 * c + 32 + l}");
            }
    }

    [Fact]
    public void Q6_KBlockDequantizesSixBitLevelsWithInt8Scales()
    {
        var b = new byte[210];
        // Every weight's level is 0..63 = (index·5) mod 64; byte positions as ggml's block_q6_K (ql 128, qh 64, scales 16, d).
        int Level(int i) => i * 5 % 64;
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++)
            {
                int q1 = Level(128 * h + l), q2 = Level(128 * h + 32 + l), q3 = Level(128 * h + 64 + l), q4 = Level(128 * h + 96 + l);
                b[64 * h + l] = (byte)((q1 & 15) | ((q3 & 15) << 4));
                b[64 * h + 32 + l] = (byte)((q2 & 15) | ((q4 & 15) << 4));
                b[128 + 32 * h + l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        for (int j = 0; j < 16; j++) b[192 + j] = (byte)(sbyte)(j - 8);
        BitConverter.TryWriteBytes(b.AsSpan(208, 2), (ushort)0x3400).Should().BeTrue(); // d = 0.25
        var y = new float[256];
        QuantFormat.DequantizeRow(QuantType.Q6_K, b, y);
        for (int i = 0; i < 256; i++) y[i].Should().Be(0.25f * (i / 16 - 8) * (Level(i) - 32), $"weight {i}");
    }

    /// <summary>Measured relative RMS error of quantize → dequantize on N(0, 1) data (docs/quantization.md), with margin.</summary>
    [Theory]
    [InlineData("Q8_0", 0.0075)]
    [InlineData("Q4_0", 0.13)]
    [InlineData("Q4_K", 0.11)]
    [InlineData("Q5_K", 0.055)]
    [InlineData("Q6_K", 0.03)]
    public void RoundTripErrorStaysWithinTheFormatsBound(string format, double maxRelRms)
    {
        var type = Enum.Parse<QuantType>(format);
        const int k = 4096;
        var rng = new Random(12);
        var x = new float[k];
        for (int i = 0; i < k; i++) x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        x[5] = 9f; // an outlier in one block
        var q = new byte[QuantFormat.RowBytes(type, k)];
        QuantFormat.QuantizeRow(type, x, q);
        var y = new float[k];
        QuantFormat.DequantizeRow(type, q, y);
        double se = 0, ss = 0;
        for (int i = 0; i < k; i++) { se += (x[i] - y[i]) * (double)(x[i] - y[i]); ss += x[i] * (double)x[i]; }
        double rel = Math.Sqrt(se / ss);
        _out.WriteLine($"{type}: relative RMS error {rel:F5}");
        rel.Should().BeLessThan(maxRelRms);
        rel.Should().BeGreaterThan(0, "the data really went through the format");
        y.Should().OnlyContain(v => float.IsFinite(v));
        // Re-quantizing the dequantized values gives them back (the format's values are fixed points, up to fp16 scale rounding).
        var q2 = new byte[q.Length];
        QuantFormat.QuantizeRow(type, y, q2);
        var y2 = new float[k];
        QuantFormat.DequantizeRow(type, q2, y2);
        double se2 = 0;
        for (int i = 0; i < k; i++) se2 += (y[i] - y2[i]) * (double)(y[i] - y2[i]);
        Math.Sqrt(se2 / ss).Should().BeLessThan(maxRelRms / 2);
    }

    [Fact]
    public void Q8_0MatchesGgmlsReferenceElementBound()
    {
        // ggml's quantize_row_q8_0_ref: d = amax/127 (fp16), q = round(x/d): every value within d/2 plus the fp16 rounding of d.
        var rng = new Random(3);
        var x = new float[32 * 64];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + i / 64);
        var q = new byte[QuantFormat.RowBytes(QuantType.Q8_0, x.Length)];
        QuantFormat.QuantizeRow(QuantType.Q8_0, x, q);
        var y = new float[x.Length];
        QuantFormat.DequantizeRow(QuantType.Q8_0, q, y);
        for (int b = 0; b < 64; b++)
        {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.Max(amax, Math.Abs(x[32 * b + j]));
            float d = Fp16.ToFloat(BitConverter.ToUInt16(q, 34 * b));
            d.Should().BeApproximately(amax / 127, amax / 127 / 1024);
            for (int j = 0; j < 32; j++) Math.Abs(x[32 * b + j] - y[32 * b + j]).Should().BeLessThanOrEqualTo(0.57f * d);
            ((sbyte)q[34 * b + 2 + Array.IndexOf(x, x.Skip(32 * b).Take(32).MaxBy(Math.Abs), 32 * b) - 32 * b]).Should().BeOneOf((sbyte)127, (sbyte)-127);
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void ZerosStayZeros(string format)
    {
        var type = Enum.Parse<QuantType>(format);
        int k = QuantFormat.BlockElements(type) * 2;
        var q = new byte[QuantFormat.RowBytes(type, k)];
        QuantFormat.QuantizeRow(type, new float[k], q);
        var y = new float[k];
        y.AsSpan().Fill(1);
        QuantFormat.DequantizeRow(type, q, y);
        y.Should().OnlyContain(v => v == 0);
    }
}
