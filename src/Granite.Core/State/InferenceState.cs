using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.State;

/// <summary>
/// Per-sequence inference state of a Granite model: for every Mamba layer the conv window and the SSM state, for every
/// attention layer the key/value cache, plus the token ids already processed. Created by
/// <see cref="Modeling.GraniteModel.CreateState"/>, advanced by <see cref="Modeling.GraniteModel.Forward(ReadOnlySpan{int}, InferenceState, bool)"/>.
/// </summary>
/// <remarks>A plain data holder: not thread-safe; use one state per sequence and one thread at a time.</remarks>
internal sealed class InferenceState : IDisposable
{
    private readonly List<int> _tokens;
    private bool _disposed;

    internal InferenceState(object owner, MambaLayerState?[] mamba, AttentionLayerState?[] attention, List<int> tokens)
    {
        Owner = owner;
        Mamba = mamba;
        Attention = attention;
        _tokens = tokens;
    }

    /// <summary>Number of tokens processed so far (the position of the next token).</summary>
    public int Length => _tokens.Count;

    /// <summary>The token ids this state covers, in order.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>Bytes held by the state's tensors (KV buffers counted at their allocated capacity).</summary>
    public long ByteSize
    {
        get
        {
            long total = 0;
            foreach (var m in Mamba) if (m is not null) total += m.ByteSize;
            foreach (var a in Attention) if (a is not null) total += a.ByteSize;
            return total;
        }
    }

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>The model identity this state belongs to.</summary>
    internal object Owner { get; }

    /// <summary>Per layer: the Mamba state, or null for attention layers.</summary>
    internal MambaLayerState?[] Mamba { get; }

    /// <summary>Per layer: the KV cache, or null for Mamba layers.</summary>
    internal AttentionLayerState?[] Attention { get; }

    internal void AppendTokens(ReadOnlySpan<int> ids)
    {
        foreach (var id in ids) _tokens.Add(id);
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>True after a forward pass failed midway: the tensors may be partly advanced, so the state is unusable.</summary>
    public bool IsFaulted { get; private set; }

    internal void MarkFaulted() => IsFaulted = true;

    /// <summary>A deep copy (tensors are copied); the copy is independent of this state.</summary>
    public InferenceState Clone()
    {
        ThrowIfDisposed();
        if (IsFaulted) throw new InvalidOperationException("The inference state is faulted (a forward pass failed midway); discard it.");
        return new InferenceState(Owner,
            Mamba.Select(m => m?.Clone()).ToArray(),
            Attention.Select(a => a?.Clone()).ToArray(),
            new List<int>(_tokens));
    }

    /// <summary>Releases the state's tensors.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var m in Mamba) m?.Dispose();
        foreach (var a in Attention) a?.Dispose();
    }
}

/// <summary>Constant-size state of one Mamba layer.</summary>
internal sealed class MambaLayerState : IDisposable
{
    /// <summary>Last K raw (pre-conv) xBC inputs, [conv_dim, K], oldest column first, zero-padded at the start; compute dtype.</summary>
    public Tensor Conv { get; }

    /// <summary>SSM state S after the last token, [n_heads, head_dim, d_state], float32.</summary>
    public Tensor Ssm { get; }

    public MambaLayerState(Tensor conv, Tensor ssm)
    {
        Conv = conv;
        Ssm = ssm;
    }

    public static MambaLayerState Create(long convDim, long kernel, long heads, long headDim, long dState, ScalarType dtype, Device device)
    {
        var conv = torch.zeros(new[] { convDim, kernel }, dtype, device).DetachFromDisposeScope();
        var ssm = torch.zeros(new[] { heads, headDim, dState }, ScalarType.Float32, device).DetachFromDisposeScope();
        return new MambaLayerState(conv, ssm);
    }

    public long ByteSize => Conv.numel() * Conv.element_size() + Ssm.numel() * Ssm.element_size();

    public MambaLayerState Clone() => new(Conv.clone().DetachFromDisposeScope(), Ssm.clone().DetachFromDisposeScope());

    public void Dispose()
    {
        Conv.Dispose();
        Ssm.Dispose();
    }
}

/// <summary>Growable key/value cache of one attention layer.</summary>
internal sealed class AttentionLayerState : IDisposable
{
    private readonly long _kvHeads, _headDim, _maxCapacity;
    private readonly ScalarType _dtype;
    private readonly Device _device;
    private Tensor? _keys, _values;

    public AttentionLayerState(long kvHeads, long headDim, long maxCapacity, ScalarType dtype, Device device)
    {
        _kvHeads = kvHeads;
        _headDim = headDim;
        _maxCapacity = maxCapacity;
        _dtype = dtype;
        _device = device;
    }

    /// <summary>Cached positions.</summary>
    public long Length { get; private set; }

    /// <summary>Allocated positions.</summary>
    public long Capacity => _keys?.shape[1] ?? 0;

    public long ByteSize => _keys is null ? 0 : 2 * _keys.numel() * _keys.element_size();

    /// <summary>Keys [n_kv, Length, head_dim] (a view into the buffer; valid until the next append).</summary>
    public Tensor Keys => _keys!.narrow(1, 0, Length);

    /// <summary>Values [n_kv, Length, head_dim] (a view into the buffer; valid until the next append).</summary>
    public Tensor Values => _values!.narrow(1, 0, Length);

    /// <summary>Appends k and v, each [n_kv, T, head_dim]; grows the buffers geometrically.</summary>
    public void Append(Tensor k, Tensor v)
    {
        long t = k.shape[1];
        long need = Length + t;
        if (need > Capacity) Grow(need);
        // The views are disposed here: a caller outside a dispose scope (restoring a session snapshot) would otherwise
        // leave them to the finalizer, and each keeps the whole KV buffer alive after the state is disposed.
        using (var dk = _keys!.narrow(1, Length, t)) dk.copy_(k);
        using (var dv = _values!.narrow(1, Length, t)) dv.copy_(v);
        Length = need;
    }

    private void Grow(long need)
    {
        long cap = Math.Max(Capacity, 64);
        while (cap < need) cap *= 2;
        cap = Math.Max(need, Math.Min(cap, _maxCapacity));
        var nk = torch.zeros(new[] { _kvHeads, cap, _headDim }, _dtype, _device).DetachFromDisposeScope();
        var nv = torch.zeros(new[] { _kvHeads, cap, _headDim }, _dtype, _device).DetachFromDisposeScope();
        if (Length > 0)
        {
            using (var a = nk.narrow(1, 0, Length)) using (var src = _keys!.narrow(1, 0, Length)) a.copy_(src);
            using (var a = nv.narrow(1, 0, Length)) using (var src = _values!.narrow(1, 0, Length)) a.copy_(src);
        }
        _keys?.Dispose();
        _values?.Dispose();
        _keys = nk;
        _values = nv;
    }

    public AttentionLayerState Clone()
    {
        var c = new AttentionLayerState(_kvHeads, _headDim, _maxCapacity, _dtype, _device);
        if (_keys is not null)
        {
            c._keys = _keys.clone().DetachFromDisposeScope();
            c._values = _values!.clone().DetachFromDisposeScope();
            c.Length = Length;
        }
        return c;
    }

    public void Dispose()
    {
        _keys?.Dispose();
        _values?.Dispose();
        _keys = _values = null;
    }
}
