using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.State;
using Granite.Core.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Granite.Core.Training;

/// <summary>
/// Training mode of the inference modules: the same <see cref="GraniteCausalLM"/> tree in float32 (float64 for the
/// gradient check) with every parameter requiring gradients. Forward passes run the plain prefill math: weights are
/// never BF16 (so no BF16 GEMV), and every pass covers at least two tokens (so the fused single-token conv/SSM steps,
/// which autograd cannot see through, are never taken). States start from zero or from a differentiable clone of a
/// shared prefix state.
/// </summary>
internal sealed class TrainableGranite : IDisposable
{
    private readonly object _identity = new();

    private TrainableGranite(GraniteCausalLM module, ScalarType dtype)
    {
        Module = module;
        Dtype = dtype;
        Parameters = module.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        foreach (var (_, p) in Parameters) p.requires_grad = true;
    }

    public GraniteConfig Config => Module.Config;

    public GraniteCausalLM Module { get; }

    /// <summary>Float32 (training) or Float64 (gradient check).</summary>
    public ScalarType Dtype { get; }

    /// <summary>Parameters by checkpoint name, in module order.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    public long ParameterCount => Parameters.Sum(p => p.Parameter.numel());

    /// <summary>A new model with Mamba-2 initialisation (see <see cref="Initialize"/>).</summary>
    public static TrainableGranite Create(GraniteConfig config, long seed, ScalarType dtype = ScalarType.Float32, double std = 0.02)
    {
        GraniteRuntime.EnsureLoaded();
        if (dtype != ScalarType.Float32 && dtype != ScalarType.Float64)
            throw new ArgumentException($"Training runs in float32 or float64, not {dtype}.", nameof(dtype));
        if (config.IsMoe) throw new NotSupportedException("Training supports dense Granite 4.0 layouts (num_local_experts = 0).");
        GraniteCausalLM module;
        using (torch.no_grad()) module = new GraniteCausalLM(config, dtype, torch.CPU, Kernels.GraniteKernels.Create(null, Kernels.ThreadPolicy.KernelThreads(0)));
        var model = new TrainableGranite(module, dtype);
        model.Initialize(seed, std);
        return model;
    }

    /// <summary>Loads a float32/float64 checkpoint folder written by <see cref="Save"/> (or any dense Granite checkpoint) to continue training.</summary>
    public static TrainableGranite Load(string dir, ScalarType dtype = ScalarType.Float32)
    {
        GraniteRuntime.EnsureLoaded();
        var config = GraniteConfig.Load(dir);
        if (config.IsMoe) throw new NotSupportedException($"{dir}: training supports dense layouts only (num_local_experts = 0).");
        GraniteCausalLM module;
        using (torch.no_grad()) module = new GraniteCausalLM(config, dtype, torch.CPU, Kernels.GraniteKernels.Create(null, Kernels.ThreadPolicy.KernelThreads(0)));
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        using (torch.no_grad())
        {
            foreach (var (name, p) in module.named_parameters())
            {
                if (!ckpt.Contains(name)) throw new InvalidDataException($"Checkpoint '{dir}' has no tensor '{name}'.");
                using var src = ckpt.GetTensor(name);
                if (!src.shape.SequenceEqual(p.shape))
                    throw new InvalidDataException($"Checkpoint '{dir}': tensor '{name}' has shape [{string.Join(", ", src.shape)}], the config requires [{string.Join(", ", p.shape)}].");
                p.copy_(src);
            }
        }
        return new TrainableGranite(module, dtype);
    }

