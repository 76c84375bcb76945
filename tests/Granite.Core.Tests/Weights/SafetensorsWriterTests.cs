using System.Buffers.Binary;
using System.Text.Json;
using Granite.Core;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Weights;

public class SafetensorsWriterTests
{
    public SafetensorsWriterTests() => GraniteRuntime.EnsureLoaded();

    private static Dictionary<string, Tensor> RandomTensors(ScalarType dtype, int seed)
    {
        var g = new TorchSharp.torch.Generator((ulong)seed);
        return new Dictionary<string, Tensor>
        {
            ["model.embed_tokens.weight"] = randn(new long[] { 37, 16 }, generator: g).to_type(dtype),
            ["model.layers.0.block_sparse_moe.input_linear.weight"] = randn(new long[] { 4, 6, 16 }, generator: g).to_type(dtype),
            ["model.layers.0.mamba.conv1d.weight"] = randn(new long[] { 5, 1, 4 }, generator: g).to_type(dtype),
            ["scalar"] = tensor(3.5f).to_type(dtype),
            ["empty"] = zeros(new long[] { 0, 3 }, dtype: dtype),
            ["odd"] = randn(new long[] { 3 }, generator: g).to_type(dtype), // 6-byte tensors shift later offsets off 8-byte alignment
            ["after.odd"] = randn(new long[] { 7, 3 }, generator: g).to_type(dtype),
        };
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void SingleFileRoundTripIsBitExact(ScalarType dtype)
    {
        using var tmp = new TempDir();
        var tensors = RandomTensors(dtype, 7);
        try
        {
            var path = tmp.File("model.safetensors");
            SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });

            // Header length is a multiple of 8 so the data section is 8-byte aligned.
            var bytes = File.ReadAllBytes(path);
            (BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8).Should().Be(0);

            using var ckpt = SafetensorsCheckpoint.Open(tmp.Path);
            ckpt.TensorNames.Should().BeEquivalentTo(tensors.Keys);
            ckpt.Metadata["format"].Should().Be("pt");
            foreach (var (name, t) in tensors)
            {
                using var r = ckpt.GetTensor(name);
                r.dtype.Should().Be(dtype, name);
                r.shape.Should().Equal(t.shape, name);
                r.bytes.ToArray().Should().Equal(t.bytes.ToArray(), name);
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    [Fact]
    public void ShardedRoundTripWritesIndexAndSplitsBySize()
    {
        using var tmp = new TempDir();
        var tensors = RandomTensors(ScalarType.BFloat16, 11);
        try
        {
            long limit = 800; // bytes of data per shard: forces several shards
            var shards = SafetensorsWriter.WriteSharded(tmp.Path, tensors, limit);
            shards.Count.Should().BeGreaterThan(2);
            shards.Select(Path.GetFileName).Should().Equal(Enumerable.Range(1, shards.Count).Select(k => $"model-{k:D5}-of-{shards.Count:D5}.safetensors"));

            using var index = JsonDocument.Parse(File.ReadAllText(tmp.File(SafetensorsCheckpoint.IndexFileName)));
            index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64()
                .Should().Be(tensors.Values.Sum(t => t.numel() * 2));
            var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
            map.Keys.Should().BeEquivalentTo(tensors.Keys);

            using var ckpt = SafetensorsCheckpoint.Open(tmp.Path);
            ckpt.Files.Should().HaveCount(shards.Count);
            foreach (var (name, t) in tensors)
            {
                Path.GetFileName(ckpt.GetInfo(name).FilePath).Should().Be(map[name]);
                using var r = ckpt.GetTensor(name);
                r.bytes.ToArray().Should().Equal(t.bytes.ToArray(), name);
            }
            foreach (var shard in shards)
            {
                using var one = SafetensorsCheckpoint.Open(shard);
                (one.TotalDataBytes <= limit || one.TensorNames.Count == 1).Should().BeTrue();
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    [Fact]
    public void LazyWriterDisposesProducedTensorsAndChecksThem()
    {
        using var tmp = new TempDir();
        var specs = new[]
        {
            new SafetensorsTensorSpec("a", ScalarType.Float16, new long[] { 3, 2 }),
            new SafetensorsTensorSpec("b", ScalarType.Float32, new long[] { 4 }),
        };
        var produced = new List<Tensor>();
        SafetensorsWriter.Write(tmp.File("lazy.safetensors"), specs, s =>
        {
            var t = arange(0, s.Shape.Aggregate(1L, (x, y) => x * y), dtype: s.DType).reshape(s.Shape);
            produced.Add(t);
            return t;
        });
        produced.Should().OnlyContain(t => t.IsInvalid, "the writer owns lazily produced tensors");
        using var ckpt = SafetensorsCheckpoint.Open(tmp.File("lazy.safetensors"));
        using var a = ckpt.GetTensor("a");
        a.to_type(ScalarType.Float32).data<float>().ToArray().Should().Equal(0, 1, 2, 3, 4, 5);

        FluentActions.Invoking(() => SafetensorsWriter.Write(tmp.File("bad.safetensors"), specs, s => zeros(new long[] { 1 }, dtype: s.DType)))
            .Should().Throw<ArgumentException>().WithMessage("*'a'*");
        File.Exists(tmp.File("bad.safetensors")).Should().BeFalse("a failed write leaves no file behind under the final name");
    }

    [Fact]
    public void WriterRejectsDuplicateAndReservedNames()
    {
        var specs = new[] { new SafetensorsTensorSpec("x", ScalarType.Float32, new long[] { 1 }), new SafetensorsTensorSpec("x", ScalarType.Float32, new long[] { 1 }) };
        FluentActions.Invoking(() => SafetensorsWriter.BuildHeader(specs, null)).Should().Throw<ArgumentException>().WithMessage("*'x'*twice*");
        FluentActions.Invoking(() => SafetensorsWriter.BuildHeader(new[] { new SafetensorsTensorSpec("__metadata__", ScalarType.Float32, new long[] { 1 }) }, null))
            .Should().Throw<ArgumentException>();
    }
}
