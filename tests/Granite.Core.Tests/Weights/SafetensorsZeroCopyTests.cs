using System.Security.Cryptography;
using Granite.Core;
using Xunit.Abstractions;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Weights;

[Collection(NonParallelCollection.Name)]
public class SafetensorsZeroCopyTests
{
    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-moe-sharded")]
    [InlineData("tiny-dense")]
    public void TensorDataPointsIntoTheMappedFile(string fixture)
    {
        using var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir(fixture));
        foreach (var name in ckpt.TensorNames)
        {
            using var t = ckpt.GetTensor(name);
            TorchNative.DataPointer(t).Should().Be(ckpt.MappedAddressOf(name), name);
        }
    }

    private readonly ITestOutputHelper _out;

    public SafetensorsZeroCopyTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    [Fact]
    public void Mapping512MiBBarelyGrowsRssAndValuesAreRight()
    {
        using var tmp = new TempDir();
        const int count = 8;
        const long rows = 8192, cols = 4096; // 32 Mi BF16 elements = 64 MiB per tensor, 512 MiB in all
        var specs = Enumerable.Range(0, count).Select(i => new SafetensorsTensorSpec($"w{i}", ScalarType.BFloat16, new[] { rows, cols })).ToList();
        var path = tmp.File("big.safetensors");
        float Value(int i) => 0.5f * (i + 1); // exact in BF16
        SafetensorsWriter.Write(path, specs, s =>
        {
            int i = int.Parse(s.Name[1..]);
            var t = full(s.Shape, Value(i), dtype: ScalarType.BFloat16);
            t[i, i] = tensor(100f);
            return t;
        });
        new FileInfo(path).Length.Should().BeGreaterThan(512L * 1024 * 1024);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        long before = ProcessMemory.ReadRssKiB();
        using var ckpt = SafetensorsCheckpoint.Open(path);
        var tensors = specs.Select(s => ckpt.GetTensor(s.Name)).ToList();
        long after = ProcessMemory.ReadRssKiB();
        _out.WriteLine($"VmRSS before open {before} KiB, after open + 8 GetTensor {after} KiB (+{after - before} KiB) for a {new FileInfo(path).Length >> 20} MiB file");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            // A copying reader would add 512 MiB; mapping plus header parsing costs a few MiB at most.
            (after - before).Should().BeLessThan(48 * 1024, "mapping must not copy or touch the 512 MiB of data");
            using var scope = NewDisposeScope();
            for (int i = 0; i < count; i++)
            {
                tensors[i].shape.Should().Equal(rows, cols);
                tensors[i][i, i].to_type(ScalarType.Float32).item<float>().Should().Be(100f);
                tensors[i][rows - 1, cols - 1].to_type(ScalarType.Float32).item<float>().Should().Be(Value(i));
            }
            using (var s = tensors[count - 1].sum(ScalarType.Float64))
                s.item<double>().Should().Be((rows * cols - 1) * (double)Value(count - 1) + 100);
            _out.WriteLine($"checking values (one full 64 MiB sum) through the mapping: {sw.ElapsedMilliseconds} ms; VmRSS now {ProcessMemory.ReadRssKiB()} KiB");
        }
        finally
        {
            foreach (var t in tensors) t.Dispose();
        }
    }

    [Fact]
    public void InPlaceWritesNeverReachTheFile()
    {
        using var tmp = new TempDir();
        var path = tmp.File("model.safetensors");
        using (var a = arange(0, 64, dtype: ScalarType.Float32).reshape(8, 8))
            SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a });
        var hash = SHA256.HashData(File.ReadAllBytes(path));

        using (var ckpt = SafetensorsCheckpoint.Open(tmp.Path))
        using (var t = ckpt.GetTensor("a"))
        {
            t.add_(1000f); // forbidden by contract, but must neither crash nor corrupt the file
            t[0, 0].item<float>().Should().Be(1000f);
        }
        SHA256.HashData(File.ReadAllBytes(path)).Should().Equal(hash);
        using (var again = SafetensorsCheckpoint.Open(tmp.Path))
        using (var t = again.GetTensor("a"))
            t[7, 7].item<float>().Should().Be(63f);
    }

    [Fact]
    public void TensorsOutliveTheCheckpointThenReleaseTheMapping()
    {
        var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe-sharded"));
        var first = ckpt.TensorNames.First(n => ckpt.GetInfo(n).FilePath.EndsWith("00001-of-00003.safetensors", StringComparison.Ordinal));
        byte[] expected, expectedRow0;
        using (var original = ckpt.GetTensor(first))
        {
            expected = original.bytes.ToArray();
            using var row0 = original.narrow(0, 0, 1);
            expectedRow0 = row0.bytes.ToArray();
        }
        var kept = ckpt.GetTensor(first);
        ckpt.MappedFileCount.Should().Be(3);

        ckpt.Dispose();
        ckpt.Invoking(c => c.GetTensor(first)).Should().Throw<ObjectDisposedException>();
        ckpt.MappedFileCount.Should().Be(1, "only the shard with a live tensor stays mapped");
        kept.bytes.ToArray().Should().Equal(expected, "the view is still valid after Dispose");
        using (var view = kept.narrow(0, 0, 1)) // a view shares the storage and keeps the mapping too
        {
            kept.Dispose();
            ckpt.MappedFileCount.Should().Be(1);
            view.bytes.ToArray().Should().Equal(expectedRow0);
        }
        ckpt.MappedFileCount.Should().Be(0, "freeing the last storage unmaps the file");
    }

    [Fact]
    public void MisalignedDataIsCopiedAndStillCorrect()
    {
        using var tmp = new TempDir();
        // F32 tensor starting at data offset 2: not 4-byte aligned in memory, so the reader must copy instead of viewing.
        var floats = new[] { 1.5f, -2.25f, 3.125f };
        var data = new byte[2 + 12];
        Buffer.BlockCopy(floats, 0, data, 2, 12);
        var header = """{"pad":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"x":{"dtype":"F32","shape":[3],"data_offsets":[2,14]}}""";
        // Make the data section start 8-byte aligned so offset 2 is really misaligned.
        header = header.PadRight((header.Length + 7) / 8 * 8);
        var path = RawSafetensors.Write(tmp.File("m.safetensors"), header, data);
        using var ckpt = SafetensorsCheckpoint.Open(path);
        using var x = ckpt.GetTensor("x");
        x.data<float>().ToArray().Should().Equal(floats);
        using var pad = ckpt.GetTensor("pad");
        pad.data<byte>().ToArray().Should().Equal(0, 0);
    }

    [Fact]
    public void GetTensorWithDtypeConvertsOnlyWhenNeeded()
    {
        using var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe"));
        using var same = ckpt.GetTensor("model.norm.weight", ScalarType.BFloat16);
        TorchNative.DataPointer(same).Should().Be(ckpt.MappedAddressOf("model.norm.weight"));
        using var f32 = ckpt.GetTensor("model.norm.weight", ScalarType.Float32);
        f32.dtype.Should().Be(ScalarType.Float32);
        using var back = f32.to_type(ScalarType.BFloat16);
        back.bytes.ToArray().Should().Equal(same.bytes.ToArray());
    }

    [Fact]
    public void ParameterBuiltFromAViewStaysZeroCopyAndKeepsTheMapping()
    {
        var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe"));
        const string name = "model.layers.0.mamba.out_proj.weight";
        var address = ckpt.MappedAddressOf(name);
        var p = new TorchSharp.Modules.Parameter(ckpt.GetTensor(name), requires_grad: false);
        TorchNative.DataPointer(p).Should().Be(address);
        ckpt.Dispose();
        ckpt.MappedFileCount.Should().Be(1);
        using (var x = ones(2, 128, dtype: ScalarType.BFloat16))
        using (var y = nn.functional.linear(x, p))
            y.shape.Should().Equal(2, 64);
        p.Dispose();
        ckpt.MappedFileCount.Should().Be(0);
    }

    [Fact]
    public void ConcurrentGetTensorAndDisposeKeepCountsExact()
    {
        var ckpt = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe-sharded"));
        var names = ckpt.TensorNames.ToArray();
        var threads = Enumerable.Range(0, 4).Select(k => new Thread(() =>
        {
            for (int i = 0; i < 1500; i++)
            {
                try
                {
                    using var t = ckpt.GetTensor(names[(i * 7 + k) % names.Length]);
                    _ = t.shape;
                }
                catch (ObjectDisposedException)
                {
                    return; // the checkpoint was disposed mid-loop: the only acceptable failure
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        Thread.Sleep(20);
        ckpt.Dispose();
        threads.ForEach(t => t.Join());
        ckpt.MappedFileCount.Should().Be(0, "every tensor was disposed, so every mapping is gone");
    }
}
