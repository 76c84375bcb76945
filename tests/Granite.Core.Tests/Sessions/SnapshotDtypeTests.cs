using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Tests.Modeling;
using Granite.Core.State;
using Xunit.Abstractions;

namespace Granite.Core.Tests.Sessions;

/// <summary>Accuracy of resuming from a stored snapshot, FP32 vs BF16 SSM state, against the FP32 golden session steps.</summary>
public sealed class SnapshotDtypeTests(ITestOutputHelper output)
{
    private static (double MaxAbs, float[][] Rows) ResumeSteps(GraniteModel model, GoldenSession s, SnapshotStateDtype dtype)
    {
        using var state = model.CreateState();
        var rows = new List<float[]>();
        using (var l0 = model.Forward(s.PrefixIds, state)) rows.Add(ModelParityTests.Floats(l0));
        using var snapshot = StateSnapshot.Capture(state, dtype);
        using var resumed = snapshot.Restore(model);
        resumed.Tokens.Should().Equal(s.PrefixIds);
        foreach (var id in s.ExtraIds)
        {
            using var l = model.Forward(new[] { id }, resumed);
            rows.Add(ModelParityTests.Floats(l));
        }
        double worst = 0;
        for (int j = 0; j < rows.Count; j++) worst = Math.Max(worst, Compare.Close(rows[j], s.StepLogits[j], 0, 0).MaxAbs);
        return (worst, rows.ToArray());
    }

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-dense")]
    public void Fp32SnapshotResumesWithinGoldenToleranceAndBf16IsMeasured(string fixture)
    {
        GraniteRuntime.EnsureLoaded();
        var g = Golden.Load(fixture);
        using var model = GraniteModel.Load(g.Dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 });
        var (fp32, fpRows) = ResumeSteps(model, g.Session, SnapshotStateDtype.Float32);
        var (bf16, bfRows) = ResumeSteps(model, g.Session, SnapshotStateDtype.BFloat16);
        output.WriteLine($"{fixture}: resume from snapshot, max |Δlogit| vs FP32 golden over {fpRows.Length} steps: FP32 state {fp32:E2}, BF16 state {bf16:E2}");
        for (int j = 0; j < fpRows.Length; j++)
            Compare.ShouldBeClose(fpRows[j], g.Session.StepLogits[j], g.LogitsAtol, g.LogitsRtol, $"FP32 snapshot step {j}");
        bf16.Should().BeGreaterThan(fp32, "rounding the SSM state to BF16 perturbs the following steps");
        bf16.Should().BeLessThan(0.05, "BF16 state keeps 8 mantissa bits: the perturbation stays small");
        int agree = Enumerable.Range(0, bfRows.Length).Count(j => Compare.Argmax(bfRows[j]) == g.Session.StepArgmax[j]);
        output.WriteLine($"{fixture}: BF16-state argmax agreement {agree}/{bfRows.Length}");
    }

    [Fact]
    public void Bf16SnapshotHalvesTheSsmBytes()
    {
        GraniteRuntime.EnsureLoaded();
        var g = Golden.Load("tiny-h-moe");
        using var model = GraniteModel.Load(g.Dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 });
        using var state = model.CreateState();
        model.Forward(g.Session.PrefixIds, state).Dispose();
        using var fp = StateSnapshot.Capture(state, SnapshotStateDtype.Float32);
        using var bf = StateSnapshot.Capture(state, SnapshotStateDtype.BFloat16);
        var c = model.Config;
        long ssm = (long)c.LayerTypes.Count(t => t == LayerKind.Mamba) * c.MambaNHeads * c.MambaDHead * c.MambaDState;
        (fp.ByteSize - bf.ByteSize).Should().Be(ssm * 2);
        // Snapshots hold KV trimmed to the length, not the working state's capacity.
        fp.ByteSize.Should().BeLessThan(state.ByteSize);
        long kv = (long)c.LayerTypes.Count(t => t == LayerKind.Attention) * 2 * c.NumKeyValueHeads * c.HeadDim * g.Session.PrefixIds.Length * 4;
        long conv = (long)c.LayerTypes.Count(t => t == LayerKind.Mamba) * c.MambaConvDim * c.MambaDConv * 4;
        fp.ByteSize.Should().Be(kv + conv + ssm * 4);
    }

    [Fact]
    public void SnapshotFileRoundTripsBitForBit()
    {
        GraniteRuntime.EnsureLoaded();
        var g = Golden.Load("tiny-h-moe");
        using var model = GraniteModel.Load(g.Dir, new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 });
        using var state = model.CreateState();
        model.Forward(g.Session.PrefixIds, state).Dispose();
        using var snap = StateSnapshot.Capture(state);
        var path = Path.Combine(Path.GetTempPath(), $"granite-snap-{Guid.NewGuid():N}.gstate");
        try
        {
            long len = snap.WriteTo(path);
            len.Should().BeGreaterThan(snap.ByteSize);
            using var back = StateSnapshot.ReadFrom(path, TorchSharp.torch.CPU);
            back.Tokens.Should().Equal(snap.Tokens);
            back.ByteSize.Should().Be(snap.ByteSize);
            using var a = snap.Restore(model);
            using var b = back.Restore(model);
            using var la = model.Forward(g.Session.ExtraIds, a, allPositions: true);
            using var lb = model.Forward(g.Session.ExtraIds, b, allPositions: true);
            ModelParityTests.Floats(la).Should().Equal(ModelParityTests.Floats(lb));

            File.WriteAllBytes(path, File.ReadAllBytes(path)[..(int)(len / 2)]);
            var act = () => StateSnapshot.ReadFrom(path, TorchSharp.torch.CPU);
            act.Should().Throw<InvalidDataException>().WithMessage("*truncated*");
            File.WriteAllText(path, "not a snapshot");
            act.Should().Throw<InvalidDataException>().WithMessage("*not a Granite session snapshot*");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
