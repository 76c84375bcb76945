using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Granite.Core.Configuration;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary>
    /// <c>granite bench</c>: prefill and decode throughput, peak RSS, and the decode bandwidth bound (active weight bytes per
    /// token ÷ GEMV bandwidth measured in the same run). <c>--synthetic h-tiny --layers N</c> writes an H-Tiny-shaped
    /// checkpoint with random BF16 weights (real widths and experts, N layers) to a temp folder first.
    /// </summary>
    private static Command BenchCommand()
    {
        var model = CliOptions.Model("checkpoint folder or GGUF file (give --model or --synthetic)");
        model.Required = false;
        var synthetic = CliOptions.Text("--synthetic", "h-tiny", "benchmark an H-Tiny-shaped checkpoint with random BF16 weights, written to a temp folder first");
        var layers = CliOptions.Int("--layers", "N", "layers of the --synthetic checkpoint", 4, min: 1);
        var promptTokens = CliOptions.Int("--prompt-tokens", "N", "prompt (prefill) tokens", 512, min: 1);
        var decodeTokens = CliOptions.Int("--decode-tokens", "N", "decoded tokens", 32, min: 1);
        var sessions = CliOptions.OptionalInt("--sessions", "K", "also run K concurrent generations through one engine (continuous batching)", min: 1, max: GraniteEngineOptions.MaxBatchSizeLimit);
        var chunk = CliOptions.Int("--prefill-chunk", "N", "prefill chunk tokens of the --sessions run", 256, min: 1);
        var json = CliOptions.Flag("--json", "print the report as one JSON object");
        var profile = CliOptions.Flag("--profile", "also break the decode steps down per part of the pass (ms, share, tensors created per step)");
        var load = new ModelLoadOptions("weight dtype; default: as stored");
        var tokenizer = CliOptions.Flag("--tokenizer", "benchmark the tokenizer of --model instead: encode/decode throughput on mixed text");
        var megabytes = CliOptions.Int("--megabytes", "N", "megabytes of text for --tokenizer", 1, min: 1);
        var command = new Command("bench", "prefill and decode tokens/s, peak RSS and the decode bandwidth bound measured in the same run")
        {
            model, synthetic, layers, promptTokens, decodeTokens, sessions, chunk, json, profile,
        };
        load.AddTo(command);
        command.Options.Add(tokenizer);
        command.Options.Add(megabytes);
        Option[] modelRunOnly = [synthetic, layers, promptTokens, decodeTokens, sessions, chunk, profile, .. load.All];
        command.Validators.Add(c =>
        {
            bool Given(Option o) => c.GetResult(o) is { Implicit: false };
            if (Given(tokenizer))
            {
                if (modelRunOnly.FirstOrDefault(Given) is { } o) c.AddError($"option {o.Name} does not apply to bench --tokenizer");
                else if (!Given(model)) c.AddError("option --model is required");
            }
            else if (Given(megabytes)) c.AddError("option --megabytes needs --tokenizer");
            else if (Given(model) == Given(synthetic)) c.AddError("give exactly one of --model or --synthetic");
        });
        command.SetAction(r =>
        {
            var output = r.InvocationConfiguration.Output;
            if (r.GetValue(tokenizer))
                return BenchTokenizer(ModelDir(r.GetRequiredValue(model)), r.GetValue(megabytes), r.GetValue(json), output);
            var dir = r.GetValue(model) is { } m ? ModelDir(m) : null;
            return Bench(dir, r.GetValue(synthetic), r.GetValue(layers), r.GetValue(promptTokens), r.GetValue(decodeTokens), r.GetValue(sessions),
                r.GetValue(chunk), r.GetValue(json), r.GetValue(profile), load.Read(r, WeightDtypePolicy.AsStored), output);
        });
        return command;
    }

    private static int Bench(string? dir, string? synthetic, int layers, int promptTokens, int decodeTokens, int? sessions, int chunk, bool json,
        bool profile, GraniteModelOptions options, TextWriter stdout)
    {
        string? temp = null;
        if (synthetic is not null)
        {
            if (synthetic != "h-tiny") throw new CliUsageException($"--synthetic supports 'h-tiny' (got '{synthetic}')");
            temp = Directory.CreateTempSubdirectory("granite-bench-").FullName;
            var cfg = GraniteConfigPresets.HTinyShaped(layers);
            GraniteCheckpointLayout.WriteConfig(temp, cfg);
            GraniteCheckpointLayout.WriteRandom(temp, cfg, ScalarType.BFloat16, seed: 42);
            dir = temp;
        }
        // Peak RSS should describe loading and running the model, not writing the synthetic checkpoint.
        long rssBeforeLoad = ResetPeakRss();
        try
        {
            using var model = GraniteModel.Load(dir!, options);
            var c = model.Config;
            if (promptTokens + decodeTokens + 1 > c.MaxPositionEmbeddings) throw new CliUsageException("prompt + decode tokens exceed the context limit");
            var rng = new Random(7);
            int[] prompt = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(0, Math.Min(c.VocabSize, 100000))).ToArray();

            // Warm-up: page in the weights and JIT the path.
            using (var warm = model.CreateState())
            using (NewDisposeScope()) { model.Forward(prompt.AsSpan(0, Math.Min(64, prompt.Length)), warm); model.Forward(new[] { 1 }, warm); }

            using var state = model.CreateState();
            var sw = Stopwatch.StartNew();
            int next;
            using (NewDisposeScope()) next = (int)model.Forward(prompt, state).argmax().item<long>();
            double prefillS = sw.Elapsed.TotalSeconds;
            // --profile: the decode steps below are also broken down per part (the diagnostics switch of the kernel seam).
            var prof = profile ? model.Kernels.EnableProfile() : null;
            prof?.Reset();
            sw.Restart();
            for (int i = 0; i < decodeTokens; i++)
            {
                using var scope = NewDisposeScope();
                next = (int)model.Forward(new[] { next }, state).argmax().item<long>();
            }
            double decodeS = sw.Elapsed.TotalSeconds;
            var decodeProfile = prof?.PerPass();

            // Memory before the bandwidth probe allocates its own weights.
            long peakRss = ReadStatus("VmHWM"), rssNow = ReadStatus("VmRSS"), rssFile = ReadStatus("RssFile"), rssAnon = ReadStatus("RssAnon");
            var (modelGbps, torchGbps) = MeasureGemvBandwidth(model);
            double gemvGbps = Math.Max(modelGbps, torchGbps); // the bound uses the best GEMV measured
            long elem = model.WeightDtype == ScalarType.Float32 ? 4 : 2;
            // Bytes read per decoded token: every active weight once, except the embedding (one row); a tied head reads it fully.
            long activeBytes = (c.ActiveParameterCount - (long)c.VocabSize * c.HiddenSize * (c.TieWordEmbeddings ? 0 : 1)) * elem;
            double boundTokS = gemvGbps * 1e9 / activeBytes;
            var report = new
            {
                model = synthetic is null ? Path.GetFullPath(dir!) : $"synthetic h-tiny, {layers} layers ({c.MambaLayerCount} mamba, {c.AttentionLayerCount} attention), random BF16",
                expert_offload = options.ExpertOffload.Enabled ? "on" : "off",
                resident_expert_bytes = model.Experts?.ResidentBytes,
                weight_dtype = model.WeightDtype.ToString(),
                quantized_format = model.LoadReport.QuantizedFormat,
                quantized_weight_bytes = model.LoadReport.QuantizedBytes,
                threads = get_num_threads(),
                kernel_path = model.KernelDescription,
                prompt_tokens = promptTokens,
                prefill_tokens_per_s = Math.Round(promptTokens / prefillS, 1),
                decode_tokens = decodeTokens,
                decode_tokens_per_s = Math.Round(decodeTokens / decodeS, 2),
                decode_ms_per_token = Math.Round(decodeS * 1000 / decodeTokens, 2),
                active_weight_bytes_per_token = activeBytes,
                gemv_bandwidth_gb_per_s = Math.Round(gemvGbps, 1),
                gemv_model_path_gb_per_s = Math.Round(modelGbps, 1),
                gemv_torch_linear_gb_per_s = Math.Round(torchGbps, 1),
                load_average = LoadAverage(),
                decode_bound_tokens_per_s = Math.Round(boundTokS, 2),
                decode_fraction_of_bound = Math.Round(decodeTokens / decodeS / boundTokS, 3),
                rss_before_load_bytes = rssBeforeLoad,
                peak_rss_bytes = peakRss,
                weight_file_bytes = Directory.EnumerateFiles(dir!, "*.safetensors").Sum(f => new FileInfo(f).Length),
                rss_bytes = rssNow,
                rss_file_bytes = rssFile,
                rss_anon_bytes = rssAnon,
            };
            var node = JsonSerializer.SerializeToNode(report, Json)!.AsObject();
            node["cpu_flags"] = CpuFlags();
            if (decodeProfile is not null)
            {
                double total = decodeProfile.Sum(p => p.Ms);
                node["decode_profile"] = JsonSerializer.SerializeToNode(decodeProfile.Where(p => p.Ms > 0 || p.Tensors > 0).Select(p => new
                {
                    part = p.Part.ToString(),
                    ms_per_step = Math.Round(p.Ms, 3),
                    share = Math.Round(p.Ms / total, 4),
                    tensors_per_step = Math.Round(p.Tensors, 1),
                    entries_per_step = Math.Round(p.Calls, 1),
                }).ToArray(), Json);
                node["decode_profile_tensors_per_step"] = Math.Round(decodeProfile.Sum(p => p.Tensors), 1);
            }
            Dictionary<string, object?>? batched = null;
            if (sessions is int k)
            {
                batched = BenchSessions(model, options, dir!, k, promptTokens, decodeTokens, chunk);
                foreach (var (key, value) in batched) node[key] = JsonSerializer.SerializeToNode(value, Json);
                node["load_average_after"] = LoadAverage();
            }
            if (json) stdout.WriteLine(node.ToJsonString(Json));
            else
            {
                stdout.WriteLine($"model      {report.model} ({report.weight_dtype}, {report.threads} threads)");
                stdout.WriteLine($"kernels    {report.kernel_path}");
                stdout.WriteLine($"prefill    {report.prefill_tokens_per_s} tokens/s ({promptTokens} tokens)");
                stdout.WriteLine($"decode     {report.decode_tokens_per_s} tokens/s ({report.decode_ms_per_token} ms/token)");
                stdout.WriteLine($"bound      {report.decode_bound_tokens_per_s} tokens/s = {activeBytes:N0} active bytes/token at {report.gemv_bandwidth_gb_per_s} GB/s GEMV (model path {report.gemv_model_path_gb_per_s}, torch F.linear {report.gemv_torch_linear_gb_per_s}); decode at {report.decode_fraction_of_bound:P0} of it");
                stdout.WriteLine($"machine    load average {report.load_average}; cpu flags {node["cpu_flags"]}");
                if (batched is not null)
                    stdout.WriteLine("sessions   " + string.Join(", ", batched.Select(kv => $"{kv.Key} {kv.Value}")));
                if (decodeProfile is not null)
                {
                    double total = decodeProfile.Sum(p => p.Ms);
                    foreach (var p in decodeProfile.Where(p => p.Ms > 0))
                        stdout.WriteLine($"profile    {p.Part,-22} {p.Ms,8:F3} ms/step {p.Ms / total,7:P1}  {p.Tensors,6:F1} tensors/step");
                }
                stdout.WriteLine($"memory     peak RSS {report.peak_rss_bytes / 1048576.0:F0} MiB (before load {rssBeforeLoad / 1048576.0:F0} MiB; weight files {report.weight_file_bytes / 1048576.0:F0} MiB); after decode: file-backed {rssFile / 1048576.0:F0} MiB, anonymous {rssAnon / 1048576.0:F0} MiB");
            }
            return 0;
        }
        finally
        {
            if (temp is not null) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>
    /// Bandwidth (GB/s of weight bytes) of decode-shaped GEMVs x[1,2048]·W[8192,2048]ᵀ cycling over 8 distinct weights
    /// (256 MiB in BF16, more than any CPU cache, as in a real decode step), for the model's weight dtype: the path the
    /// model uses (<c>GraniteKernels.Linear</c>; the managed kernel for BF16) and LibTorch's <c>F.linear</c>. Returns both.
    /// </summary>
    private static (double Model, double Torch) MeasureGemvBandwidth(GraniteModel m)
    {
        var dtype = m.WeightDtype;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ws = Enumerable.Range(0, 8).Select(_ => { using var r = randn(8192, 2048); return r.to_type(dtype, copy: true); }).ToArray();
        var x = randn(1, 2048);
        var xd = x.to_type(dtype);
        double Run(Func<Tensor, Tensor> f)
        {
            foreach (var w in ws) f(w).Dispose();
            double best = double.MaxValue;
            for (int rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                foreach (var w in ws) f(w).Dispose();
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return ws.Sum(w => w.numel() * w.element_size()) / best / 1e9;
        }
        double model = Run(w => m.Kernels.Linear(x, w));
        double torchGbps = Run(w => nn.functional.linear(xd, w));
        return (model, torchGbps);
    }

    /// <summary>Collects garbage and resets the kernel's peak-RSS mark; returns the RSS then.</summary>
    private static long ResetPeakRss() => Granite.Core.ProcStatus.ResetPeak();

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static long ReadStatus(string key) => Granite.Core.ProcStatus.Read(key);
}
