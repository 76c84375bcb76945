using System.Diagnostics.Metrics;
using Granite.Core.Experts;
using Granite.Core.Kernels;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Experts;

/// <summary>Expert offload on the MoE fixtures: bit-identical logits at every budget, sessions, guards, metrics.</summary>
// Bit-identity needs one LibTorch thread setting for the whole comparison (Threads at load sets it process-wide), so
// these tests must not run beside other model tests.
[Collection(NonParallelCollection.Name)]
public class ExpertOffloadModelTests
{
    private readonly ITestOutputHelper _out;

    public ExpertOffloadModelTests(ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    public static readonly string[] Fixtures = { "tiny-h-moe", "tiny-h-moe-sharded" };

    /// <summary>Budgets as (label, options); the fixtures have 8 experts per layer, top-2, 6 layers.</summary>
    private static ExpertOffloadOptions Budget(string label, WeightDtypePolicy policy, string fixture)
    {
        var c = Granite.Core.Configuration.GraniteConfig.Load(Golden.FixtureDir(fixture));
        long eb = ExpertOffloadPlan.BytesPerExpert(c, policy == WeightDtypePolicy.Float32 ? ScalarType.Float32 : ScalarType.BFloat16);
        return label switch
        {
            "all" => ExpertOffloadOptions.WithFraction(1.0),
            "one-per-layer" => ExpertOffloadOptions.WithBudget(eb * c.NumHiddenLayers),
            "top-k" => ExpertOffloadOptions.WithBudget(eb * c.NumHiddenLayers * c.NumExpertsPerTok),
            "3-per-layer" => new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 3 },
            "50%" => ExpertOffloadOptions.WithFraction(0.5),
            "75%-lru" => new ExpertOffloadOptions { Enabled = true, BudgetFraction = 0.75, Policy = ExpertEvictionPolicy.Lru },
            "one-lru" => new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 1, Policy = ExpertEvictionPolicy.Lru },
            "3-lru" => new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 3, Policy = ExpertEvictionPolicy.Lru },
            _ => throw new ArgumentException(label),
        };
    }

    public static IEnumerable<object[]> BudgetData =>
        from f in Fixtures
        from p in new[] { WeightDtypePolicy.Float32, WeightDtypePolicy.AsStored }
        from b in new[] { "all", "one-per-layer", "top-k", "3-per-layer", "50%", "75%-lru", "one-lru", "3-lru" }
        select new object[] { f, p, b };

    // The BF16 prefill GEMM is chosen per model by a timing probe (Bf16GemmProbe) on AVX512-BF16 CPUs; under load two
    // models can choose differently, so both sides of a comparison fix the same choice.
    private static GraniteModel Load(string fixture, WeightDtypePolicy policy, ExpertOffloadOptions offload) =>
        GraniteModel.Load(Golden.FixtureDir(fixture), new GraniteModelOptions
        {
            WeightDtype = policy, Threads = 1, ExpertOffload = offload, KernelTuning = new KernelTuning { Bf16Gemm = Bf16GemmMode.Native },
        });

    private static float[] Floats(Tensor t) => t.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();

    /// <summary>All-position logits of every golden case, then a session: prefix then one token at a time.</summary>
    private static List<float[]> Run(GraniteModel model, Golden g)
    {
        var outputs = new List<float[]>();
        foreach (var c in g.Cases)
        {
            using var state = model.CreateState();
            using var logits = model.Forward(c.InputIds, state, allPositions: true);
            outputs.Add(Floats(logits));
        }
        using var s = model.CreateState();
        using (var l = model.Forward(g.Session.PrefixIds, s)) outputs.Add(Floats(l));
        foreach (var id in g.Session.ExtraIds)
        {
            using var l = model.Forward(new[] { id }, s);
            outputs.Add(Floats(l));
        }
        return outputs;
    }

    [Theory]
    [MemberData(nameof(BudgetData))]
    public void LogitsAreBitIdenticalWithOffloadOff(string fixture, WeightDtypePolicy policy, string budget)
    {
        var g = Golden.Load(fixture);
        List<float[]> expected, actual;
        using (var off = Load(fixture, policy, ExpertOffloadOptions.Off)) expected = Run(off, g);
        var options = Budget(budget, policy, fixture);
        using var on = Load(fixture, policy, options);
        on.Experts.Should().NotBeNull();
        actual = Run(on, g);
        actual.Should().HaveCount(expected.Count);
        for (int i = 0; i < expected.Count; i++)
            actual[i].Should().Equal(expected[i], $"output {i} ({fixture}, {policy}, budget {budget}) must be bit-identical");
        var stats = on.Experts!.Statistics();
        _out.WriteLine($"{fixture} {policy} {budget}: capacity {stats[0].Capacity}/layer, hits {stats.Sum(s => s.Hits)}, misses {stats.Sum(s => s.Misses)}, streamed {stats.Sum(s => s.Streamed)}, evictions {stats.Sum(s => s.Evictions)}, resident {on.Experts.ResidentBytes:N0} B");
        stats.Should().OnlyContain(s => s.ResidentExperts <= s.Capacity && s.Hits + s.Misses > 0);
        on.Experts.ResidentBytes.Should().BeLessThanOrEqualTo(on.Experts.Plan.MaxResidentBytes);
        if (stats[0].Capacity < on.Config.NumLocalExperts) stats.Sum(s => s.Evictions + s.Streamed).Should().BePositive("a partial budget must evict or stream on these inputs");
    }

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void OffloadedLogitsMatchTheGoldens(string fixture)
    {
        var g = Golden.Load(fixture);
        using var model = Load(fixture, WeightDtypePolicy.Float32, ExpertOffloadOptions.WithBudget(ExpertOffloadPlan.BytesPerExpert(Granite.Core.Configuration.GraniteConfig.Load(g.Dir), ScalarType.Float32) * 6));
        foreach (var c in g.Cases)
        {
            using var state = model.CreateState();
            using var logits = model.Forward(c.InputIds, state);
            Compare.ShouldBeClose(Floats(logits), c.LastLogits, g.LogitsAtol, g.LogitsRtol, $"{fixture}/{c.Name}");
        }
    }

    public static IEnumerable<object[]> FixtureNames => Fixtures.Select(f => new object[] { f });

    [Fact]
    public void ExpertsStayMappedAndOnlyTheHotSetIsMaterialised()
    {
        var dir = Golden.FixtureDir("tiny-h-moe");
        using var model = Load("tiny-h-moe", WeightDtypePolicy.Float32, new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 2 });
        // Fused expert parameters are shape-only (meta); everything else is a real CPU parameter.
        foreach (var (name, p) in model.Module.named_parameters())
            (p.device_type == DeviceType.META).Should().Be(ExpertStore.IsExpertWeight(name), name);
        using (var off = Load("tiny-h-moe", WeightDtypePolicy.Float32, ExpertOffloadOptions.Off))
            model.LoadReport.ParameterCount.Should().Be(off.LoadReport.ParameterCount);
        // The mapped tier points into the memory-mapped file, in the stored dtype (BF16) — nothing copied.
        var file = Path.GetFullPath(Path.Combine(dir, "model.safetensors"));
        var cache = model.Experts!.Layer(3);
        cache.MappedInput.dtype.Should().Be(ScalarType.BFloat16);
        using (var ckpt = SafetensorsCheckpoint.Open(dir))
        {
            var info = ckpt.GetInfo(ExpertStore.InputName(3));
            var outInfo = ckpt.GetInfo(ExpertStore.OutputName(3));
            MappedFileOf(TorchNative.DataPointer(cache.MappedInput)).Should().Be((file, info.DataOffset));
            MappedFileOf(TorchNative.DataPointer(cache.MappedOutput)).Should().Be((file, outInfo.DataOffset));
        }
        model.Experts.ResidentBytes.Should().Be(0, "nothing is materialised before the first forward");
        Enumerable.Range(0, 8).Select(e => model.Experts.Layer(0).TierOf(e)).Should().OnlyContain(t => t == ExpertTier.Mapped);
        using var state = model.CreateState();
        using (model.Forward(new[] { 1, 2, 3 }, state)) { }
        using (model.Forward(new[] { 4 }, state)) { }
        var stats = model.Experts.Statistics();
        stats.Should().OnlyContain(s => s.ResidentExperts == 2 && s.ResidentBytes == 2 * 3L * 32 * 64 * 4);
        model.Experts.Layer(0).ResidentExperts().Should().OnlyContain(e => model.Experts.Layer(0).TierOf(e) == ExpertTier.Resident);
    }

    /// <summary>The file and file offset that an address maps (from /proc/self/maps), or (null, −1).</summary>
    private static (string? File, long Offset) MappedFileOf(IntPtr address)
    {
        ulong a = (ulong)address.ToInt64();
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            var range = parts[0].Split('-');
            ulong lo = Convert.ToUInt64(range[0], 16), hi = Convert.ToUInt64(range[1], 16);
            if (a < lo || a >= hi) continue;
            long off = Convert.ToInt64(parts[2], 16);
            return (parts.Length > 5 ? parts[5].Trim() : null, off + (long)(a - lo));
        }
        return (null, -1);
    }

    [Fact]
    public void InterleavedSessionsRoutingToDifferentExpertsMatchOffloadOff()
    {
        var g = Golden.Load("tiny-h-moe");
        var a = g.Cases[0].InputIds;
        var b = g.Cases[^1].InputIds;
        List<float[]> Interleave(GraniteModel m)
        {
            var outs = new List<float[]>();
            using var sa = m.CreateState();
            using var sb = m.CreateState();
            for (int i = 0; i < Math.Max(a.Length, b.Length); i++)
            {
                if (i < a.Length) using (var l = m.Forward(new[] { a[i] }, sa)) outs.Add(Floats(l));
                if (i < b.Length) using (var l = m.Forward(new[] { b[i] }, sb)) outs.Add(Floats(l));
            }
            return outs;
        }
        List<float[]> expected;
        using (var off = Load("tiny-h-moe", WeightDtypePolicy.Float32, ExpertOffloadOptions.Off)) expected = Interleave(off);
        using var on = Load("tiny-h-moe", WeightDtypePolicy.Float32, new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 2 });
        var actual = Interleave(on);
        for (int i = 0; i < expected.Count; i++) actual[i].Should().Equal(expected[i], $"step {i}");
        on.Experts!.Statistics().Sum(s => s.Evictions + s.Streamed).Should().BePositive();
    }

    [Fact]
    public void ConcurrentSessionsOnSeparateThreadsMatchOffloadOff()
    {
        var g = Golden.Load("tiny-h-moe");
        var prompts = g.Cases.Select(c => c.InputIds).Take(4).ToArray();
        float[][] expected;
        using (var off = Load("tiny-h-moe", WeightDtypePolicy.Float32, ExpertOffloadOptions.Off))
            expected = prompts.Select(p => Decode(off, p)).ToArray();
        using var on = Load("tiny-h-moe", WeightDtypePolicy.Float32, new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 2 });
        var actual = new float[prompts.Length][];
        var threads = Enumerable.Range(0, prompts.Length).Select(i => new Thread(() =>
        {
            for (int r = 0; r < 3; r++) actual[i] = Decode(on, prompts[i]);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int i = 0; i < prompts.Length; i++) actual[i].Should().Equal(expected[i], $"prompt {i}");
    }

    /// <summary>Feeds a prompt one token at a time; returns the concatenated logits.</summary>
    private static float[] Decode(GraniteModel m, int[] ids)
    {
        using var scope = torch.NewDisposeScope();
        using var s = m.CreateState();
        var all = new List<float>();
        foreach (var id in ids)
            using (var l = m.Forward(new[] { id }, s)) all.AddRange(Floats(l));
        return all.ToArray();
    }

    [Theory]
    [InlineData(1000L)]
    [InlineData(6L * 3 * 32 * 64 * 4 - 1)]
    public void BudgetBelowOneExpertPerLayerIsRejected(long bytes)
    {
        var act = () => Load("tiny-h-moe", WeightDtypePolicy.Float32, ExpertOffloadOptions.WithBudget(bytes));
        act.Should().Throw<ArgumentException>().WithMessage("*below one resident expert per layer*at least 6 layers × 24,576 bytes = 147,456 bytes*");
    }

    [Fact]
    public void InvalidOptionsAreRejectedNamingTheProperty()
    {
        var act = () => Load("tiny-h-moe", WeightDtypePolicy.Float32, new ExpertOffloadOptions { Enabled = true, BudgetFraction = 1.5 });
        act.Should().Throw<ArgumentException>().WithMessage("*BudgetFraction*");
        act = () => Load("tiny-h-moe", WeightDtypePolicy.Float32, new ExpertOffloadOptions { Enabled = true, LfuDecay = 0 });
        act.Should().Throw<ArgumentException>().WithMessage("*LfuDecay*");
    }

    [Fact]
    public void DenseModelsIgnoreTheOption()
    {
        using var model = GraniteModel.Load(Golden.FixtureDir("tiny-h-dense"), new GraniteModelOptions { ExpertOffload = ExpertOffloadOptions.WithFraction(0.25) });
        model.Experts.Should().BeNull();
    }

    [Fact]
    public void MetricsReportHitsMissesFetchedAndResidentBytes()
    {
        using var model = Load("tiny-h-moe", WeightDtypePolicy.Float32, new ExpertOffloadOptions { Enabled = true, MaxResidentExpertsPerLayer = 2 });
        var store = model.Experts!;
        int storeId = store.Layer(0).StoreId;
        var sums = new Dictionary<string, long>();
        var resident = new Dictionary<int, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Name == ExpertMetrics.MeterName) l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<long>((inst, value, tags, _) =>
        {
            int layer = -1, id = -1;
            foreach (var t in tags)
            {
                if (t.Key == "layer") layer = (int)t.Value!;
                if (t.Key == "store") id = (int)t.Value!;
            }
            if (id != storeId) return;
            lock (sums)
            {
                if (inst.Name == "granite.experts.resident_bytes") resident[layer] = value;
                else sums[inst.Name] = sums.GetValueOrDefault(inst.Name) + value;
            }
        });
        listener.Start();
        using var state = model.CreateState();
        foreach (var id in Golden.Load("tiny-h-moe").Cases[^1].InputIds)
            using (model.Forward(new[] { id }, state)) { }
        listener.RecordObservableInstruments();
        var stats = store.Statistics();
        sums["granite.experts.hits"].Should().Be(stats.Sum(s => s.Hits)).And.BePositive();
        sums["granite.experts.misses"].Should().Be(stats.Sum(s => s.Misses)).And.BePositive();
        sums["granite.experts.fetched_bytes"].Should().Be(stats.Sum(s => s.FetchedBytes)).And.Be(stats.Sum(s => s.Misses) * 24576);
        sums["granite.experts.evictions"].Should().Be(stats.Sum(s => s.Evictions));
        resident.Should().HaveCount(6);
        resident.Values.Should().OnlyContain(v => v == 2 * 24576);
    }
}
