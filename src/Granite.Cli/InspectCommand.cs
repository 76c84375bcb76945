using System.CommandLine;
using System.Text.Json;
using Granite.Core.Configuration;
using Granite.Core.Weights;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    private static Command InspectCommand()
    {
        var model = CliOptions.Model();
        var json = CliOptions.Flag("--json", "print the report as one JSON object");
        var budget = CliOptions.ExpertBudget();
        var dtype = CliOptions.Dtype("load dtype of the memory plan; default: as stored (f16 as f32); q8_0 also loads the model both ways and reports the quantized bytes and the logit change on a short prompt");
        var command = new Command("inspect", "config summary, parameter counts, weight and state bytes, load memory plan; runs the load-time validation") { model, json, budget, dtype };
        command.SetAction(r => Inspect(ModelDir(r.GetRequiredValue(model)), r.GetValue(json), r.GetValue(budget) ?? Granite.Core.Experts.ExpertOffloadOptions.Off, r.GetValue(dtype), r.InvocationConfiguration.Output));
        return command;
    }

    private static int Inspect(string dir, bool json, Granite.Core.Experts.ExpertOffloadOptions offload, string? dtypeOpt, TextWriter stdout)
    {
        var c = GraniteConfig.Load(dir);
        long weightBytes = 0, expertBytes = 0;
        string dtypes;
        TorchSharp.torch.ScalarType computeDtype;
        Granite.Core.Modeling.ModelMemoryPlan memory;
        if (Granite.Core.Weights.Gguf.GgufImporter.LinkedSource(dir) is { } gguf)
        {
            // A GGUF import: the weights are the GGUF's tensors, mapped in place (checked against the metadata by the import).
            using var f = Granite.Core.Weights.Gguf.GgufFile.Open(gguf);
            weightBytes = f.Tensors.Sum(t => t.ByteLength);
            expertBytes = f.Tensors.Where(t => t.Name.Contains("_exps.", StringComparison.Ordinal)).Sum(t => t.ByteLength);
            dtypes = string.Join(",", f.Tensors.Select(t => t.Type.ToString()).Distinct().Order());
            if (dtypeOpt is not (null or "stored")) throw new CliUsageException($"option --dtype {dtypeOpt} does not apply to a GGUF file (its tensors run as stored)");
            if (offload.Enabled) throw new CliUsageException("--expert-budget does not apply to a GGUF file yet");
            computeDtype = TorchSharp.torch.ScalarType.Float32;
            memory = new Granite.Core.Modeling.ModelMemoryPlan(weightBytes, weightBytes, 0, Granite.Core.Modeling.ModelPreflight.AvailableMemoryBytes(), computeDtype);
        }
        else
        {
            using (var ckpt = SafetensorsCheckpoint.Open(dir))
            {
                var infos = ckpt.TensorNames.Select(ckpt.GetInfo).ToList();
                weightBytes = infos.Sum(i => i.ByteLength);
                expertBytes = infos.Where(i => i.Name.Contains(".block_sparse_moe.input_linear.", StringComparison.Ordinal) || i.Name.Contains(".block_sparse_moe.output_linear.", StringComparison.Ordinal)).Sum(i => i.ByteLength);
                dtypes = string.Join(",", infos.Select(i => i.DType.ToString()).Distinct().Order());
                var stored = ckpt.Contains("model.embed_tokens.weight") ? ckpt.GetInfo("model.embed_tokens.weight").DType : TorchSharp.torch.ScalarType.Float32;
                computeDtype = dtypeOpt switch
                {
                    null or "stored" or "q8_0" => stored == TorchSharp.torch.ScalarType.Float16 ? TorchSharp.torch.ScalarType.Float32 : stored,
                    "f32" or "float32" => TorchSharp.torch.ScalarType.Float32,
                    "bf16" or "bfloat16" => TorchSharp.torch.ScalarType.BFloat16,
                    _ => throw new CliUsageException($"option --dtype must be f32, bf16 or q8_0 (got '{dtypeOpt}')"),
                };
                if (offload.Enabled && !c.IsMoe) throw new CliUsageException("--expert-budget needs a model with routed experts");
                // The same checks as loading (sizes against tensor shapes, layer kinds, dtypes, missing tensors).
                memory = Granite.Core.Modeling.ModelPreflight.Check(c, ckpt, dir, computeDtype, offload);
            }
        }
        object? expertOffload = null;
        Granite.Core.Experts.ExpertOffloadPlan? plan = null;
        if (offload.Enabled)
        {
            plan = Granite.Core.Experts.ExpertOffloadPlan.Create(c, computeDtype, offload);
            expertOffload = new
            {
                budget = offload.ToString(),
                compute_dtype = computeDtype.ToString(),
                expert_bytes_each = plan.ExpertBytes,
                expert_bytes_total = plan.TotalExpertBytes,
                resident_experts_per_layer = plan.CapacityPerLayer,
                resident_bytes_max = plan.MaxResidentBytes,
                resident_share_of_experts = Math.Round((double)plan.MaxResidentBytes / plan.TotalExpertBytes, 4),
                streams_during_decode = plan.CapacityPerLayer < c.NumExpertsPerTok,
            };
        }
        var quantization = dtypeOpt == "q8_0" ? QuantizationReport(dir) : null;
        var report = new
        {
            model = Path.GetFullPath(dir),
            kind = c.MambaLayerCount == 0 ? "dense transformer" : c.IsMoe ? "hybrid Mamba-2/attention with MoE" : "hybrid Mamba-2/attention",
            hidden_size = c.HiddenSize,
            layers = c.NumHiddenLayers,
            mamba_layers = c.MambaLayerCount,
            attention_layers = c.AttentionLayerCount,
            experts = c.NumLocalExperts,
            experts_per_token = c.NumExpertsPerTok,
            vocab_size = c.VocabSize,
            positional = c.UsesRope ? "rope" : "none",
            max_context = c.MaxPositionEmbeddings,
            total_parameters = c.TotalParameterCount,
            active_parameters = c.ActiveParameterCount,
            weight_bytes = weightBytes,
            weight_dtypes = dtypes,
            expert_weight_bytes = expertBytes,
            expert_weight_share = weightBytes == 0 ? 0 : Math.Round((double)expertBytes / weightBytes, 4),
            state_bytes_per_session = c.MambaStateBytesPerSequence(4, 4),
            state_bytes_per_token = c.KvBytesPerToken(4),
            state_dtype = "float32 (conv + SSM state, K/V cache)",
            expert_offload = expertOffload,
            defaulted_fields = c.DefaultedFields,
            load_dtype = computeDtype.ToString(),
            load_private_bytes = memory.AllocatedBytes,
            load_mapped_bytes = memory.MappedBytes,
            available_bytes = memory.AvailableBytes,
            quantization,
        };
        if (json)
        {
            stdout.WriteLine(JsonSerializer.Serialize(report, Json));
            return 0;
        }
        stdout.WriteLine($"model            {report.model}");
        stdout.WriteLine($"kind             {report.kind}, {c.NumHiddenLayers} layers ({c.MambaLayerCount} mamba, {c.AttentionLayerCount} attention), hidden {c.HiddenSize}");
        if (c.IsMoe) stdout.WriteLine($"experts          {c.NumLocalExperts} per layer, top-{c.NumExpertsPerTok}, expert share of weights {report.expert_weight_share:P1}");
        stdout.WriteLine($"parameters       {c.TotalParameterCount:N0} total, {c.ActiveParameterCount:N0} active per token");
        stdout.WriteLine($"weights          {weightBytes:N0} bytes ({dtypes})");
        if (plan is not null)
            stdout.WriteLine($"expert offload   budget {offload}: {plan.CapacityPerLayer}/{c.NumLocalExperts} experts per layer resident, at most {plan.MaxResidentBytes:N0} of {plan.TotalExpertBytes:N0} expert bytes ({computeDtype}); the rest stays mapped" +
                (plan.CapacityPerLayer < c.NumExpertsPerTok ? $"; below top-{c.NumExpertsPerTok}, so decode streams experts through" : ""));
        stdout.WriteLine($"state            {report.state_bytes_per_session:N0} bytes per session (fixed) + {report.state_bytes_per_token:N0} bytes per token of context (float32)");
        stdout.WriteLine($"context          {c.MaxPositionEmbeddings:N0} tokens, positional encoding: {report.positional}");
        stdout.WriteLine($"load memory      {memory.AllocatedBytes:N0} bytes private + {memory.MappedBytes:N0} bytes mapped from the file as {computeDtype}" +
            (memory.AvailableBytes is { } avail ? $"; {avail:N0} bytes available{(memory.AllocatedBytes > avail ? " (does not fit)" : "")}" : ""));
        if (quantization is not null)
            stdout.WriteLine($"quantization     {quantization.format}: {quantization.tensors} weights (linears, embedding), {quantization.quantized_bytes:N0} bytes (from {quantization.source_bytes:N0} as {computeDtype}); " +
                $"on {quantization.prompt_tokens} prompt tokens max |Δlogit| {quantization.max_abs_logit_delta:G4} vs {computeDtype}, top-1 agreement {quantization.top1_agreement}/{quantization.prompt_tokens}");
        stdout.WriteLine($"defaulted fields {(c.DefaultedFields.Count == 0 ? "none" : string.Join(", ", c.DefaultedFields))} (Hugging Face GraniteMoeHybridConfig defaults)");
        return 0;
    }

    /// <summary>What <c>--dtype q8_0</c> reports: the model loaded as stored and quantized at load, logits compared on a short prompt.</summary>
    private sealed record QuantizationFigures(string format, int tensors, long quantized_bytes, long source_bytes, int prompt_tokens, double max_abs_logit_delta, int top1_agreement);

    /// <summary>The prompt whose logits the quantization report compares.</summary>
    internal const string QuantizationPrompt = "The capital of France is Paris. The largest planet in the solar system is";

    private static QuantizationFigures QuantizationReport(string dir)
    {
        var tokenizer = Granite.Core.Tokenization.GraniteTokenizer.FromDirectory(dir);
        var ids = tokenizer.Encode(QuantizationPrompt).ToArray();
        using var dense = Granite.Core.Modeling.GraniteModel.Load(dir, new Granite.Core.Modeling.GraniteModelOptions());
        using var quant = Granite.Core.Modeling.GraniteModel.Load(dir, new Granite.Core.Modeling.GraniteModelOptions { WeightDtype = Granite.Core.Modeling.WeightDtypePolicy.Q8_0 });
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var sa = dense.CreateState();
        using var sb = quant.CreateState();
        var a = dense.Forward((ReadOnlySpan<int>)ids, sa, allPositions: true);
        var b = quant.Forward((ReadOnlySpan<int>)ids, sb, allPositions: true);
        double delta = (a - b).abs().max().item<float>();
        var top = a.argmax(1).eq(b.argmax(1)).sum().item<long>();
        var r = quant.LoadReport;
        return new QuantizationFigures(r.QuantizedFormat ?? "none", r.QuantizedTensors, r.QuantizedBytes, r.QuantizedSourceBytes, ids.Length, Math.Round(delta, 6), (int)top);
    }
}
