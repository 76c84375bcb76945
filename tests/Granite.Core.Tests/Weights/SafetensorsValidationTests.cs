using System.Text;
using Granite.Core;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Weights;

/// <summary>Every malformed input must raise <see cref="InvalidDataException"/> naming the file, the tensor and the problem.</summary>
public sealed class SafetensorsValidationTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private const string W = "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}";

    private string Raw(string header, int dataBytes = 24, ulong? prefix = null, string name = "bad.safetensors") =>
        RawSafetensors.Write(_tmp.File(name), header, RawSafetensors.Data(dataBytes), prefix);

    private static void ExpectInvalid(string path, params string[] fragments)
    {
        var ex = FluentActions.Invoking(() => SafetensorsCheckpoint.Open(path)).Should().Throw<InvalidDataException>().Which;
        ex.Message.Should().Contain(Path.GetFileName(path));
        foreach (var f in fragments) ex.Message.Should().Contain(f);
        MappedSafetensorsFile.IsPathMapped(path).Should().BeFalse("nothing stays mapped after a failed open");
    }

    [Fact]
    public void ValidBaselineOpens()
    {
        using var ckpt = SafetensorsCheckpoint.Open(Raw("{" + W + "}", name: "good.safetensors"));
        using var t = ckpt.GetTensor("w");
        t.shape.Should().Equal(2, 3);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void FileShorterThan8Bytes(int length)
    {
        var path = _tmp.File("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        ExpectInvalid(path, "shorter than the 8-byte");
    }

    [Fact]
    public void HeaderLengthBeyondFileSize() => ExpectInvalid(Raw("{" + W + "}", prefix: 5000), "header length 5000", "exceeds the file size");

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(ulong.MaxValue)]
    public void HeaderLengthAbove100MB(ulong prefix) => ExpectInvalid(Raw("{" + W + "}", prefix: prefix), $"header length {prefix}", "limit");

    [Theory]
    [InlineData("{\"w\": ")]
    [InlineData("not json at all")]
    [InlineData("{\"w\":{\"dtype\":\"F32\",}}")]
    public void HeaderNotJson(string header) => ExpectInvalid(Raw(header), "not valid JSON");

    [Fact]
    public void HeaderNotUtf8()
    {
        var path = _tmp.File("utf.safetensors");
        var bytes = new byte[] { 4, 0, 0, 0, 0, 0, 0, 0, (byte)'{', 0xFF, 0xFE, (byte)'}' };
        File.WriteAllBytes(path, bytes);
        ExpectInvalid(path, "not valid JSON");
    }

    [Theory]
    [InlineData("[1,2,3]", "Array")]
    [InlineData("\"text\"", "String")]
    [InlineData("42", "Number")]
    public void HeaderNotAnObject(string header, string kind) => ExpectInvalid(Raw(header), "must be a JSON object", kind);

    [Theory]
    [InlineData("F8_E4M3")]
    [InlineData("float32")]
    [InlineData("f32")]
    [InlineData("Q4_K")]
    public void UnknownDtype(string dtype) =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":[2,3],\"data_offsets\":[0,24]}}"), "tensor 'w'", $"unknown dtype '{dtype}'");

    [Fact]
    public void DtypeMissingOrNotString()
    {
        ExpectInvalid(Raw("{\"w\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}"), "tensor 'w'", "dtype");
        ExpectInvalid(Raw("{\"w\":{\"dtype\":4,\"shape\":[2,3],\"data_offsets\":[0,24]}}", name: "b2.safetensors"), "tensor 'w'", "dtype");
    }

    [Theory]
    [InlineData("[-1,3]")]
    [InlineData("[2.5,3]")]
    [InlineData("[\"2\",3]")]
    [InlineData("6")]
    [InlineData("null")]
    [InlineData("[2,[3]]")]
    [InlineData("[99999999999999999999,1]")]
    public void ShapeNotAListOfNonNegativeInts(string shape) =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,24]}}"), "tensor 'w'", "shape");

    [Fact]
    public void ShapeMissing() => ExpectInvalid(Raw("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,24]}}"), "tensor 'w'", "shape is missing");

    [Theory]
    [InlineData("[0]")]
    [InlineData("[0,24,48]")]
    [InlineData("[]")]
    [InlineData("{\"begin\":0,\"end\":24}")]
    [InlineData("[-8,16]")]
    [InlineData("[0,\"24\"]")]
    public void DataOffsetsNotBeginEnd(string offsets) =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":" + offsets + "}}"), "tensor 'w'", "data_offsets");

    [Fact]
    public void DataOffsetsBeginAfterEnd() =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,0]}}"), "tensor 'w'", "begin > end");

    [Fact]
    public void OffsetsOutsideTheDataSection() =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]}}"), "tensor 'w'", "[0, 48]", "outside the data section of 24 bytes");

    [Fact]
    public void HugeOffsetsDoNotWrapAround() =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[9223372036854775783,9223372036854775807]}}"), "tensor 'w'", "outside the data section");

    [Fact]
    public void OverlappingTensors()
    {
        var header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[16,40]}}";
        ExpectInvalid(Raw(header, dataBytes: 40), "tensor 'b'", "overlap", "'a'");
    }

    [Fact]
    public void IdenticalRangesOverlapToo()
    {
        var header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"I32\",\"shape\":[6],\"data_offsets\":[0,24]}}";
        ExpectInvalid(Raw(header), "overlap");
    }

    [Theory]
    [InlineData("F32", "[2,3]", "[0,20]")]
    [InlineData("BF16", "[2,3]", "[0,24]")]
    [InlineData("F16", "[5]", "[0,8]")]
    [InlineData("F32", "[]", "[0,8]")]
    [InlineData("F32", "[4611686018427387904,4]", "[0,24]")]
    public void ByteLengthDiffersFromDtypeTimesShape(string dtype, string shape, string offsets) =>
        ExpectInvalid(Raw("{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}"), "tensor 'w'", "shape");

    [Fact]
    public void TruncatedFile()
    {
        var path = _tmp.File("model.safetensors");
        using (var a = ones(new long[] { 16, 16 }))
        using (var b = ones(new long[] { 16, 16 }))
            SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b });
        using (var fs = new FileStream(path, FileMode.Open))
            fs.SetLength(fs.Length - 10);
        ExpectInvalid(path, "tensor 'b'", "truncated");
    }

    [Fact]
    public void DuplicateTensorInOneHeader() =>
        ExpectInvalid(Raw("{" + W + "," + W + "}"), "tensor 'w'", "twice");

    [Fact]
    public void EntryNotAnObject() => ExpectInvalid(Raw("{\"w\":5}"), "tensor 'w'", "must be an object");

    [Fact]
    public void MetadataMustBeStrings()
    {
        ExpectInvalid(Raw("{\"__metadata__\":{\"format\":1}," + W + "}"), "__metadata__", "'format'");
        ExpectInvalid(Raw("{\"__metadata__\":[1]," + W + "}", name: "m2.safetensors"), "__metadata__");
    }

    [Fact]
    public void CorruptedHeaderBytesNeverCrash()
    {
        var good = _tmp.File("good.safetensors");
        using (var a = randn(new long[] { 8, 4 }).to_type(ScalarType.BFloat16))
        using (var b = randn(new long[] { 3 }))
        using (var c = randn(new long[] { 2, 2, 2 }).to_type(ScalarType.Float16))
            SafetensorsWriter.Write(good, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b, ["c"] = c });
        var bytes = File.ReadAllBytes(good);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(bytes, 0);
        var rng = new Random(1234);
        var path = _tmp.File("fuzz.safetensors");
        int rejected = 0, opened = 0;
        for (int iter = 0; iter < 400; iter++)
        {
            var mutated = (byte[])bytes.Clone();
            if (iter % 10 == 9)
            {
                mutated = mutated[..rng.Next(0, mutated.Length)]; // random truncation
            }
            else
            {
                int flips = rng.Next(1, 4);
                for (int f = 0; f < flips; f++)
                {
                    int at = iter % 5 == 0 ? rng.Next(0, 8) : rng.Next(8, headerEnd);
                    mutated[at] = iter % 3 == 0 ? (byte)"0123456789[],:{}\"-"[rng.Next(18)] : (byte)rng.Next(256);
                }
            }
            File.WriteAllBytes(path, mutated);
            try
            {
                using var ckpt = SafetensorsCheckpoint.Open(path);
                foreach (var n in ckpt.TensorNames)
                {
                    using var t = ckpt.GetTensor(n);
                    using var s = t.to_type(ScalarType.Float64).sum();
                    _ = s.item<double>();
                }
                opened++;
            }
            catch (InvalidDataException ex)
            {
                ex.Message.Should().Contain("fuzz.safetensors");
                rejected++;
            }
        }
        rejected.Should().BeGreaterThan(200);
        (rejected + opened).Should().Be(400);
    }

    // ---- index.json + shards ----

    private string ShardDir(string indexJson, params (string File, string Header)[] shards)
    {
        var dir = Path.Combine(_tmp.Path, "sharded-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        foreach (var (file, header) in shards)
            RawSafetensors.Write(Path.Combine(dir, file), header, RawSafetensors.Data(24));
        File.WriteAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName), indexJson, new UTF8Encoding(false));
        return dir;
    }

    private static void ExpectInvalidDir(string dir, params string[] fragments)
    {
        var ex = FluentActions.Invoking(() => SafetensorsCheckpoint.Open(dir)).Should().Throw<InvalidDataException>().Which;
        foreach (var f in fragments) ex.Message.Should().Contain(f);
        Directory.GetFiles(dir, "*.safetensors").Should().OnlyContain(f => !MappedSafetensorsFile.IsPathMapped(f), "a failed open unmaps every shard");
    }

    private const string X = "\"x\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}";

    [Fact]
    public void ValidShardedBaselineOpens()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}", ("s1.safetensors", "{" + W + "}"), ("s2.safetensors", "{" + X + "}"));
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        ckpt.TensorNames.Should().BeEquivalentTo(new[] { "w", "x" });
    }

    [Fact]
    public void IndexWithByteOrderMarkOpens()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s1.safetensors\"}}", ("s1.safetensors", "{" + W + "}"));
        File.WriteAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName), "{\"weight_map\":{\"w\":\"s1.safetensors\"}}", new UTF8Encoding(true));
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        ckpt.TensorNames.Should().Equal("w");
    }

    [Fact]
    public void InvalidUtf8InTensorNameIsRejected()
    {
        var path = _tmp.File("name.safetensors");
        var header = Encoding.UTF8.GetBytes("{\"wX\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}");
        header[3] = 0xA3;
        var bytes = BitConverter.GetBytes((ulong)header.Length).Concat(header).Concat(RawSafetensors.Data(24)).ToArray();
        File.WriteAllBytes(path, bytes);
        ExpectInvalid(path, "invalid UTF-8");
    }

    [Fact]
    public void IndexReferencesMissingShard()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s1.safetensors\",\"x\":\"gone.safetensors\"}}", ("s1.safetensors", "{" + W + "}"));
        ExpectInvalidDir(dir, SafetensorsCheckpoint.IndexFileName, "tensor 'x'", "gone.safetensors", "does not exist");
    }

    [Fact]
    public void IndexNamesTensorTheShardLacks()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s1.safetensors\",\"x\":\"s1.safetensors\"}}", ("s1.safetensors", "{" + W + "}"));
        ExpectInvalidDir(dir, SafetensorsCheckpoint.IndexFileName, "tensor 'x'", "s1.safetensors", "does not contain");
    }

    [Fact]
    public void IndexMapsTensorToTheWrongShard()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s2.safetensors\",\"x\":\"s1.safetensors\"}}", ("s1.safetensors", "{" + W + "}"), ("s2.safetensors", "{" + X + "}"));
        ExpectInvalidDir(dir, "tensor 'w'", "s2.safetensors", "does not contain");
    }

    [Fact]
    public void DuplicateTensorAcrossShards()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}", ("s1.safetensors", "{" + W + "}"));
        // s2 holds x and a second copy of w (in its own bytes, so the shard itself is valid).
        RawSafetensors.Write(Path.Combine(dir, "s2.safetensors"),
            "{" + X + ",\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,48]}}", RawSafetensors.Data(48));
        ExpectInvalidDir(dir, "tensor 'w'", "two shards", "s1.safetensors", "s2.safetensors");
    }

    [Theory]
    [InlineData("{\"weight_map\": ", "not valid JSON")]
    [InlineData("[]", "must be a JSON object")]
    [InlineData("{\"metadata\":{}}", "weight_map is missing")]
    [InlineData("{\"weight_map\":{}}", "weight_map is empty")]
    [InlineData("{\"weight_map\":{\"w\":5}}", "tensor 'w'")]
    [InlineData("{\"weight_map\":{\"w\":\"../s1.safetensors\"}}", "outside the checkpoint folder")]
    [InlineData("{\"weight_map\":{\"w\":\"s1.safetensors\",\"w\":\"s1.safetensors\"}}", "twice")]
    public void MalformedIndex(string index, string fragment)
    {
        var dir = ShardDir(index, ("s1.safetensors", "{" + W + "}"));
        ExpectInvalidDir(dir, SafetensorsCheckpoint.IndexFileName, fragment);
    }

    [Fact]
    public void BadShardHeaderNamesTheShard()
    {
        var dir = ShardDir("{\"weight_map\":{\"w\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}",
            ("s1.safetensors", "{" + W + "}"), ("s2.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[0,24]}}"));
        ExpectInvalidDir(dir, "s2.safetensors", "tensor 'x'");
        MappedSafetensorsFile.IsPathMapped(Path.Combine(dir, "s1.safetensors")).Should().BeFalse("a failed open unmaps the shards it already mapped");
    }
}
