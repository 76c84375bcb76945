using Granite.Core.Diagnostics;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.State;
using static TorchSharp.torch;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary>
    /// <c>granite bench --profile</c>: where the time of one batched decode step goes, at K = 1 and K = <paramref name="k"/>,
    /// in interleaved rounds (K=1, K, K=1, K) of <paramref name="steps"/> steps each. Each sequence is prefilled with its own
    /// random prompt, then every step is <c>GraniteModel.ForwardBatch</c> on all K plus one greedy <see cref="Sampler"/>
    /// per row; parts are timed by <see cref="StepProfile"/> (medians over the steps), with the experts a layer touches and
    /// the TorchSharp tensors created per step. Next to it: the weight and state bytes the step reads and the time that
    /// takes at <paramref name="gemvGbps"/> (the GEMV bandwidth measured in the same run), for random routing's expected
    /// expert union E·(1 − (1 − k/E)^K) and for the union measured.
    /// </summary>
    private static Dictionary<string, object?> ProfileDecode(GraniteModel model, int k, int promptTokens, int steps, double gemvGbps)
    {
        var sizes = new List<int> { 1 };
        if (k > 1) sizes.Add(k);
        var runs = new Dictionary<int, List<StepProfile>>();
        for (int round = 0; round < 2; round++)
            foreach (int size in sizes)
            {
                if (!runs.TryGetValue(size, out var list)) runs[size] = list = new List<StepProfile>();
                list.Add(ProfileRun(model, size, promptTokens, steps, seed: 100 * round + size));
            }
        var report = new Dictionary<string, object?>();
        foreach (int size in sizes) report[$"k{size}"] = ProfileSummary(model, size, runs[size], gemvGbps);
        if (k > 1)
        {
            double Step(int size) => (double)((Dictionary<string, object?>)report[$"k{size}"]!)["step_ms_p50"]!;
            report["step_ms_ratio"] = Math.Round(Step(k) / Step(1), 3);
            report["aggregate_tokens_per_s_ratio"] = Math.Round(k * Step(1) / Step(k), 3);
        }
        return report;
    }

    /// <summary>K sequences prefilled, two warm-up steps, then <paramref name="steps"/> profiled steps.</summary>
    private static StepProfile ProfileRun(GraniteModel model, int k, int promptTokens, int steps, int seed)
    {
        var c = model.Config;
        var rng = new Random(seed);
        var states = new InferenceState[k];
        var samplers = new Sampler[k];
        var contexts = new List<int>[k];
        var next = new int[k];
        try
        {
            for (int b = 0; b < k; b++)
            {
                var prompt = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(0, Math.Min(c.VocabSize, 100000))).ToArray();
                states[b] = model.CreateState();
                samplers[b] = new Sampler(new SamplingOptions());
                contexts[b] = prompt.ToList();
                using var scope = NewDisposeScope();
                next[b] = samplers[b].Next(model.Forward(prompt, states[b]), contexts[b], promptTokens);
            }
            var profile = new StepProfile();
            StepProfile.Install(profile);
            try
            {
                for (int s = 0; s < steps + 2; s++)
                {
                    if (s == 2) profile.Reset();                                        // warm-up steps dropped
                    using var scope = NewDisposeScope();
                    using (StepProfile.Begin("step"))
                    {
                        var logits = model.ForwardBatch(next, states);
                        using var sample = StepProfile.Begin("sample");
                        for (int b = 0; b < k; b++)
                        {
                            contexts[b].Add(next[b]);
                            next[b] = samplers[b].Next(logits[b], contexts[b], promptTokens);
                        }
                    }
                    profile.EndStep();
                }
            }
            finally
            {
                StepProfile.Install(null);
            }
            return profile;
        }
        finally
        {
            foreach (var s in states) s?.Dispose();
            foreach (var s in samplers) s?.Dispose();
        }
    }

    private static Dictionary<string, object?> ProfileSummary(GraniteModel model, int k, List<StepProfile> runs, double gemvGbps)
    {
        // Medians per part pooled over the rounds (each round's median, then the median of those).
        var parts = runs.SelectMany(r => r.MedianMilliseconds().Keys).Distinct().Order(StringComparer.Ordinal).ToArray();
        var ms = parts.ToDictionary(p => p, p => Median(runs.Select(r => r.MedianMilliseconds().GetValueOrDefault(p)).ToArray()));
        var counts = runs.SelectMany(r => r.MeanCounts().Keys).Distinct().ToDictionary(n => n, n => runs.Average(r => r.MeanCounts().GetValueOrDefault(n)));
        double step = ms.GetValueOrDefault("step");
        double accounted = ms.Where(kv => kv.Key != "step").Sum(kv => kv.Value);
        var table = new SortedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (p, v) in ms) if (p != "step") table[p] = Math.Round(v, 3);
        table["other (step − parts)"] = Math.Round(step - accounted, 3);
        var cpu = parts.ToDictionary(p => p, p => Median(runs.Select(r => r.MedianCpuMilliseconds().GetValueOrDefault(p)).ToArray()));
        var cpuTable = new SortedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (p, v) in cpu) if (p != "step") cpuTable[p] = Math.Round(v, 3);
        cpuTable["other (step − parts)"] = Math.Round(cpu.GetValueOrDefault("step") - cpu.Where(kv => kv.Key != "step").Sum(kv => kv.Value), 3);

        var c = model.Config;
        long elem = model.WeightDtype == ScalarType.Float32 ? 4 : 2;
        long expertParams = 0, nonExpertParams = 0;
        foreach (var (name, p) in model.Module.named_parameters())
        {
            if (name.Contains("block_sparse_moe.input_linear", StringComparison.Ordinal) || name.Contains("block_sparse_moe.output_linear", StringComparison.Ordinal))
                expertParams += p.numel();
            else nonExpertParams += p.numel();
        }
        // A tied head reads the whole embedding; an untied model reads one embedding row per token and the whole lm_head.
        if (!c.TieWordEmbeddings) nonExpertParams -= (long)c.VocabSize * c.HiddenSize;
        int moeLayers = c.IsMoe ? c.NumHiddenLayers : 0;
        double perExpertBytes = c.IsMoe ? (double)expertParams * elem / (moeLayers * c.NumLocalExperts) : 0;
        double measuredUnion = moeLayers > 0 && counts.TryGetValue("moe.layers", out var layersSeen) && layersSeen > 0
            ? counts["moe.active_experts"] / layersSeen : 0;
        double expectedUnion = c.IsMoe ? c.NumLocalExperts * (1 - Math.Pow(1 - (double)c.NumExpertsPerTok / c.NumLocalExperts, k)) : 0;
        // Per sequence and Mamba layer: the float32 SSM state is read and written once; the conv window is negligible.
        double stateBytes = (double)k * c.MambaLayerCount * c.MambaNHeads * c.MambaDHead * c.MambaDState * 4 * 2;
        double Bytes(double union) => nonExpertParams * elem + moeLayers * union * perExpertBytes + stateBytes;
        double BoundMs(double union) => Bytes(union) / (gemvGbps * 1e9) * 1000;
        return new Dictionary<string, object?>
        {
            ["k"] = k,
            ["steps"] = runs.Sum(r => r.Steps),
            ["step_ms_p50"] = Math.Round(step, 3),
            ["aggregate_tokens_per_s"] = Math.Round(k * 1000 / step, 2),
            ["parts_ms_p50"] = table,
            ["step_cpu_ms_p50"] = Math.Round(cpu.GetValueOrDefault("step"), 3),
            ["parts_cpu_ms_p50"] = cpuTable,
            ["active_experts_per_layer"] = Math.Round(measuredUnion, 2),
            ["expected_expert_union_random_routing"] = Math.Round(expectedUnion, 2),
            ["torch_tensors_created_per_step"] = Math.Round(counts.GetValueOrDefault("torch_tensors_created"), 1),
            ["bytes_read_per_step_measured_union"] = (long)Bytes(measuredUnion),
            ["bytes_read_per_step_expected_union"] = (long)Bytes(expectedUnion),
            ["bytes_bound_ms_measured_union"] = Math.Round(BoundMs(measuredUnion), 2),
            ["bytes_bound_ms_expected_union"] = Math.Round(BoundMs(expectedUnion), 2),
            ["bytes_bound_aggregate_tokens_per_s"] = Math.Round(k * 1000 / BoundMs(measuredUnion), 2),
            ["step_fraction_of_bytes_bound"] = Math.Round(BoundMs(measuredUnion) / step, 3),
        };
    }
}
