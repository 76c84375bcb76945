using Granite.Core.Configuration;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Experts;

/// <summary>Counters of one layer's expert cache.</summary>
/// <param name="Layer">Layer index.</param>
/// <param name="Capacity">Resident slots.</param>
/// <param name="ResidentExperts">Filled slots.</param>
/// <param name="ResidentBytes">Bytes of the filled slots (compute dtype).</param>
/// <param name="Hits">Requested experts that were resident.</param>
/// <param name="Misses">Requested experts fetched from the mapped file.</param>
/// <param name="Streamed">Misses served by a transient copy (no slot).</param>
/// <param name="Evictions">Resident experts evicted.</param>
/// <param name="FetchedBytes">Bytes materialised from the mapped file.</param>
/// <param name="FetchTime">Time spent materialising them.</param>
internal sealed record ExpertLayerStats(int Layer, int Capacity, int ResidentExperts, long ResidentBytes, long Hits, long Misses, long Streamed, long Evictions, long FetchedBytes, TimeSpan FetchTime);

/// <summary>
/// The expert store of one model: a <see cref="ExpertCache"/> per MoE layer over the memory-mapped checkpoint, sized by an
/// <see cref="ExpertOffloadPlan"/>. Created by <see cref="Modeling.GraniteModel.Load"/> when offload is enabled.
/// </summary>
internal sealed class ExpertStore : IDisposable
{
    private static int s_nextId;
    private readonly ExpertCache[] _layers;

    private ExpertStore(ExpertOffloadPlan plan, ExpertCache[] layers)
    {
        Plan = plan;
        _layers = layers;
    }

    public ExpertOffloadPlan Plan { get; }

    public IReadOnlyList<ExpertCache> Layers => _layers;

    /// <summary>Name of a layer's fused expert tensor.</summary>
    public static string InputName(int layer) => $"model.layers.{layer}.block_sparse_moe.input_linear.weight";

    /// <inheritdoc cref="InputName"/>
    public static string OutputName(int layer) => $"model.layers.{layer}.block_sparse_moe.output_linear.weight";

    /// <summary>Whether a parameter name is a routed-expert weight.</summary>
    public static bool IsExpertWeight(string name) =>
        name.EndsWith(".block_sparse_moe.input_linear.weight", StringComparison.Ordinal) ||
        name.EndsWith(".block_sparse_moe.output_linear.weight", StringComparison.Ordinal);

    /// <summary>Maps every layer's fused expert tensors (zero-copy) and creates the caches.</summary>
    public static ExpertStore Open(SafetensorsCheckpoint ckpt, GraniteConfig c, ScalarType dtype, Device device, ExpertOffloadOptions options)
    {
        var plan = ExpertOffloadPlan.Create(c, dtype, options);
        int id = Interlocked.Increment(ref s_nextId);
        var caches = new List<ExpertCache>();
        try
        {
            for (int i = 0; i < c.NumHiddenLayers; i++)
            {
                var input = ckpt.GetTensor(InputName(i)).DetachFromDisposeScope();
                Tensor output;
                try { output = ckpt.GetTensor(OutputName(i)).DetachFromDisposeScope(); }
                catch { input.Dispose(); throw; }
                var policy = IExpertEvictionPolicy.Create(options.Policy, c.NumLocalExperts, options.LfuDecay);
                caches.Add(new ExpertCache(i, id, input, output, plan.CapacityPerLayer, dtype, device, policy));
            }
        }
        catch
        {
            foreach (var x in caches) x.Dispose();
            throw;
        }
        return new ExpertStore(plan, caches.ToArray());
    }

    /// <summary>Cache of layer <paramref name="layer"/>.</summary>
    public ExpertCache Layer(int layer) => _layers[layer];

    /// <summary>Resident bytes over all layers.</summary>
    public long ResidentBytes => _layers.Sum(l => l.ResidentBytes);

    /// <summary>Per-layer counters.</summary>
    public IReadOnlyList<ExpertLayerStats> Statistics() => _layers.Select(l =>
    {
        var resident = l.ResidentExperts().Count(e => e >= 0);
        return new ExpertLayerStats(l.Layer, l.Capacity, resident, resident * l.ExpertBytes, l.Hits, l.Misses, l.Streamed, l.Evictions, l.FetchedBytes, l.FetchTime);
    }).ToList();

    public void Dispose()
    {
        foreach (var l in _layers) l.Dispose();
    }
}
