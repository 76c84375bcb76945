using System.Runtime.InteropServices;
using Granite.Core.Configuration;
using Granite.Core.Experts;
using Granite.Core.Kernels;
using Granite.Core.Kernels.Quant;
using Granite.Core.State;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>
/// A loaded Granite 4.0 model (hybrid Mamba-2/attention, MoE or dense) running in-process on TorchSharp.
/// Use <see cref="CreateState"/> for each sequence and <see cref="Forward(ReadOnlySpan{int}, InferenceState, bool)"/>
/// to feed tokens (prefill a block, then one token per decode step).
/// </summary>
/// <remarks>Not thread-safe: run all calls for a model on one thread (TorchSharp dispose scopes are thread-local).</remarks>
internal sealed class GraniteModel : IDisposable
{
    private readonly GraniteCausalLM _module;
    private readonly object _identity = new();
    private readonly Device _device;
    private readonly ExpertStore? _experts;
    private bool _disposed;

    private GraniteModel(GraniteCausalLM module, GraniteKernels kernels, Device device, ModelLoadReport report, ExpertStore? experts)
    {
        _module = module;
        Kernels = kernels;
        _device = device;
        LoadReport = report;
        _experts = experts;
    }

    /// <summary>The model configuration.</summary>
    public GraniteConfig Config => _module.Config;

    /// <summary>What was loaded (dtypes, unexpected tensors).</summary>
    public ModelLoadReport LoadReport { get; }

    /// <summary>Dtype of the weights and activations (float32 islands aside).</summary>
    public ScalarType WeightDtype => LoadReport.WeightDtype;

    internal GraniteCausalLM Module => _module;

    /// <summary>The kernels chosen at load (instruction set, GEMM choice, kernel threads).</summary>
    internal GraniteKernels Kernels { get; }

    /// <summary>The kernel path in one line (instruction set and why, CPU flags, prefill GEMM, threads), for logs and benchmarks.</summary>
    public string KernelDescription => Kernels.Description;

    /// <summary>The expert store when MoE experts are offloaded, else null.</summary>
    internal ExpertStore? Experts => _experts;

    /// <summary>Loads <c>config.json</c> and the safetensors weights from a folder.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">config.json or a weight file is missing.</exception>
    /// <exception cref="InvalidDataException">The config is invalid or disagrees with the checkpoint (a size, a layer
    /// kind), a required tensor is missing, or a weight has an integer dtype; messages name the file and the field or tensor.
    /// All of this is checked before anything is allocated.</exception>
    /// <exception cref="InsufficientMemoryException">The weights need more memory than is available (see
    /// <see cref="GraniteModelOptions.CheckAvailableMemory"/>).</exception>
    public static GraniteModel Load(string modelDir, GraniteModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        GraniteRuntime.EnsureLoaded();
        options ??= new GraniteModelOptions();
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"Model folder not found: {modelDir}");
        options.CheckThreads();
        var config = GraniteConfig.Load(modelDir);
        var device = options.ResolveDevice(); // option errors before any process-wide setting changes
        var tuning = options.KernelTuning ?? new KernelTuning();
        if (options.Int8LmHead) tuning = tuning with { Int8Head = true };
        var kernels = GraniteKernels.Create(options.MaxIsa, ThreadPolicy.KernelThreads(options.Threads), tuning); // GRANITE_ISA errors first too
        ThreadPolicy.ApplyTorchThreads(options.Threads);
        if (options.TuneNativeAllocator) NativeAllocatorTuning.Apply();

        if (Weights.Gguf.GgufImporter.LinkedSource(modelDir) is { } ggufPath)
            return LoadLinkedGguf(modelDir, ggufPath, options, config, device, kernels);

        using var ckpt = SafetensorsCheckpoint.Open(modelDir);
        const string embedName = "model.embed_tokens.weight";
        var stored = ckpt.Contains(embedName) ? ckpt.GetInfo(embedName).DType : ScalarType.Float32;
        var dtype = options.WeightDtype switch
        {
            WeightDtypePolicy.Float32 => ScalarType.Float32,
            WeightDtypePolicy.BFloat16 => ScalarType.BFloat16,
            _ => stored == ScalarType.Float16 ? ScalarType.Float32 : stored,
        };

