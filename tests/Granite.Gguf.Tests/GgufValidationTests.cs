using System.Text;
using Granite.Core.Weights.Gguf;
using static TorchSharp.torch;
using G = Granite.Core.Weights.Gguf.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>Bad GGUF input gets a clear error naming the file and the key or tensor, never a crash or a huge allocation.</summary>
public class GgufValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("granite-gguf-bad-").FullName;

    public GgufValidationTests() => Granite.Core.GraniteRuntime.EnsureLoaded();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A small valid file: two F32 tensors and a few keys.</summary>
    private string Valid(string name = "ok.gguf")
    {
        var w = new GgufWriter();
        w.Set(G.General.Architecture, GgufValue.Str("granitehybrid"));
        w.Set("test.numbers", GgufValue.I32Array(new[] { 1, 2, 3 }));
        w.AddTensor(new GgufTensorSpec("a.weight", GgmlType.F32, new long[] { 2, 8 }, () => arange(16, dtype: ScalarType.Float32)));
        w.AddTensor(new GgufTensorSpec("b.weight", GgmlType.BF16, new long[] { 4 }, () => ones(4, dtype: ScalarType.BFloat16)));
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

    /// <summary>Offset of tensor <paramref name="name"/>'s info record just after its name.</summary>
    private static int InfoAfterName(byte[] bytes, string name) => IndexOf(bytes, Encoding.UTF8.GetBytes(name)) + name.Length;

    private string Patched(Action<byte[]> patch, string name)
    {
        var bytes = File.ReadAllBytes(Valid());
        patch(bytes);
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static void ShouldFail(string path, string fragment)
    {
        var act = () => GgufFile.Open(path).Dispose();
        act.Should().Throw<InvalidDataException>().Where(e => e.Message.Contains(path) && e.Message.Contains(fragment), $"message should name the file and contain '{fragment}'");
    }

    [Fact]
    public void ValidFileReadsBack()
    {
        using var f = GgufFile.Open(Valid());
        f.Version.Should().Be(3u);
        f.GetString(G.General.Architecture).Should().Be("granitehybrid");
        ((int[])f.Require("test.numbers").Value).Should().Equal(1, 2, 3);
        f.Tensors.Select(t => t.Name).Should().Equal("a.weight", "b.weight");
        f.GetInfo("a.weight").Shape.Should().Equal(2, 8);
        (f.GetInfo("a.weight").Offset % 32).Should().Be(0);
        using var a = f.GetTensor("a.weight");
        a.data<float>().ToArray().Should().Equal(Enumerable.Range(0, 16).Select(i => (float)i));
        using var b = f.GetTensor("b.weight");
        b.to_type(ScalarType.Float32).data<float>().ToArray().Should().Equal(1f, 1f, 1f, 1f);
        GgufFile.HasMagic(f.Path).Should().BeTrue();
    }

    [Fact]
    public void TruncatedFilesAreRejected()
    {
        var valid = Valid();
        var bytes = File.ReadAllBytes(valid);
        long dataStart, lastByte;
        using (var f = GgufFile.Open(valid)) { dataStart = f.DataStart; lastByte = f.Tensors.Max(t => t.Offset + t.ByteLength); }
        // inside the header, inside the tensor infos, inside the first and the last tensor's data (trailing padding is not data)
        foreach (var cut in new[] { 10, 40, (int)dataStart - 20, (int)dataStart + 8, (int)lastByte - 1 })
        {
            var path = Path.Combine(_dir, $"cut{cut}.gguf");
            File.WriteAllBytes(path, bytes[..cut]);
            var act = () => GgufFile.Open(path).Dispose();
            act.Should().Throw<InvalidDataException>().Where(e => e.Message.Contains(path), $"cut at {cut}");
        }
    }

    [Fact]
    public void WrongMagicOrVersionIsRejected()
    {
        ShouldFail(Patched(b => b[0] = (byte)'X', "magic.gguf"), "is not a GGUF file");
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(4), 2u), "v2.gguf"), "GGUF version 2");
        GgufFile.HasMagic(Patched(b => b[0] = (byte)'X', "magic2.gguf")).Should().BeFalse();
    }

    [Fact]
    public void LyingCountsAndLengthsAreRejectedBeforeAllocating()
    {
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(16), ulong.MaxValue / 2), "kv.gguf"), "metadata entries");
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(8), 1UL << 40), "nt.gguf"), "tensors, more than");
        // the first key's length
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(24), 1UL << 50), "keylen.gguf"), "past the end of the file");
        // the array's element count
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(IndexOf(b, Encoding.UTF8.GetBytes("test.numbers")) + 12 + 8), 1UL << 40), "arr.gguf"), "test.numbers");
    }

    [Fact]
    public void BadTensorInfosNameTheTensor()
    {
        // layout after the name: n_dims u32, dims u64 × n, type u32, offset u64
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "a.weight") + 4 + 16 + 4), 1UL << 30), "off.gguf"), "tensor 'a.weight' data");
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "a.weight") + 4 + 16 + 4), 8UL), "align.gguf"), "not a multiple of the alignment");
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "a.weight") + 4 + 16), 99u), "type.gguf"), "tensor 'a.weight' has unknown ggml type 99");
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "a.weight")), 7u), "dims.gguf"), "tensor 'a.weight' has 7 dimensions");
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "a.weight") + 4), 0UL), "zero.gguf"), "tensor 'a.weight' has dimension 0");
        // b.weight's offset moved onto a.weight's data
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "b.weight") + 4 + 8 + 4), 32UL), "overlap.gguf"), "overlap");
        // Q8_0 needs the innermost dimension to be a multiple of 32
        ShouldFail(Patched(b => BitConverter.TryWriteBytes(b.AsSpan(InfoAfterName(b, "a.weight") + 4 + 16), (uint)GgmlType.Q8_0), "q8.gguf"), "not a multiple of the block size 32");
    }

    [Fact]
    public void DuplicateKeysAndTensorsAreRejected()
    {
        ShouldFail(Patched(b => { var i = IndexOf(b, Encoding.UTF8.GetBytes("test.numbers")); Encoding.UTF8.GetBytes("general.architectur").CopyTo(b, i - 7); }, "dupkey.gguf"), "");
        ShouldFail(Patched(b => { var i = IndexOf(b, Encoding.UTF8.GetBytes("b.weight")); b[i] = (byte)'a'; }, "duptensor.gguf"), "has tensor 'a.weight' twice");
    }

    [Fact]
    public void UnknownArchitectureAndShapeMismatchAreClear()
    {
        var w = new GgufWriter();
        w.Set(G.General.Architecture, GgufValue.Str("llama"));
        var path = Path.Combine(_dir, "llama.gguf");
        w.Write(path);
        using (var f = GgufFile.Open(path))
        {
            var act = () => GgufImporter.ReadConfig(f);
            act.Should().Throw<NotSupportedException>().WithMessage($"*{path}*general.architecture is 'llama'*");
        }
        var missing = Path.Combine(_dir, "nometa.gguf");
        var w2 = new GgufWriter();
        w2.Set(G.General.Architecture, GgufValue.Str("granitehybrid"));
        w2.Write(missing);
        using (var f = GgufFile.Open(missing))
        {
            var act = () => GgufImporter.ReadConfig(f);
            act.Should().Throw<InvalidDataException>().WithMessage($"*{missing}*'granitehybrid.block_count' is missing*");
        }
    }
}
