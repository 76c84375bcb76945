using System.Diagnostics;
using Granite.Core.Modeling;
using Granite.Core.State;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

[Collection(NonParallelCollection.Name)]
public class InferenceStateTests
{
    private readonly ITestOutputHelper _out;

    public InferenceStateTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    [Fact]
    public void CloneIsIndependentAndResumesExactly()
    {
        var g = Golden.Load("tiny-h-moe");
        var s = g.Session;
        using var model = ModelParityTests.LoadF32("tiny-h-moe");
        using var state = model.CreateState();
        model.Forward(s.PrefixIds, state).Dispose();
        using var snapshot = state.Clone();
        snapshot.Tokens.Should().Equal(s.PrefixIds);

        // Advance the original past the snapshot point.
        model.Forward(s.ExtraIds, state, allPositions: true).Dispose();
        state.Length.Should().Be(s.PrefixIds.Length + s.ExtraIds.Length);
        snapshot.Length.Should().Be(s.PrefixIds.Length);

        // The snapshot still continues exactly like the golden.
        for (int j = 0; j < 3; j++)
        {
            snapshot.Length.Should().Be(s.PrefixIds.Length + j);
            using var l = model.Forward(new[] { s.ExtraIds[j] }, snapshot);
            Compare.ShouldBeClose(ModelParityTests.Floats(l), s.StepLogits[j + 1], g.LogitsAtol, g.LogitsRtol, $"snapshot step {j + 1}");
        }
    }

    [Fact]
    public void ByteSizeCountsMambaStateAndKvCapacity()
    {
        using var model = ModelParityTests.LoadF32("tiny-h-moe");
        var c = model.Config;
        using var state = model.CreateState();
        state.ByteSize.Should().Be(c.MambaStateBytesPerSequence(4, 4));
        model.Forward(new[] { 1, 2, 3 }, state).Dispose();
        var kv = state.Attention.First(a => a is not null)!;
        kv.Capacity.Should().BeGreaterThanOrEqualTo(3);
        state.ByteSize.Should().Be(c.MambaStateBytesPerSequence(4, 4) + c.KvBytesPerToken(4) * kv.Capacity);
    }

    [Fact]
    public void GuardsRejectBadInputBeforeComputing()
    {
        using var model = ModelParityTests.LoadF32("tiny-h-dense");
        using var other = ModelParityTests.LoadF32("tiny-h-dense");
        using var state = model.CreateState();
        var tooLong = new int[model.Config.MaxPositionEmbeddings + 1];
        model.Invoking(m => m.Forward(tooLong, state)).Should().Throw<ArgumentException>().WithMessage("*max_position_embeddings (4096)*");
        model.Invoking(m => m.Forward(new[] { 1, model.Config.VocabSize }, state)).Should().Throw<ArgumentOutOfRangeException>().WithMessage("*544*index 1*");
        model.Invoking(m => m.Forward(new[] { -1 }, state)).Should().Throw<ArgumentOutOfRangeException>();
        model.Invoking(m => m.Forward(Array.Empty<int>(), state)).Should().Throw<ArgumentException>();
        using (var foreign = other.CreateState())
            model.Invoking(m => m.Forward(new[] { 1 }, foreign)).Should().Throw<ArgumentException>().WithMessage("*different model*");
        state.Length.Should().Be(0);

        // Filling up to the limit then one more token is rejected as well.
        model.Forward(new int[4095], state).Dispose();
        model.Invoking(m => m.Forward(new[] { 1, 2 }, state)).Should().Throw<ArgumentException>();
        state.Length.Should().Be(4095);
        state.Dispose();
        model.Invoking(m => m.Forward(new[] { 1 }, state)).Should().Throw<ObjectDisposedException>();
    }

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-dense")]
    public void LongDecodeDoesNotLeakTensorsOrMemory(string fixture)
    {
        using var model = ModelParityTests.LoadF32(fixture);
        using var state = model.CreateState();
        int tok;
        using (var l = model.Forward(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }, state))
        using (var am = l.argmax()) tok = (int)am.item<long>();
        long liveAt20 = 0, memAt20 = 0;
        var proc = Process.GetCurrentProcess();
        for (int step = 1; step <= 200; step++)
        {
            using (var l = model.Forward(new[] { tok }, state))
            using (var am = l.argmax()) tok = (int)am.item<long>();
            if (step == 20)
            {
                liveAt20 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
                proc.Refresh();
                memAt20 = proc.PrivateMemorySize64;
            }
        }
        long liveAt200 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        proc.Refresh();
        long memAt200 = proc.PrivateMemorySize64;
        _out.WriteLine($"{fixture}: live tensors {liveAt20} → {liveAt200}; private memory {memAt20 / 1048576.0:F1} → {memAt200 / 1048576.0:F1} MiB; state {state.ByteSize} B");
        state.Length.Should().Be(211);
        liveAt200.Should().Be(liveAt20, "every per-step tensor must be disposed (KV growth replaces its buffers)");
        (memAt200 - memAt20).Should().BeLessThan(64L << 20, "native memory must not grow with the number of decode steps beyond the KV cache");
    }
}