        // Every config size against the checkpoint's headers, dtypes, and the memory the weights take: before any allocation.
        var plan = ModelPreflight.Check(config, ckpt, modelDir, dtype, options.ExpertOffload, options.Device);
        if (options.WeightDtype == WeightDtypePolicy.Q8_0)
        {
            // The Q8_0 blocks are private memory on top of the plan (34 bytes per 32 weights of every quantized linear).
            long blocks = ckpt.TensorNames.Select(ckpt.GetInfo).Where(i => IsQuantizableName(i.Name) && i.Shape.Length is 2 or 3 && i.Shape[^1] % 32 == 0)
                .Sum(i => i.ElementCount / 32 * 34);
            plan = plan with { AllocatedBytes = plan.AllocatedBytes + blocks };
        }
        if (options.CheckAvailableMemory) ModelPreflight.EnsureFits(plan, modelDir);
        if (options.CheckFiniteWeights) ModelPreflight.CheckFinite(config, ckpt);

        GraniteCausalLM? module = null;
        ExpertStore? experts = null;
        try
        {
            using (torch.no_grad())
            {
                bool offload = options.ExpertOffload.Enabled && config.IsMoe;
                module = new GraniteCausalLM(config, dtype, device, kernels, offload);
                var report = LoadWeights(module, ckpt, modelDir, config, stored, dtype);
                if (options.WeightDtype == WeightDtypePolicy.Q8_0) report = QuantizeLinears(module, QuantType.Q8_0, kernels.Workers, report);
                if (offload) experts = AttachExperts(module, ckpt, config, dtype, device, options.ExpertOffload);
                return new GraniteModel(module, kernels, device, report, experts);
            }
        }
        catch
        {
            experts?.Dispose();
            if (module is not null) ParamBlock.ReleaseAll(module);
            module?.Dispose();
            kernels.Workers.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A model with random weights (normal, std <paramref name="std"/>; norms = 1, A_log = 0) for benchmarks and shape
    /// tests without a checkpoint. Not a usable language model.
    /// </summary>
    internal static GraniteModel CreateRandom(GraniteConfig config, ScalarType dtype, string device = "cpu", double std = 0.02, long seed = 1)
    {
        GraniteRuntime.EnsureLoaded();
        NativeAllocatorTuning.Apply();
        var dev = torch.device(device);
        var kernels = GraniteKernels.Create(null, ThreadPolicy.KernelThreads(0));
        var module = new GraniteCausalLM(config, dtype, dev, kernels);
        using (torch.no_grad())
        {
            var gen = new torch.Generator((ulong)seed);
            foreach (var (name, p) in module.named_parameters())
            {
                if (name.EndsWith("norm.weight", StringComparison.Ordinal) || name.EndsWith("layernorm.weight", StringComparison.Ordinal)) p.fill_(1.0);
                else if (name.EndsWith("A_log", StringComparison.Ordinal) || name.EndsWith("dt_bias", StringComparison.Ordinal)) p.fill_(0.0);
                else p.normal_(0, std, gen);
            }
        }
        long count = module.parameters().Sum(p => p.numel());
        return new GraniteModel(module, kernels, dev, new ModelLoadReport("(random)", Array.Empty<string>(), Array.Empty<string>(), false, dtype, dtype, count), experts: null);
    }

    private static ModelLoadReport LoadWeights(GraniteCausalLM module, SafetensorsCheckpoint ckpt, string modelDir, GraniteConfig config, ScalarType stored, ScalarType dtype)
    {
        var parameters = module.named_parameters().ToList();
        var missing = new List<string>();
        foreach (var (name, p) in parameters)
        {
            if (!ckpt.Contains(name)) { missing.Add(name); continue; }
            var shape = ckpt.GetInfo(name).Shape;
            if (!shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"Checkpoint '{modelDir}': tensor '{name}' has shape [{string.Join(", ", shape)}] but {config.SourcePath ?? "the config"} requires [{string.Join(", ", p.shape)}]");
        }
        bool ignoredTied = config.TieWordEmbeddings && ckpt.Contains("lm_head.weight");
        var used = new HashSet<string>(parameters.Select(p => p.name), StringComparer.Ordinal);
        if (ignoredTied) used.Add("lm_head.weight");
        var unexpected = ckpt.TensorNames.Where(n => !used.Contains(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        long count = parameters.Sum(p => p.parameter.numel());
        var report = new ModelLoadReport(modelDir, missing, unexpected, ignoredTied, stored, dtype, count);
        if (missing.Count > 0)
        {
            string list = string.Join(", ", missing.Take(12)) + (missing.Count > 12 ? $", … ({missing.Count - 12} more)" : "");
            var ex = new InvalidDataException($"Checkpoint '{modelDir}' is missing {missing.Count} required tensor(s): {list}");
            ex.Data["ModelLoadReport"] = report;
            throw ex;
        }
        foreach (var (name, p) in parameters)
        {
            if (p.device_type == DeviceType.META) continue; // offloaded experts stay in the mapped file
            using var scope = torch.NewDisposeScope();
            var src = ckpt.GetTensor(name);
            // Same dtype on the CPU: the parameter takes over the checkpoint's storage, a zero-copy view of the mapped
            // file (the mapping stays alive until the last view is gone, see docs/loading.md). Weights are never written.
            if (p.dtype == src.dtype && p.device_type == DeviceType.CPU && src.device_type == DeviceType.CPU && src.is_contiguous())
                p.set_(src);
            else
                p.copy_(src);
            src.Dispose();
        }
        return report;
    }

    /// <summary>
    /// Loads a folder written by <see cref="Weights.Gguf.GgufImporter.Link"/> straight from its GGUF file: quantized linear
    /// and embedding tensors become <see cref="QuantizedWeight"/>s pointing into the mapping (zero-copy; fused gate|up kept
    /// as two row segments in place; RoPE-permuted q/k rows reordered into an owned copy), F32/BF16 tensors zero-copy views
    /// where the converter's transform is the identity, the rest (A_log from ssm_a, re-fused dense gate|up, un-permuted
    /// q/k) computed once. Tensors were checked against the metadata by the import and are checked again here.
    /// </summary>
    private static GraniteModel LoadLinkedGguf(string modelDir, string ggufPath, GraniteModelOptions options, GraniteConfig config, Device device, GraniteKernels kernels)
    {
        if (options.ExpertOffload.Enabled && config.IsMoe)
            throw new NotSupportedException($"{ggufPath}: expert offload does not run on GGUF weights yet; load it without an expert budget");
        if (device.type != DeviceType.CPU) throw new NotSupportedException($"{ggufPath}: GGUF weights run on the CPU only (Device '{options.Device}')");
        GraniteCausalLM? module = null;
        var f = Weights.Gguf.GgufFile.Open(ggufPath);
        try
        {
            var producers = Weights.Gguf.GgufImporter.Tensors(f, config).ToDictionary(t => t.Spec.Name, t => t.Produce, StringComparer.Ordinal);
            var mappings = Weights.Gguf.GraniteGgufLayout.Tensors(config, hasLmHead: f.ContainsTensor("output.weight"));
            var denseMatrixTypes = mappings.Where(m => !m.AlwaysF32).Select(m => f.GetInfo(m.GgufName).Type)
                .Where(t => !Weights.Gguf.GgufFile.IsQuantized(t)).Distinct().ToList();
            var dtype = options.WeightDtype switch
            {
                WeightDtypePolicy.Float32 => ScalarType.Float32,
                WeightDtypePolicy.BFloat16 => ScalarType.BFloat16,
                _ => denseMatrixTypes.Count == 1 && denseMatrixTypes[0] == Weights.Gguf.GgmlType.BF16 ? ScalarType.BFloat16 : ScalarType.Float32,
            };
            using (torch.no_grad())
            {
                module = new GraniteCausalLM(config, dtype, device, kernels);
                var blocks = new Dictionary<string, ParamBlock>(StringComparer.Ordinal);
                foreach (var (name, m) in module.named_modules())
                    if (m is ParamBlock pb) blocks[name + ".weight"] = pb;
                var quantized = new HashSet<string>(StringComparer.Ordinal);
                var formats = new SortedSet<string>(StringComparer.Ordinal);
                long qBytes = 0;
                foreach (var group in mappings.GroupBy(m => m.HfName))
                {
                    var parts = group.ToList();
                    if (!parts.All(p => Weights.Gguf.GgufFile.IsQuantized(f.GetInfo(p.GgufName).Type))) continue;
                    if (!blocks.TryGetValue(group.Key, out var block)) continue;
                    string owner = group.Key[..group.Key.LastIndexOf('.')];
                    string last = owner[(owner.LastIndexOf('.') + 1)..];
                    if (!QuantizableLinears.Contains(last)) continue; // e.g. a quantized router: dequantized below
                    QuantizedWeight? q = parts[0].Transform switch
                    {
                        Weights.Gguf.GgufTransform.Copy => f.GetQuantized(parts[0].GgufName),
                        Weights.Gguf.GgufTransform.FirstHalf when parts.Count == 2 => f.GetQuantized(parts[0].GgufName, parts[1].GgufName),
                        Weights.Gguf.GgufTransform.PermuteQ => Unpermuted(f, parts[0].GgufName, config.NumAttentionHeads),
                        Weights.Gguf.GgufTransform.PermuteK => Unpermuted(f, parts[0].GgufName, config.NumKeyValueHeads),
                        _ => null,
                    };
                    if (q is null) continue;
                    try { block.SetQuantized(q); }
                    catch { q.Dispose(); throw; }
                    quantized.Add(group.Key);
                    formats.Add(q.Type.ToString());
                    qBytes += q.ByteLength;
                }
                var parameters = module.named_parameters().ToList();
                foreach (var (name, p) in parameters)
                {
                    if (quantized.Contains(name)) continue;
                    if (!producers.TryGetValue(name, out var produce)) throw new InvalidDataException($"{ggufPath}: no tensor for '{name}'");
                    using var scope = torch.NewDisposeScope();
                    var src = produce();
                    if (!src.shape.SequenceEqual(p.shape))
                        throw new InvalidDataException($"{ggufPath}: tensor for '{name}' has shape [{string.Join(", ", src.shape)}], the model needs [{string.Join(", ", p.shape)}]");
                    // Same dtype: the parameter takes over the view of the mapping (never written; copy-on-write mapping).
                    if (p.dtype == src.dtype && src.is_contiguous()) p.set_(src);
                    else p.copy_(src);
                }
                long count = parameters.Sum(p => p.parameter.numel());
                var report = new ModelLoadReport(modelDir, Array.Empty<string>(), Array.Empty<string>(), false, dtype, dtype, count)
                {
                    QuantizedFormat = formats.Count == 0 ? null : string.Join("+", formats),
                    QuantizedTensors = quantized.Count,
                    QuantizedBytes = qBytes,
                    QuantizedSourceBytes = qBytes, // already quantized in the file: nothing was converted
                };
                return new GraniteModel(module, kernels, device, report, experts: null);
            }
        }
        catch
        {
            if (module is not null) ParamBlock.ReleaseAll(module);
            module?.Dispose();
            kernels.Workers.Dispose();
            throw;
        }
        finally
        {
            f.Dispose(); // the weights and views hold their own references on the mapping
        }
    }

    /// <summary>A q/k GGUF weight with llama.cpp's RoPE row permutation undone (an owned copy of the blocks).</summary>
    private static QuantizedWeight Unpermuted(Weights.Gguf.GgufFile f, string name, int heads)
    {
        using var stored = f.GetQuantized(name);
        using var index = torch.arange(stored.Rows, ScalarType.Int64).reshape(stored.Rows, 1);
        using var map = Weights.Gguf.GraniteGgufLayout.Permute(index, heads, inverse: true);
        return QuantizedWeight.CopyRows(stored, map.reshape(-1).data<long>().ToArray());
    }

    /// <summary>
    /// Names (last path segment) of the modules whose weight the quantized kernels may hold: the linears and the embedding
    /// (looked up by dequantizing rows; as a tied LM head it is the largest single read of a decode step), as in
    /// llama.cpp's Q8_0 files.
    /// </summary>
    private static readonly HashSet<string> QuantizableLinears = new(StringComparer.Ordinal)
    {
        "in_proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj", "lm_head", "input_linear", "output_linear", "embed_tokens",
    };

    /// <summary>Whether a checkpoint tensor name is the weight of a <see cref="QuantizableLinears"/> module.</summary>
    private static bool IsQuantizableName(string name)
    {
        if (!name.EndsWith(".weight", StringComparison.Ordinal)) return false;
        var owner = name[..^".weight".Length];
        return QuantizableLinears.Contains(owner[(owner.LastIndexOf('.') + 1)..]);
    }

    /// <summary>
    /// Quantizes every loaded linear weight and the embedding (see <see cref="QuantizableLinears"/>; the router, conv and
    /// norms stay dense) whose input width fits whole blocks, dropping its dense copy; returns the report with the figures.
    /// Offloaded experts (on <c>meta</c>) are left to their expert cache.
    /// </summary>
    internal static ModelLoadReport QuantizeLinears(GraniteCausalLM module, QuantType type, KernelWorkers workers, ModelLoadReport report)
    {
        int count = 0;
        long bytes = 0, source = 0;
        foreach (var (name, m) in module.named_modules())
        {
            if (m is not ParamBlock block || block.Quantized is not null) continue;
            var w = block.Weight;
            string last = name[(name.LastIndexOf('.') + 1)..];
            if (!QuantizableLinears.Contains(last) || w.device_type != DeviceType.CPU || w.dim() is not (2 or 3)) continue;
            if (!QuantizedWeight.Fits(type, w.shape[^1])) continue;
            source += w.numel() * w.element_size();
            block.Quantize(type, workers);
            bytes += block.Quantized!.ByteLength;
            count++;
        }
        return report with { QuantizedFormat = type.ToString(), QuantizedTensors = count, QuantizedBytes = bytes, QuantizedSourceBytes = source };
    }

    private static ExpertStore AttachExperts(GraniteCausalLM module, SafetensorsCheckpoint ckpt, GraniteConfig config, ScalarType dtype, Device device, ExpertOffloadOptions options)
    {
        var store = ExpertStore.Open(ckpt, config, dtype, device, options);
        var layers = module.Backbone.Layers;
        for (int i = 0; i < layers.Count; i++)
            if (layers[i].Moe is { } moe) moe.Experts = store.Layer(i);
        return store;
    }

    /// <summary>Creates an empty per-sequence state (zero Mamba states, empty KV caches) on the model's device.</summary>
    public InferenceState CreateState()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var c = Config;
        var mamba = new MambaLayerState?[c.NumHiddenLayers];
        var attention = new AttentionLayerState?[c.NumHiddenLayers];
        using (torch.no_grad())
        {
            for (int i = 0; i < c.NumHiddenLayers; i++)
            {
                if (c.LayerTypes[i] == LayerKind.Mamba)
                    mamba[i] = MambaLayerState.Create(c.MambaConvDim, c.MambaDConv, c.MambaNHeads, c.MambaDHead, c.MambaDState, WeightDtype, _device);
                else
                    attention[i] = new AttentionLayerState(c.NumKeyValueHeads, c.HeadDim, c.MaxPositionEmbeddings, WeightDtype, _device);
            }
        }
        return new InferenceState(_identity, mamba, attention, new List<int>());
    }

    /// <summary>
    /// Feeds <paramref name="ids"/> after the tokens already in <paramref name="state"/> and advances the state.
    /// Returns float32 logits: <c>[T, vocab]</c> when <paramref name="allPositions"/>, otherwise <c>[vocab]</c> for the
    /// last position. The caller disposes the returned tensor.
    /// </summary>
    /// <exception cref="ArgumentException">Empty input, a state from another model, or the context would exceed
    /// <c>max_position_embeddings</c>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary.</exception>
    public Tensor Forward(ReadOnlySpan<int> ids, InferenceState state, bool allPositions = false) => Forward(ids, state, allPositions, null);

    /// <inheritdoc cref="Forward(ReadOnlySpan{int}, InferenceState, bool)"/>
    public Tensor Forward(IReadOnlyList<int> ids, InferenceState state, bool allPositions = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        int[] arr = ids as int[] ?? ids.ToArray();
        return Forward(arr.AsSpan(), state, allPositions, null);
    }

    /// <summary>Forward whose pass stops between layers when <paramref name="cancellationToken"/> is cancelled
    /// (throws <see cref="OperationCanceledException"/> and marks <paramref name="state"/> faulted).</summary>
    internal Tensor Forward(IReadOnlyList<int> ids, InferenceState state, CancellationToken cancellationToken, bool allPositions = false)
    {
        int[] arr = ids as int[] ?? ids.ToArray();
        return Forward(arr.AsSpan(), state, allPositions, null, cancellationToken);
    }

    /// <summary>Forward that also returns float32 copies of every residual stream (for debugging/parity tests).</summary>
    internal Tensor Forward(ReadOnlySpan<int> ids, InferenceState state, bool allPositions, List<Tensor>? hidden, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(state);
        state.ThrowIfDisposed();
        if (state.IsFaulted) throw new InvalidOperationException("The inference state is faulted (an earlier forward pass failed midway); discard it.");
        if (!ReferenceEquals(state.Owner, _identity))
            throw new ArgumentException("The inference state was created by a different model instance.", nameof(state));
        if (ids.Length == 0) throw new ArgumentException("At least one token id is required.", nameof(ids));
        var c = Config;
        TokenLimits.CheckContext(state.Length, ids.Length, c.MaxPositionEmbeddings, "The context (cached + new tokens)", nameof(ids));
        TokenLimits.CheckInVocabulary(ids, c.VocabSize, nameof(ids));
        var longs = new long[ids.Length];
        for (int i = 0; i < ids.Length; i++) longs[i] = ids[i];

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var idsT = torch.tensor(longs, ScalarType.Int64, _device);
        var scratch = hidden is null ? null : new List<Tensor>();
        Tensor logits;
        try
        {
            logits = _module.Forward(idsT, state, allPositions, scratch, cancellationToken);
        }
        catch
        {
            state.MarkFaulted();
            throw;
        }
        state.AppendTokens(ids);
        if (scratch is not null)
            foreach (var t in scratch) hidden!.Add(t.MoveToOuterDisposeScope());
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One batched decode step: feeds <paramref name="ids"/>[b] after the tokens of <paramref name="states"/>[b] for every b
    /// and advances all states in one forward pass (projections as [B, ·] GEMMs, experts grouped over the B tokens, each
    /// sequence attending over its own cache). Returns float32 logits [B, vocab]; row b equals
    /// <see cref="Forward(ReadOnlySpan{int}, InferenceState, bool)"/> of that token on that state alone (up to float
    /// rounding). The caller disposes the returned tensor.
    /// </summary>
    /// <exception cref="ArgumentException">Counts differ, no sequence, a state appears twice, is from another model, or is full.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">A state is faulted.</exception>
    public Tensor ForwardBatch(ReadOnlySpan<int> ids, IReadOnlyList<InferenceState> states) => ForwardBatch(ids, states, default);

    /// <inheritdoc cref="ForwardBatch(ReadOnlySpan{int}, IReadOnlyList{InferenceState})"/>
    /// <remarks>The pass stops between layers when <paramref name="cancellationToken"/> is cancelled (every state is then faulted).</remarks>
    internal Tensor ForwardBatch(ReadOnlySpan<int> ids, IReadOnlyList<InferenceState> states, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(states);
        if (states.Count == 0) throw new ArgumentException("At least one sequence is required.", nameof(states));
        if (ids.Length != states.Count) throw new ArgumentException($"{ids.Length} token ids for {states.Count} sequences: one token per sequence is required.", nameof(ids));
        var c = Config;
        var seen = new HashSet<InferenceState>(ReferenceEqualityComparer.Instance);
        var longs = new long[ids.Length];
        for (int b = 0; b < states.Count; b++)
        {
            var state = states[b] ?? throw new ArgumentNullException(nameof(states), $"states[{b}] is null.");
            state.ThrowIfDisposed();
            if (state.IsFaulted) throw new InvalidOperationException($"The inference state states[{b}] is faulted (an earlier forward pass failed midway); discard it.");
            if (!ReferenceEquals(state.Owner, _identity))
                throw new ArgumentException($"The inference state states[{b}] was created by a different model instance.", nameof(states));
            if (!seen.Add(state)) throw new ArgumentException($"states[{b}] appears more than once in the batch.", nameof(states));
            TokenLimits.CheckContext(state.Length, 1, c.MaxPositionEmbeddings, $"Sequence {b}", nameof(states));
            TokenLimits.CheckInVocabulary(ids[b], b, c.VocabSize, nameof(ids));
            longs[b] = ids[b];
        }

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var idsT = torch.tensor(longs, ScalarType.Int64, _device);
        Tensor logits;
        try
        {
            logits = _module.ForwardBatch(idsT, states, cancellationToken);
        }
        catch
        {
            foreach (var s in states) s.MarkFaulted();
            throw;
        }
        for (int b = 0; b < states.Count; b++) states[b].AppendTokens(ids.Slice(b, 1));
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Releases the weights and joins the managed-kernel helper threads.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Kernels.Workers.Dispose();
        ParamBlock.ReleaseAll(_module);
        _module.Dispose();
        _experts?.Dispose();
    }
}
