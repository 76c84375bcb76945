using Granite.Core.Kernels;
using Granite.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>The managed one-token attention against softmax(q·Kᵀ·scale)·V computed by LibTorch in float64.</summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class DecodeAttentionTests
{
    public DecodeAttentionTests() => GraniteRuntime.EnsureLoaded();

    [Theory]
    [InlineData(12, 4, 128, 1, KernelIsa.Avx2, false)]
    [InlineData(12, 4, 128, 37, KernelIsa.Avx2, true)]
    [InlineData(12, 4, 128, 300, KernelIsa.Avx512Bf16, true)]
    [InlineData(4, 4, 20, 9, KernelIsa.Avx2, true)]       // d not a multiple of 8: vector body + scalar tail
    [InlineData(6, 2, 16, 50, KernelIsa.Scalar, true)]
    [InlineData(6, 2, 16, 50, KernelIsa.Scalar, false)]
    public void MatchesTheReferenceOnACacheView(int heads, int kvHeads, int d, int s, KernelIsa isa, bool bf16)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        // The cache is a view of the first s rows of a larger buffer, as AttentionLayerState hands it out.
        var kBuf = randn(new long[] { kvHeads, s + 7, d }, generator: g).to_type(dtype);
        var vBuf = randn(new long[] { kvHeads, s + 7, d }, generator: g).to_type(dtype);
        var keys = kBuf.narrow(1, 0, s);
        var values = vBuf.narrow(1, 0, s);
        var q = randn(new long[] { 1, heads, d }, generator: g);
        const double scale = 0.0883883;

        DecodeAttention.Supports(q, keys, values).Should().BeTrue();
        var o = DecodeAttention.Attend(isa, q, keys, values, scale);

        int r = heads / kvHeads;
        var k64 = keys.to_type(ScalarType.Float64).repeat_interleave(r, dim: 0);       // [heads, s, d]
        var v64 = values.to_type(ScalarType.Float64).repeat_interleave(r, dim: 0);
        // A BF16 cache rounds like LibTorch's BF16 path: q and the raw scores to BF16, the probabilities to BF16.
        Tensor Round(Tensor t) => bf16 ? t.to_type(ScalarType.BFloat16).to_type(ScalarType.Float64) : t;
        var q64 = Round(q.to_type(ScalarType.Float64)).permute(1, 0, 2);                  // [heads, 1, d]
        var probs = Round(torch.nn.functional.softmax(Round(torch.matmul(q64, k64.transpose(1, 2))) * scale, -1));
        var expected = torch.matmul(probs, v64).reshape(1, (long)heads * d);

        o.dtype.Should().Be(ScalarType.Float32);
        o.shape.Should().Equal(1, (long)heads * d);
        (o.to_type(ScalarType.Float64) - expected).abs().max().item<double>().Should().BeLessThan(bf16 ? 2e-3 : 2e-5, "BF16 rounding of a score can flip at a tie: accumulation order differs");
    }

    [Fact]
    public void UnsupportedInputsAreDeclined()
    {
        using var scope = NewDisposeScope();
        var k = zeros(new long[] { 2, 5, 8 }, ScalarType.BFloat16);
        DecodeAttention.Supports(zeros(new long[] { 2, 4, 8 }), k, k).Should().BeFalse("more than one query row");
        DecodeAttention.Supports(zeros(new long[] { 1, 4, 8 }, ScalarType.BFloat16), k, k).Should().BeFalse("q must be float32");
        DecodeAttention.Supports(zeros(new long[] { 1, 3, 8 }), k, k).Should().BeFalse("heads not a multiple of KV heads");
        DecodeAttention.Supports(zeros(new long[] { 1, 4, 8 }), k, zeros(new long[] { 2, 5, 8 })).Should().BeFalse("dtypes differ");
        var strided = zeros(new long[] { 2, 8, 5 }, ScalarType.BFloat16).transpose(1, 2);
        DecodeAttention.Supports(zeros(new long[] { 1, 4, 8 }), strided, strided).Should().BeFalse("rows not contiguous");
        DecodeAttention.Supports(zeros(new long[] { 1, 4, 8 }), k, k).Should().BeTrue();
    }

    [Fact]
    public void DecodeThroughTheModelMatchesTheLibTorchPath()
    {
        // Same fixture, same tokens, 16 decode steps: the managed kernel vs the two LibTorch matmuls it replaces.
        var dir = Golden.FixtureDir("tiny-h-moe");
        using var managed = GraniteModel.Load(dir, new GraniteModelOptions { Threads = 1 });
        using var libtorch = GraniteModel.Load(dir, new GraniteModelOptions { Threads = 1, KernelTuning = new KernelTuning { ManagedDecodeAttention = false } });
        using var s1 = managed.CreateState();
        using var s2 = libtorch.CreateState();
        int[] tokens = { 1, 5, 9, 13, 2, 7, 40, 3, 22, 17, 8, 61, 4, 30, 11, 9, 19, 2, 5, 44 };
        using (NewDisposeScope())
        {
            managed.Forward(tokens.AsSpan(0, 4), s1);
            libtorch.Forward(tokens.AsSpan(0, 4), s2);
        }
        double worst = 0;
        for (int t = 4; t < tokens.Length; t++)
        {
            using var scope = NewDisposeScope();
            var a = managed.Forward(new[] { tokens[t] }, s1);
            var b = libtorch.Forward(new[] { tokens[t] }, s2);
            worst = Math.Max(worst, (a - b).abs().max().item<float>());
            a.argmax().item<long>().Should().Be(b.argmax().item<long>(), $"position {t}");
        }
        worst.Should().BeLessThan(1e-4, "the two paths round at the same points; only the accumulation order differs");
    }
}
