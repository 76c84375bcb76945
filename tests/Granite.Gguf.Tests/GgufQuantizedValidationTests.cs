using System.Text;
using Granite.Core.Weights.Gguf;
using static TorchSharp.torch;
using G = Granite.Core.Weights.Gguf.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>
/// Bad quantized GGUF input (block types): block-size mismatches, truncated or lying tensor data, offsets off the file's
/// <c>general.alignment</c>, types the reader does not know or run, counts no array can hold, names llama.cpp refuses.
/// Each is an <see cref="InvalidDataException"/> (or <see cref="NotSupportedException"/> for a valid type this build does
/// not run) naming the file and the tensor, raised before anything of the declared size is allocated.
/// </summary>
public class GgufQuantizedValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("granite-gguf-badq-").FullName;

    public GgufQuantizedValidationTests() => Granite.Core.GraniteRuntime.EnsureLoaded();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Random bytes for <paramref name="type"/> blocks whose fp16 scales are small finite numbers.</summary>
    private static byte[] Blocks(GgmlType type, long[] shape, int seed)
    {
        var (be, bb) = G.BlockLayout(type);
        long n = G.ByteCount(type, shape);
        var bytes = new byte[n];
        new Random(seed).NextBytes(bytes);
        if (type == GgmlType.Q8_0 || type == GgmlType.Q4_0 || type == GgmlType.Q5_0)
            for (long b = 0; b < n / bb; b++) BitConverter.TryWriteBytes(bytes.AsSpan((int)(b * bb), 2), (Half)0.01f);
        _ = be;
        return bytes;
    }

    /// <summary>A file with one F32 tensor and one tensor of <paramref name="type"/> (last, so a cut truncates it).</summary>
    private string WithQuantized(GgmlType type, long[] shape, string name = "q.gguf", uint? alignment = null)
    {
        var w = new GgufWriter();
        w.Set(G.General.Architecture, GgufValue.Str("granitehybrid"));
        if (alignment is uint a) w.Set(G.General.Alignment, GgufValue.U32(a));
        w.AddTensor(new GgufTensorSpec("f.weight", GgmlType.F32, new long[] { 2, 8 }, () => arange(16, dtype: ScalarType.Float32)));
        var blocks = Blocks(type, shape, 7);
        w.AddTensor(new GgufTensorSpec("blk.0.q.weight", type, shape, () => tensor(blocks)));
        var path = Path.Combine(_dir, name);
        w.Write(path);
        return path;
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        throw new InvalidOperationException("needle not found");
    }

    /// <summary>Offset of a tensor's info record just after its name: n_dims u32, dims u64 × n, type u32, offset u64.</summary>
    private static int InfoAfterName(byte[] bytes, string name) => IndexOf(bytes, Encoding.UTF8.GetBytes(name)) + name.Length;

    private string Patched(string source, Action<byte[]> patch, string name)
    {
        var bytes = File.ReadAllBytes(source);
        patch(bytes);
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void ShouldFail(string path, params string[] fragments)
    {
        var act = () => GgufFile.Open(path).Dispose();
        var e = act.Should().Throw<InvalidDataException>().Which;
        e.Message.Should().StartWith(path + ":");
        foreach (var fragment in fragments) e.Message.Should().Contain(fragment);
        e.Message.Should().NotContain("\n");
    }

    public static IEnumerable<object[]> BlockTypes() => new[]
    {
        new object[] { "Q8_0", 64L }, new object[] { "Q4_0", 32L }, new object[] { "Q5_0", 32L },
        new object[] { "Q4_K", 256L }, new object[] { "Q5_K", 512L }, new object[] { "Q6_K", 256L },
    };

    [Theory]
    [MemberData(nameof(BlockTypes))]
    public void ValidQuantizedTensorsHaveTheirBlockSizes(string typeName, long row)
    {
        var type = Enum.Parse<GgmlType>(typeName);
        using var f = GgufFile.Open(WithQuantized(type, new long[] { 3, row }));
        var (be, bb) = G.BlockLayout(type);
        var t = f.GetInfo("blk.0.q.weight");
        t.Type.Should().Be(type);
        t.Shape.Should().Equal(3, row);
        t.ByteLength.Should().Be(3 * row / be * bb);
        (t.Offset - f.DataStart).Should().Be(G.Align(2 * 8 * 4, 32));
    }

    [Theory]
    [InlineData("Q4_K", 256, 128)]
    [InlineData("Q5_K", 256, 64)]
    [InlineData("Q6_K", 256, 96)]
    [InlineData("Q8_0", 32, 48)]
    [InlineData("Q4_0", 32, 16)]
    public void RowsThatAreNotAMultipleOfTheBlockNameTheTensor(string typeName, int block, int row)
    {
        var type = Enum.Parse<GgmlType>(typeName);
        // A valid Q8_0 [2, 256] tensor re-labelled: a Q4_K tensor whose rows are 128 values long, and so on.
        var valid = WithQuantized(GgmlType.Q8_0, new long[] { 2, 256 });
        var path = Patched(valid, b =>
        {
            int at = InfoAfterName(b, "blk.0.q.weight");
            BitConverter.TryWriteBytes(b.AsSpan(at + 4), (ulong)row);
            BitConverter.TryWriteBytes(b.AsSpan(at + 4 + 16), (uint)type);
        }, $"rows-{type}.gguf");
        ShouldFail(path, $"tensor 'blk.0.q.weight' of type {type} has innermost dimension {row}, not a multiple of the block size {block}");
    }

    [Theory]
    [InlineData("Q4_K")]
    [InlineData("Q6_K")]
    [InlineData("Q8_0")]
    public void TruncatedQuantizedDataNamesTheTensor(string typeName)
    {
        var type = Enum.Parse<GgmlType>(typeName);
        var valid = WithQuantized(type, new long[] { 4, 256 });
        long end;
        using (var f = GgufFile.Open(valid)) end = f.GetInfo("blk.0.q.weight").Offset + f.GetInfo("blk.0.q.weight").ByteLength;
        var bytes = File.ReadAllBytes(valid);
        foreach (var cut in new[] { end - 1, end - G.BlockLayout(type).BlockBytes, end - 300 })
        {
            var path = Path.Combine(_dir, $"cut-{type}-{cut}.gguf");
            File.WriteAllBytes(path, bytes[..(int)cut]);
            ShouldFail(path, "tensor 'blk.0.q.weight' data", "outside the data section", "truncated file or wrong offset");
        }
    }

    [Fact]
    public void LyingShapesAndOffsetsNameTheTensor()
    {
        var valid = WithQuantized(GgmlType.Q4_K, new long[] { 4, 256 });
        // more rows than the data holds (the size GGUF implies from the shape and the type)
        ShouldFail(Patched(valid, b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "blk.0.q.weight") + 4 + 8), 5UL), "rows.gguf"),
            "tensor 'blk.0.q.weight' data", "outside the data section");
        // an offset far past the end
        ShouldFail(Patched(valid, b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "blk.0.q.weight") + 4 + 16 + 4), 1UL << 40), "far.gguf"),
            "tensor 'blk.0.q.weight' data [1099511627776, ");
        // an offset that would wrap around: offset + size overflows 64 bits
        ShouldFail(Patched(valid, b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "blk.0.q.weight") + 4 + 16 + 4), ulong.MaxValue - 31), "wrap.gguf"),
            "tensor 'blk.0.q.weight'");
        // a shape too large to address at all
        ShouldFail(Patched(valid, b =>
        {
            int at = InfoAfterName(b, "blk.0.q.weight");
            BitConverter.TryWriteBytes(b.AsSpan(at + 4 + 8), 1UL << 60);
        }, "huge.gguf"), "tensor 'blk.0.q.weight'");
        // onto the F32 tensor's data
        ShouldFail(Patched(valid, b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "blk.0.q.weight") + 4 + 16 + 4), 0UL), "overlap.gguf"),
            "tensors 'f.weight' and 'blk.0.q.weight' overlap");
    }

    [Fact]
    public void OffsetsFollowGeneralAlignment()
    {
        var valid = WithQuantized(GgmlType.Q6_K, new long[] { 2, 256 }, "a64.gguf", alignment: 64);
        using (var f = GgufFile.Open(valid))
        {
            f.Alignment.Should().Be(64);
            ((f.GetInfo("blk.0.q.weight").Offset - f.DataStart) % 64).Should().Be(0);
            (f.DataStart % 64).Should().Be(0);
        }
        // 96 is a multiple of 32 (the default) but not of the file's 64
        ShouldFail(Patched(valid, b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "blk.0.q.weight") + 4 + 16 + 4), 96UL), "a96.gguf"),
            "tensor 'blk.0.q.weight' has offset 96, not a multiple of the alignment 64");
        // an alignment that is not a power of two
        var w = new GgufWriter();
        w.Set(G.General.Alignment, GgufValue.U32(48));
        var bad = Path.Combine(_dir, "a48.gguf");
        w.Write(bad);
        ShouldFail(bad, "metadata 'general.alignment' is UInt32 48, expected a power-of-two uint32");
    }

    [Theory]
    [InlineData(20u, "ggml type 20 (IQ4_NL), which this reader does not support")]
    [InlineData(39u, "ggml type 39 (MXFP4), which this reader does not support")]
    [InlineData(4u, "unknown ggml type 4")]
    [InlineData(31u, "unknown ggml type 31")]
    [InlineData(0xFFFFFFFFu, "unknown ggml type 4294967295")]
    public void TypesTheReaderDoesNotKnowNameTheTensor(uint raw, string fragment)
    {
        var valid = WithQuantized(GgmlType.Q8_0, new long[] { 2, 256 });
        ShouldFail(Patched(valid, b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "blk.0.q.weight") + 4 + 16), raw), $"type{raw}.gguf"),
            "tensor 'blk.0.q.weight' has " + fragment);
    }

    [Fact]
    public void AKnownTypeThisBuildDoesNotRunIsRefusedWhenRead()
    {
        // Q4_1 [2, 256]: a valid file (llama.cpp reads it), but not a type Granite runs.
        var path = WithQuantized(GgmlType.Q4_1, new long[] { 2, 256 }, "q41.gguf");
        using var f = GgufFile.Open(path);
        var act = () => f.GetTensor("blk.0.q.weight");
        act.Should().Throw<NotSupportedException>().WithMessage($"{path}: tensor 'blk.0.q.weight' has type Q4_1*");
    }

    [Fact]
    public void Q5_0TensorsAreDequantizedAtLoad()
    {
        var rng = new Random(11);
        var values = Enumerable.Range(0, 3 * 64).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var blocks = new byte[3 * 64 / 32 * 22];
        Q5_0Blocks.QuantizeRow(values, blocks);
        var expected = new float[values.Length];
        Q5_0Blocks.DequantizeRow(blocks, expected);
        var w = new GgufWriter();
        w.AddTensor(new GgufTensorSpec("x.weight", GgmlType.Q5_0, new long[] { 3, 64 }, () => tensor(blocks)));
        var path = Path.Combine(_dir, "q50.gguf");
        w.Write(path);
        using var f = GgufFile.Open(path);
        using var t = f.GetTensor("x.weight");
        t.dtype.Should().Be(ScalarType.Float32);
        t.shape.Should().Equal(3, 64);
        t.data<float>().ToArray().Should().Equal(expected);
    }

    [Fact]
    public void TensorNamesLlamaCppRefusesAreRejected()
    {
        var w = new GgufWriter();
        var longName = "blk.0." + new string('x', 60) + ".weight";
        w.AddTensor(new GgufTensorSpec(longName, GgmlType.F32, new long[] { 4 }, () => ones(4, dtype: ScalarType.Float32)));
        var path = Path.Combine(_dir, "name.gguf");
        w.Write(path);
        ShouldFail(path, "tensor #0 has a name of 73 bytes (1..63 allowed)");
    }

    [Fact]
    public void AnArrayCountNoArrayCanHoldIsRejectedBeforeAllocating()
    {
        // A sparse 2.5 GB file whose one metadata array claims 2.4e9 UINT8 elements: within the file, beyond any .NET array.
        var path = Path.Combine(_dir, "sparse.gguf");
        using (var fs = new FileStream(path, FileMode.Create))
        {
            using var bw = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
            bw.Write(G.Magic);
            bw.Write(G.Version);
            bw.Write(0UL); // tensors
            bw.Write(1UL); // metadata
            var key = Encoding.UTF8.GetBytes("test.big");
            bw.Write((ulong)key.Length);
            bw.Write(key);
            bw.Write((uint)GgufValueType.Array);
            bw.Write((uint)GgufValueType.UInt8);
            bw.Write(2_400_000_000UL);
            bw.Flush();
            fs.SetLength(2_500_000_000L);
        }
        ShouldFail(path, "metadata 'test.big' declares 2400000000 elements, more than an array can hold");
    }

    [Fact]
    public void LargeArraysAreReadInBulkAndKeepTheirValues()
    {
        var w = new GgufWriter();
        var ints = Enumerable.Range(0, 100_000).Select(i => i * 7 - 3).ToArray();
        var floats = Enumerable.Range(0, 1000).Select(i => i * 0.25f).ToArray();
        w.Set("test.ints", GgufValue.I32Array(ints));
        w.Set("test.floats", GgufValue.F32Array(floats));
        w.Set("test.bools", new GgufValue(GgufValueType.Array, new[] { true, false, true }, GgufValueType.Bool));
        var path = Path.Combine(_dir, "arrays.gguf");
        w.Write(path);
        using (var f = GgufFile.Open(path))
        {
            ((int[])f.Require("test.ints").Value).Should().Equal(ints);
            ((float[])f.Require("test.floats").Value).Should().Equal(floats);
            ((bool[])f.Require("test.bools").Value).Should().Equal(true, false, true);
        }
        var bytes = File.ReadAllBytes(path);
        int at = IndexOf(bytes, Encoding.UTF8.GetBytes("test.bools")) + "test.bools".Length + 4 + 4 + 8;
        ShouldFail(Patched(path, b => b[at + 1] = 2, "bool.gguf"), "metadata 'test.bools' element 1 is a bool with byte value 2");
    }
}
