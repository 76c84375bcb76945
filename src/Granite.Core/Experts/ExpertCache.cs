using System.Diagnostics.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Experts;

/// <summary>Where an expert's weights are held.</summary>
internal enum ExpertTier
{
    /// <summary>Materialised in the compute dtype on the compute device (a cache slot).</summary>
    Resident,

    /// <summary>Materialised in the compute dtype in host RAM, staging for a GPU compute device.</summary>
    Host,

    /// <summary>Only in the memory-mapped checkpoint (page cache, reclaimable; never counted as resident).</summary>
    Mapped,
}

/// <summary>
/// The hot-expert cache of one MoE layer. The mapped tier is the fused checkpoint tensors (<c>input_linear</c>
/// <c>[E, 2I, H]</c>, <c>output_linear</c> <c>[E, H, I]</c>, zero-copy views of the mapped file, stored dtype); expert
/// <c>e</c> is the view <c>[e]</c>, so a single expert is read without touching the others. Resident experts live in
/// <see cref="Capacity"/> slots of two preallocated buffers in the compute dtype on the compute device (pages are only
/// touched when a slot is first filled). <see cref="Acquire"/> takes the experts of a whole batch, fetches every miss
/// before compute and pins the slots until the lease is disposed; misses that find no evictable slot (all pinned) or that
/// the policy declines to admit are streamed through transient copies. Thread-safe.
/// </summary>
internal sealed class ExpertCache : IDisposable
{
    private readonly object _gate = new();
    private readonly Tensor _mappedIn, _mappedOut;
    private readonly ScalarType _dtype;
    private readonly Device _device;
    private readonly IExpertEvictionPolicy _policy;
    private readonly int[] _slotOf;      // expert → slot or −1
    private readonly int[] _expertIn;    // slot → expert or −1
    private readonly int[] _pins;        // slot → active leases
    private readonly long[] _requests;   // expert → times requested
    private readonly Tensor?[] _hostIn, _hostOut; // host tier (GPU compute device only)
    private readonly KeyValuePair<string, object?>[] _tags;
    private Tensor? _slotsIn, _slotsOut;
    private long _step;
    private int _occupied;
    private bool _disposed;

