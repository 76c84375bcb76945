using System.Globalization;
using Granite.Core.Configuration;
using Granite.Core.Experts;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// What loading a checkpoint will allocate, computed before anything is allocated (see <see cref="ModelPreflight"/>).
/// </summary>
/// <param name="ParameterBytes">Bytes of all parameters in the compute dtype.</param>
/// <param name="MappedBytes">Of those, bytes used zero-copy from the mapped checkpoint (file-backed, not private memory).</param>
/// <param name="AllocatedBytes">Private memory the weights need: converted parameters plus the resident expert budget.</param>
/// <param name="AvailableBytes">Memory available now (<c>MemAvailable</c> on Linux), or null when unknown.</param>
/// <param name="ComputeDtype">Dtype the parameters are held in.</param>
internal sealed record ModelMemoryPlan(long ParameterBytes, long MappedBytes, long AllocatedBytes, long? AvailableBytes, ScalarType ComputeDtype);

/// <summary>
/// Checks a <c>config.json</c> against the checkpoint's tensor headers before the model allocates anything: the layer
/// count and kinds, every tensor's shape (the error names the config field behind the mismatching dimension), floating
/// point dtypes, and the bytes the weights will take against available memory. <c>granite inspect</c> and
/// <see cref="GraniteModel.Load"/> run the same checks.
/// </summary>
internal static class ModelPreflight
{
    private static readonly HashSet<ScalarType> FloatTypes = new() { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float64 };

    /// <summary>Validates <paramref name="c"/> against <paramref name="ckpt"/> and returns the memory plan.</summary>
    /// <exception cref="InvalidDataException">A size, layer kind or dtype disagrees with the checkpoint, or tensors are
    /// missing; the message names config.json and the field (or the tensor and its file).</exception>
    public static ModelMemoryPlan Check(GraniteConfig c, SafetensorsCheckpoint ckpt, string modelDir, ScalarType computeDtype, ExpertOffloadOptions? offload = null, string device = "cpu")
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(ckpt);
        string cfg = c.SourcePath ?? "config.json";
        CheckLayers(c, ckpt, cfg);

        var expected = GraniteCheckpointLayout.Tensors(c, computeDtype);
        const string embed = "model.embed_tokens.weight";
        // The embedding first (vocab_size, hidden_size), then every tensor in name order.
        foreach (var spec in expected.Where(s => s.Name == embed).Concat(expected.Where(s => s.Name != embed)))
        {
            if (!ckpt.Contains(spec.Name)) continue;
            var info = ckpt.GetInfo(spec.Name);
            if (!info.Shape.SequenceEqual(spec.Shape))
            {
                int dim = FirstDifference(info.Shape, spec.Shape);
                var (field, value) = FieldOf(spec.Name, dim, info.Shape.Length == spec.Shape.Length, c);
                string fields = field.Contains(',', StringComparison.Ordinal)
                    ? "one of the fields " + string.Join(", ", field.Split(", ").Select(f => $"'{f}'"))
                    : $"field '{field}'{(value is null ? "" : $" ({value})")}";
                throw new InvalidDataException(
                    $"{cfg}: {fields} does not match the checkpoint: tensor '{spec.Name}' has shape " +
                    $"[{string.Join(", ", info.Shape)}] but the config requires [{string.Join(", ", spec.Shape)}]");
            }

            if (!FloatTypes.Contains(info.DType))
                throw new InvalidDataException(
                    $"{info.FilePath}: tensor '{spec.Name}' has dtype {SafetensorsDTypes.NameOf(info.DType)}; weights must be floating point (F32, BF16, F16 or F64)");
        }

        var missing = expected.Where(s => !ckpt.Contains(s.Name) && !GraniteCheckpointLayout.IsOptional(s.Name, c)).Select(s => s.Name).ToList();
        if (missing.Count > 0)
        {
            string list = string.Join(", ", missing.Take(12)) + (missing.Count > 12 ? $", … ({missing.Count - 12} more)" : "");
            var stored = ckpt.Contains(embed) ? ckpt.GetInfo(embed).DType : computeDtype;
            var ex = new InvalidDataException($"Checkpoint '{modelDir}' is missing {missing.Count} required tensor(s): {list}");
            ex.Data["ModelLoadReport"] = new ModelLoadReport(modelDir, missing, Array.Empty<string>(), false, stored, computeDtype, c.TotalParameterCount);
            throw ex;
        }

