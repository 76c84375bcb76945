using System.Text.Json;
using Granite.Core.Configuration;
using Granite.Core.Weights;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    private static int Inspect(CliArgs a, TextWriter stdout)
    {
        var dir = ModelDir(a);
        bool json = a.Flag("json");
        a.EnsureAllUsed();
        var c = GraniteConfig.Load(dir);
        long weightBytes = 0, expertBytes = 0;
        string dtypes;
        using (var ckpt = SafetensorsCheckpoint.Open(dir))
        {
            var infos = ckpt.TensorNames.Select(ckpt.GetInfo).ToList();
            weightBytes = infos.Sum(i => i.ByteLength);
            expertBytes = infos.Where(i => i.Name.Contains(".block_sparse_moe.input_linear.", StringComparison.Ordinal) || i.Name.Contains(".block_sparse_moe.output_linear.", StringComparison.Ordinal)).Sum(i => i.ByteLength);
            dtypes = string.Join(",", infos.Select(i => i.DType.ToString()).Distinct().Order());
        }
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
        stdout.WriteLine($"state            {report.state_bytes_per_session:N0} bytes per session (fixed) + {report.state_bytes_per_token:N0} bytes per token of context (float32)");
        stdout.WriteLine($"context          {c.MaxPositionEmbeddings:N0} tokens, positional encoding: {report.positional}");
        return 0;
    }
}