    /// <param name="layer">Layer index (metrics tag).</param>
    /// <param name="storeId">Owning store number (metrics tag).</param>
    /// <param name="mappedInput">Fused gate|up weights <c>[E, 2I, H]</c>; the cache takes ownership.</param>
    /// <param name="mappedOutput">Fused down weights <c>[E, H, I]</c>; the cache takes ownership.</param>
    /// <param name="capacity">Resident slots (1..E).</param>
    /// <param name="dtype">Compute dtype.</param>
    /// <param name="device">Compute device.</param>
    /// <param name="policy">Eviction policy.</param>
    public ExpertCache(int layer, int storeId, Tensor mappedInput, Tensor mappedOutput, int capacity, ScalarType dtype, Device device, IExpertEvictionPolicy policy)
    {
        Experts = (int)mappedInput.shape[0];
        if (mappedOutput.shape[0] != Experts) throw new ArgumentException($"layer {layer}: input_linear has {Experts} experts but output_linear has {mappedOutput.shape[0]}");
        if (capacity < 1 || capacity > Experts) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"layer {layer}: capacity must be in [1, {Experts}]");
        Layer = layer;
        StoreId = storeId;
        Capacity = capacity;
        _mappedIn = mappedInput;
        _mappedOut = mappedOutput;
        _dtype = dtype;
        _device = device;
        _policy = policy;
        _slotOf = Enumerable.Repeat(-1, Experts).ToArray();
        _expertIn = Enumerable.Repeat(-1, capacity).ToArray();
        _pins = new int[capacity];
        _requests = new long[Experts];
        bool gpu = device.type == DeviceType.CUDA;
        _hostIn = gpu ? new Tensor?[Experts] : Array.Empty<Tensor?>();
        _hostOut = gpu ? new Tensor?[Experts] : Array.Empty<Tensor?>();
        ExpertBytes = (mappedInput.shape[1] * mappedInput.shape[2] + mappedOutput.shape[1] * mappedOutput.shape[2]) * ExpertOffloadPlan.ElementSize(dtype);
        _tags = new[] { new KeyValuePair<string, object?>("layer", layer), new KeyValuePair<string, object?>("store", storeId) };
        ExpertMetrics.Register(this);
    }

    public int Layer { get; }

    public int StoreId { get; }

    public int Experts { get; }

    public int Capacity { get; }

    /// <summary>Bytes of one expert in the compute dtype.</summary>
    public long ExpertBytes { get; }

    public long Hits { get; private set; }

    public long Misses { get; private set; }

    public long Streamed { get; private set; }

    public long Evictions { get; private set; }

    public long FetchedBytes { get; private set; }

    /// <summary>Wall time spent materialising misses (copies/conversions from the mapped file).</summary>
    public TimeSpan FetchTime { get; private set; }

    /// <summary>Bytes of the filled slots.</summary>
    public long ResidentBytes { get { lock (_gate) return _occupied * ExpertBytes; } }

    /// <summary>Bytes held in the host tier (GPU only).</summary>
    public long HostBytes { get { lock (_gate) return _hostIn.Count(t => t is not null) * ExpertBytes; } }

    /// <summary>The mapped fused tensors (tests).</summary>
    internal Tensor MappedInput => _mappedIn;

    internal Tensor MappedOutput => _mappedOut;

    /// <summary>Resident experts in slot order (−1 = empty slot).</summary>
    public int[] ResidentExperts() { lock (_gate) return (int[])_expertIn.Clone(); }

    /// <summary>How often each expert was requested (routing popularity).</summary>
    public long[] RequestCounts() { lock (_gate) return (long[])_requests.Clone(); }

    /// <summary>Tier of an expert.</summary>
    public ExpertTier TierOf(int expert)
    {
        lock (_gate)
            return _slotOf[expert] >= 0 ? ExpertTier.Resident : _hostIn.Length > 0 && _hostIn[expert] is not null ? ExpertTier.Host : ExpertTier.Mapped;
    }

    /// <summary>
    /// Makes <paramref name="experts"/> (distinct ids, the router's choices for the current batch) available in the compute
    /// dtype: hits are pinned, misses fetched from the mapped file before returning. Dispose the lease after compute.
    /// </summary>
    public ExpertLease Acquire(ReadOnlySpan<int> experts)
    {
        var ids = experts.ToArray();
        var slots = new int[ids.Length];
        var lease = new ExpertLease(this, ids.Length);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            long step = ++_step;
            long hits = 0, misses = 0, streamed = 0, evictions = 0, fetched = 0;
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            for (int j = 0; j < ids.Length; j++)
            {
                int e = ids[j];
                if ((uint)e >= (uint)Experts) throw new ArgumentOutOfRangeException(nameof(experts), e, $"layer {Layer}: expert id outside [0, {Experts})");
                _policy.OnAccess(e, step);
                _requests[e]++;
                slots[j] = _slotOf[e];
                if (slots[j] >= 0) { _pins[slots[j]]++; hits++; }
            }
            for (int j = 0; j < ids.Length; j++)
            {
                if (slots[j] >= 0) continue;
                int e = ids[j];
                misses++;
                fetched += ExpertBytes;
                int slot = FindSlot(e, step, ref evictions);
                if (slot >= 0)
                {
                    Fill(slot, e);
                    _pins[slot]++;
                    slots[j] = slot;
                }
                else
                {
                    streamed++;
                    lease.SetTransient(j, Materialise(e, _mappedIn, _hostIn), Materialise(e, _mappedOut, _hostOut));
                }
            }
            for (int j = 0; j < ids.Length; j++)
                if (slots[j] >= 0) lease.SetSlot(j, slots[j], _slotsIn!.select(0, slots[j]), _slotsOut!.select(0, slots[j]));
            var elapsed = misses > 0 ? System.Diagnostics.Stopwatch.GetElapsedTime(t0) : TimeSpan.Zero;
            Hits += hits; Misses += misses; Streamed += streamed; Evictions += evictions; FetchedBytes += fetched; FetchTime += elapsed;
            if (hits > 0) ExpertMetrics.Hits.Add(hits, _tags);
            if (misses > 0)
            {
                ExpertMetrics.Misses.Add(misses, _tags);
                ExpertMetrics.FetchedBytes.Add(fetched, _tags);
                ExpertMetrics.FetchTime.Record(elapsed.TotalSeconds, _tags);
            }
            if (streamed > 0) ExpertMetrics.Streamed.Add(streamed, _tags);
            if (evictions > 0) ExpertMetrics.Evictions.Add(evictions, _tags);
        }
        return lease;
    }

    /// <summary>A free slot, or an evicted one, or −1 to stream <paramref name="expert"/> through.</summary>
    private int FindSlot(int expert, long step, ref long evictions)
    {
        for (int s = 0; s < Capacity; s++)
            if (_expertIn[s] < 0) return s;
        var candidates = new List<int>(Capacity);
        for (int s = 0; s < Capacity; s++)
            if (_pins[s] == 0) candidates.Add(_expertIn[s]);
        if (candidates.Count == 0) return -1;
        int victim = _policy.ChooseVictim(candidates, step);
        if (!_policy.ShouldAdmit(expert, victim, step)) return -1;
        int slot = _slotOf[victim];
        _slotOf[victim] = -1;
        _expertIn[slot] = -1;
        _occupied--;
        evictions++;
        return slot;
    }

    private void Fill(int slot, int expert)
    {
        EnsureSlots();
        using (var dst = _slotsIn!.select(0, slot)) CopyExpert(dst, expert, _mappedIn, _hostIn);
        using (var dst = _slotsOut!.select(0, slot)) CopyExpert(dst, expert, _mappedOut, _hostOut);
        _slotOf[expert] = slot;
        _expertIn[slot] = expert;
        _occupied++;
    }

    private void EnsureSlots()
    {
        if (_slotsIn is not null) return;
        using var scope = torch.NewDisposeScope();
        // torch.empty: untouched pages of the CPU buffers cost no resident memory until a slot is filled.
        _slotsIn = torch.empty(new[] { Capacity, _mappedIn.shape[1], _mappedIn.shape[2] }, _dtype, _device).DetachFromDisposeScope();
        _slotsOut = torch.empty(new[] { Capacity, _mappedOut.shape[1], _mappedOut.shape[2] }, _dtype, _device).DetachFromDisposeScope();
    }

    private void CopyExpert(Tensor dst, int expert, Tensor mapped, Tensor?[] host)
    {
        using var src = mapped.select(0, expert); // zero-copy view of one expert in the mapped file
        if (host.Length == 0)
        {
            dst.copy_(src); // CPU: convert/copy straight from the page cache
            return;
        }
        // GPU: mapped → host tier (compute dtype) → device, queued on the current stream. TorchSharp 0.107 exposes no
        // pin_memory, so the host copy is pageable and the transfer is effectively synchronous (see docs/expert-offload.md).
        host[expert] ??= HostCopy(src);
        dst.copy_(host[expert]!, true);
    }

    private Tensor HostCopy(Tensor src)
    {
        using var scope = torch.NewDisposeScope();
        return src.to_type(_dtype, copy: true).DetachFromDisposeScope();
    }

    private Tensor Materialise(int expert, Tensor mapped, Tensor?[] host)
    {
        var dst = torch.empty(mapped.shape[1..], _dtype, _device);
        CopyExpert(dst, expert, mapped, host);
        return dst;
    }

    internal void Release(int[] slots)
    {
        lock (_gate)
            foreach (var s in slots)
                if (s >= 0) _pins[s]--;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        ExpertMetrics.Unregister(this);
        _slotsIn?.Dispose();
        _slotsOut?.Dispose();
        _mappedIn.Dispose();
        _mappedOut.Dispose();
        foreach (var t in _hostIn) t?.Dispose();
        foreach (var t in _hostOut) t?.Dispose();
    }
}