        // Memory: parameters stored in the compute dtype on the CPU alias the mapped file; the rest is converted into
        // private memory. Offloaded experts stay mapped; their resident cache takes at most the plan's budget.
        bool offloaded = offload is { Enabled: true } && c.IsMoe;
        bool cpu = string.Equals(device, "cpu", StringComparison.OrdinalIgnoreCase);
        int size = SafetensorsDTypes.SizeOf(computeDtype);
        long total = 0, mapped = 0, allocated = 0;
        foreach (var spec in expected)
        {
            if (GraniteCheckpointLayout.IsOptional(spec.Name, c)) continue;
            long bytes = checked(spec.Shape.Aggregate(1L, (a, b) => checked(a * b)) * size);
            total = checked(total + bytes);
            if ((offloaded && ExpertStore.IsExpertWeight(spec.Name)) || (cpu && ckpt.GetInfo(spec.Name).DType == computeDtype))
                mapped += bytes;
            else
                allocated += bytes;
        }

        if (offloaded) allocated = checked(allocated + ExpertOffloadPlan.Create(c, computeDtype, offload!).MaxResidentBytes);
        return new ModelMemoryPlan(total, mapped, allocated, cpu ? AvailableMemoryBytes() : null, computeDtype);
    }

    /// <summary>Reads every weight the model uses (zero-copy views of the mapped file) and throws on NaN or ±Inf.</summary>
    /// <exception cref="InvalidDataException">A tensor holds non-finite values; the message names it, its file and the count.</exception>
    public static void CheckFinite(GraniteConfig c, SafetensorsCheckpoint ckpt)
    {
        foreach (var spec in GraniteCheckpointLayout.Tensors(c, ScalarType.Float32))
        {
            if (!ckpt.Contains(spec.Name)) continue;
            using var scope = NewDisposeScope();
            var t = ckpt.GetTensor(spec.Name);
            var finite = t.isfinite();
            if (finite.all().item<bool>()) continue;
            long bad = finite.numel() - finite.sum().item<long>();
            throw new InvalidDataException(
                $"{ckpt.GetInfo(spec.Name).FilePath}: tensor '{spec.Name}' holds {bad:N0} non-finite values (NaN or Inf) of {finite.numel():N0}; the checkpoint is corrupt");
        }
    }

    /// <summary>Throws when the plan needs more private memory than is available.</summary>
    /// <exception cref="InsufficientMemoryException">The weights would not fit.</exception>
    public static void EnsureFits(ModelMemoryPlan plan, string modelDir)
    {
        if (plan.AvailableBytes is { } available && plan.AllocatedBytes > available)
            throw new InsufficientMemoryException(
                $"{modelDir}: the weights need {plan.AllocatedBytes:N0} bytes of memory as {plan.ComputeDtype} ({plan.MappedBytes:N0} more stay mapped from the file) " +
                $"but only {available:N0} bytes are available; keep the stored dtype (--dtype bf16 for a BF16 checkpoint) or enable expert offload");
    }

    /// <summary><c>MemAvailable</c> from <c>/proc/meminfo</c> (Linux), else the GC's view of available memory.</summary>
    internal static long? AvailableMemoryBytes()
    {
        try
        {
            if (File.Exists("/proc/meminfo"))
            {
                foreach (var line in File.ReadLines("/proc/meminfo"))
                {
                    if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kb)) return kb * 1024;
                }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        long gc = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return gc > 0 ? gc : null;
    }

    /// <summary>The checkpoint's layers must be exactly 0..num_hidden_layers-1, each with the mixer layer_types names.</summary>
    private static void CheckLayers(GraniteConfig c, SafetensorsCheckpoint ckpt, string cfg)
    {
        var kinds = new Dictionary<int, (bool Mamba, bool Attention)>();
        foreach (var name in ckpt.TensorNames)
        {
            if (!name.StartsWith("model.layers.", StringComparison.Ordinal)) continue;
            int dot = name.IndexOf('.', 13);
            if (dot < 0 || !int.TryParse(name.AsSpan(13, dot - 13), NumberStyles.None, CultureInfo.InvariantCulture, out int layer)) continue;
            kinds.TryGetValue(layer, out var k);
            var rest = name.AsSpan(dot + 1);
            kinds[layer] = (k.Mamba || rest.StartsWith("mamba."), k.Attention || rest.StartsWith("self_attn."));
        }

        int count = kinds.Count == 0 ? 0 : kinds.Keys.Max() + 1;
        if (count != c.NumHiddenLayers)
            throw new InvalidDataException(
                $"{cfg}: field 'num_hidden_layers' ({c.NumHiddenLayers}) does not match the checkpoint, whose tensors name {(count == 0 ? "no model.layers.* at all" : $"layers 0..{count - 1}")}");
        for (int i = 0; i < count; i++)
        {
            if (!kinds.TryGetValue(i, out var k)) continue; // reported as missing tensors
            var want = c.LayerTypes[i];
            if ((want == LayerKind.Attention && k.Mamba && !k.Attention) || (want == LayerKind.Mamba && k.Attention && !k.Mamba))
                throw new InvalidDataException(
                    $"{cfg}: field 'layer_types[{i}]' is \"{(want == LayerKind.Mamba ? "mamba" : "attention")}\" but the checkpoint's layer {i} is {(k.Mamba ? "a Mamba" : "an attention")} layer");
        }
    }

    private static int FirstDifference(long[] actual, long[] expected)
    {
        int n = Math.Min(actual.Length, expected.Length);
        for (int i = 0; i < n; i++)
            if (actual[i] != expected[i]) return i;
        return n;
    }

    /// <summary>The config field that sets dimension <paramref name="dim"/> of a tensor (and its value when a single field).</summary>
    private static (string Field, string? Value) FieldOf(string tensor, int dim, bool sameRank, GraniteConfig c)
    {
        static string V(long v) => v.ToString(CultureInfo.InvariantCulture);
        var hidden = ("hidden_size", V(c.HiddenSize));
        int cut = tensor.StartsWith("model.layers.", StringComparison.Ordinal) ? tensor.IndexOf('.', 13) + 1 : 0;
        string suffix = tensor[cut..];
        if (!sameRank) dim = -1;
        (string, string?) mambaRows = ("mamba_expand, mamba_n_groups, mamba_d_state, mamba_n_heads", null);
        (string, string?) convRows = ("mamba_expand, mamba_n_groups, mamba_d_state", null);
        return (suffix, dim) switch
        {
            ("model.embed_tokens.weight" or "lm_head.weight", 0) => ("vocab_size", V(c.VocabSize)),
            ("shared_mlp.input_linear.weight", 0) or ("shared_mlp.output_linear.weight", 1) => ("shared_intermediate_size", V(c.SharedIntermediateSize)),
            ("block_sparse_moe.router.layer.weight", 0) or ("block_sparse_moe.input_linear.weight", 0) or ("block_sparse_moe.output_linear.weight", 0) => ("num_local_experts", V(c.NumLocalExperts)),
            ("block_sparse_moe.input_linear.weight", 1) or ("block_sparse_moe.output_linear.weight", 2) => ("intermediate_size", V(c.IntermediateSize)),
            ("mamba.in_proj.weight" or "mamba.in_proj.bias", 0) => mambaRows,
            ("mamba.conv1d.weight" or "mamba.conv1d.bias", 0) => convRows,
            ("mamba.conv1d.weight", 2) => ("mamba_d_conv", V(c.MambaDConv)),
            ("mamba.dt_bias" or "mamba.A_log" or "mamba.D", 0) => ("mamba_n_heads", V(c.MambaNHeads)),
            ("mamba.norm.weight", 0) or ("mamba.out_proj.weight", 1) => ("mamba_expand", V(c.MambaExpand)),
            ("self_attn.q_proj.weight" or "self_attn.q_proj.bias", 0) or ("self_attn.o_proj.weight", 1) => ("num_attention_heads", V(c.NumAttentionHeads)),
            ("self_attn.k_proj.weight" or "self_attn.v_proj.weight" or "self_attn.k_proj.bias" or "self_attn.v_proj.bias", 0) => ("num_key_value_heads", V(c.NumKeyValueHeads)),
            (_, -1) => (suffix.StartsWith("block_sparse_moe.", StringComparison.Ordinal) ? "num_local_experts" : "hidden_size", null),
            _ => hidden,
        };
    }
}