    /// <summary>
    /// Initialises the weights from <paramref name="seed"/>: linear and embedding weights N(0, <paramref name="std"/>)
    /// (output projections scaled by 1/√(2·layers)), norms 1, conv1d U(±1/√K) with zero bias; Mamba-2's
    /// A_log = log U[1, 16], dt_bias = softplus⁻¹(dt) with dt ~ logU[1e-3, 1e-1], D = 1.
    /// </summary>
    public void Initialize(long seed, double std = 0.02)
    {
        var c = Config;
        double outStd = std / Math.Sqrt(2.0 * c.NumHiddenLayers);
        var g = new torch.Generator((ulong)seed);
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in Parameters)
        {
            using var scope = torch.NewDisposeScope();
            if (name.EndsWith("norm.weight", StringComparison.Ordinal) || name.EndsWith("layernorm.weight", StringComparison.Ordinal)) p.fill_(1.0);
            else if (name.EndsWith(".A_log", StringComparison.Ordinal))
                p.copy_(torch.log(torch.rand(p.shape, p.dtype, generator: g) * 15 + 1));
            else if (name.EndsWith(".dt_bias", StringComparison.Ordinal))
            {
                var dt = torch.exp(torch.rand(p.shape, p.dtype, generator: g) * (Math.Log(1e-1) - Math.Log(1e-3)) + Math.Log(1e-3)).clamp_min(1e-4);
                p.copy_(dt + torch.log(-torch.expm1(-dt)));                        // softplus⁻¹(dt)
            }
            else if (name.EndsWith(".D", StringComparison.Ordinal)) p.fill_(1.0);
            else if (name.EndsWith("conv1d.weight", StringComparison.Ordinal))
            {
                double bound = 1.0 / Math.Sqrt(c.MambaDConv);
                p.copy_(torch.rand(p.shape, p.dtype, generator: g) * (2 * bound) - bound);
            }
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else if (name.EndsWith("out_proj.weight", StringComparison.Ordinal) || name.EndsWith("o_proj.weight", StringComparison.Ordinal)
                     || name.EndsWith("output_linear.weight", StringComparison.Ordinal)) p.normal_(0, outStd, g);
            else p.normal_(0, std, g);
        }
    }

    /// <summary>A zero state for one sequence (conv windows, SSM states and KV caches in the training dtype).</summary>
    public InferenceState NewState()
    {
        var c = Config;
        var mamba = new MambaLayerState?[c.NumHiddenLayers];
        var attention = new AttentionLayerState?[c.NumHiddenLayers];
        using (torch.no_grad())
        {
            for (int i = 0; i < c.NumHiddenLayers; i++)
            {
                if (c.LayerTypes[i] == LayerKind.Mamba)
                    mamba[i] = new MambaLayerState(
                        torch.zeros(new long[] { c.MambaConvDim, c.MambaDConv }, Dtype).DetachFromDisposeScope(),
                        torch.zeros(new long[] { c.MambaNHeads, c.MambaDHead, c.MambaDState }, Dtype).DetachFromDisposeScope());
                else
                    attention[i] = new AttentionLayerState(c.NumKeyValueHeads, c.HeadDim, c.MaxPositionEmbeddings, Dtype, torch.CPU);
            }
        }
        return new InferenceState(_identity, mamba, attention, new List<int>());
    }

    /// <summary>
    /// Differentiable forward of <paramref name="ids"/> (≥ 2 tokens) after the tokens already in <paramref name="state"/>;
    /// returns logits [T, V] in the training dtype, attached to the autograd graph.
    /// </summary>
    public Tensor Forward(ReadOnlySpan<int> ids, InferenceState state)
    {
        if (ids.Length < 2)
            throw new ArgumentException("A training forward pass needs at least 2 tokens (single tokens take the fused decode kernels).", nameof(ids));
        TokenLimits.CheckContext(state.Length, ids.Length, Config.MaxPositionEmbeddings, "The sequence (cached + new tokens)", nameof(ids));
        TokenLimits.CheckInVocabulary(ids, Config.VocabSize, nameof(ids));
        var longs = new long[ids.Length];
        for (int i = 0; i < ids.Length; i++) longs[i] = ids[i];
        using var idsT = torch.tensor(longs, ScalarType.Int64);
        var logits = Module.Forward(idsT, state, allPositions: true);
        state.AppendTokens(ids);
        return logits;
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (float32) to <paramref name="dir"/>.</summary>
    public void Save(string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), Config.ToJson("float32"));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var tensors = Parameters.Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Parameter.detach().to_type(ScalarType.Float32).contiguous())).ToList();
        string tmp = Path.Combine(dir, "model.safetensors.tmp");
        SafetensorsWriter.Write(tmp, tensors);
        File.Move(tmp, Path.Combine(dir, "model.safetensors"), overwrite: true);
    }

    public void Dispose() => Module.Dispose();
}