/// <summary>The weights of a batch's experts, in <see cref="ExpertCache.Acquire"/> order; dispose after compute.</summary>
internal sealed class ExpertLease : IDisposable
{
    private readonly ExpertCache _cache;
    private readonly int[] _slots;
    private readonly Tensor[] _in, _out;
    private readonly bool[] _transient;
    private bool _disposed;

    internal ExpertLease(ExpertCache cache, int n)
    {
        _cache = cache;
        _slots = Enumerable.Repeat(-1, n).ToArray();
        _in = new Tensor[n];
        _out = new Tensor[n];
        _transient = new bool[n];
    }

    internal void SetSlot(int j, int slot, Tensor input, Tensor output) { _slots[j] = slot; _in[j] = input; _out[j] = output; }

    internal void SetTransient(int j, Tensor input, Tensor output) { _in[j] = input; _out[j] = output; _transient[j] = true; }

    /// <summary>Gate|up weights <c>[2I, H]</c> of the j-th requested expert.</summary>
    public Tensor Input(int j) => _in[j];

    /// <summary>Down weights <c>[H, I]</c> of the j-th requested expert.</summary>
    public Tensor Output(int j) => _out[j];

    /// <summary>Whether the j-th expert was streamed through a transient copy.</summary>
    public bool IsStreamed(int j) => _transient[j];

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _cache.Release(_slots);
        for (int j = 0; j < _in.Length; j++)
        {
            _in[j]?.Dispose();
            _out[j]?.Dispose();
        }
    }
}
