using Granite.Core.Configuration;
using Granite.Core.Kernels;
using Granite.Core.State;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Modeling;

/// <summary>
/// Self-attention (<c>model.layers.{i}.self_attn</c>): q/k/v/o projections, optional NeoX RoPE, GQA with consecutive
/// KV-head sharing, softmax(q·kᵀ·attention_multiplier) in float32, causal. See granite-spec §4.5.
/// </summary>
internal sealed class GraniteAttention : nn.Module
{
    [ComponentName(Name = "q_proj")] private readonly ParamBlock _qProj;
    [ComponentName(Name = "k_proj")] private readonly ParamBlock _kProj;
    [ComponentName(Name = "v_proj")] private readonly ParamBlock _vProj;
    [ComponentName(Name = "o_proj")] private readonly ParamBlock _oProj;
    private readonly int _heads, _kvHeads, _headDim;
    private readonly double _scale;
    private readonly bool _rope;
    private readonly ScalarType _acc;
    private readonly float[] _invFreq;
    private readonly GraniteKernels _kernels;

    public GraniteAttention(GraniteConfig c, ScalarType dtype, Device device, GraniteKernels kernels) : base(nameof(GraniteAttention))
    {
        _kernels = kernels;
        _heads = c.NumAttentionHeads;
        _kvHeads = c.NumKeyValueHeads;
        _headDim = c.HeadDim;
        _scale = c.AttentionMultiplier;
        _rope = c.UsesRope;
        _acc = Precision.Islands(dtype);
        long h = c.HiddenSize;
        long[]? Bias(long n) => c.AttentionBias ? new[] { n } : null;
        _qProj = new ParamBlock("q_proj", new[] { (long)_heads * _headDim, h }, Bias((long)_heads * _headDim), dtype, device);
        _kProj = new ParamBlock("k_proj", new[] { (long)_kvHeads * _headDim, h }, Bias((long)_kvHeads * _headDim), dtype, device);
        _vProj = new ParamBlock("v_proj", new[] { (long)_kvHeads * _headDim, h }, Bias((long)_kvHeads * _headDim), dtype, device);
        _oProj = new ParamBlock("o_proj", new[] { h, (long)_heads * _headDim }, Bias(h), dtype, device);
        // inv_freq_i = θ^(−2i/d), as float32 like the reference.
        _invFreq = Enumerable.Range(0, _headDim / 2).Select(i => (float)(1.0 / Math.Pow(c.RopeTheta, 2.0 * i / _headDim))).ToArray();
        RegisterComponents();
    }

    /// <summary>Attends <paramref name="u"/> [T, H] at absolute positions start…start+T−1, appending K/V to the cache.</summary>
    public Tensor Forward(Tensor u, AttentionLayerState cache)
    {
        long T = u.shape[0];
        long start = cache.Length;
        var q = _kernels.Linear(u, _qProj.Linear, _qProj.Bias, KernelPart.AttentionQkv).reshape(T, _heads, _headDim);
        var k = _kernels.Linear(u, _kProj.Linear, _kProj.Bias, KernelPart.AttentionQkv).reshape(T, _kvHeads, _headDim);
        var v = _kernels.Linear(u, _vProj.Linear, _vProj.Bias, KernelPart.AttentionQkv).reshape(T, _kvHeads, _headDim);
        Tensor o;
        using (_kernels.Time(KernelPart.AttentionCore))
        {
            if (_rope)
            {
                var (cos, sin) = RopeTables(torch.arange(start, start + T, ScalarType.Float32, u.device), q.dtype); // [T, 1, d]
                q = ApplyRope(q, cos, sin);
                k = ApplyRope(k, cos, sin);
            }
            cache.Append(k.permute(1, 0, 2), v.permute(1, 0, 2));
            o = AttendCached(q, start, cache);
        }
        return _kernels.Linear(o, _oProj.Linear, _oProj.Bias, KernelPart.AttentionOut);
    }

    /// <summary>
    /// One decode token for each of B sequences: <paramref name="u"/> [B, H] (row b belongs to <paramref name="caches"/>[b],
    /// at position caches[b].Length). Projections run as [B, ·] GEMMs; each row attends over its own sequence's KV cache
    /// (lengths differ). Row b equals <see cref="Forward"/> on that sequence alone.
    /// </summary>
    public Tensor ForwardBatch(Tensor u, IReadOnlyList<AttentionLayerState> caches)
    {
        long n = u.shape[0];
        var q = _kernels.Linear(u, _qProj.Linear, _qProj.Bias).reshape(n, _heads, _headDim);
        var k = _kernels.Linear(u, _kProj.Linear, _kProj.Bias).reshape(n, _kvHeads, _headDim);
        var v = _kernels.Linear(u, _vProj.Linear, _vProj.Bias).reshape(n, _kvHeads, _headDim);
        var starts = new long[n];
        for (int b = 0; b < n; b++) starts[b] = caches[b].Length;
        if (_rope)
        {
            var pos = torch.tensor(starts.Select(p => (float)p).ToArray(), device: u.device); // each row at its own position
            var (cos, sin) = RopeTables(pos, q.dtype);
            q = ApplyRope(q, cos, sin);
            k = ApplyRope(k, cos, sin);
        }
        var rows = new Tensor[n];
        for (int b = 0; b < n; b++)
        {
            caches[b].Append(k.narrow(0, b, 1).permute(1, 0, 2), v.narrow(0, b, 1).permute(1, 0, 2));
            rows[b] = AttendCached(q.narrow(0, b, 1), starts[b], caches[b]);
        }
        var o = n == 1 ? rows[0] : torch.cat(rows, 0);                              // [B, n_h·d]
        return _kernels.Linear(o, _oProj.Linear, _oProj.Bias);
    }

    /// <summary>
    /// Queries <paramref name="q"/> [T, n_h, d] at positions start…start+T−1 against <paramref name="cache"/> (which already
    /// holds them); returns [T, n_h·d].
    /// </summary>
    private Tensor AttendCached(Tensor q, long start, AttentionLayerState cache)
    {
        long T = q.shape[0];
        var keys = cache.Keys;                                                      // [n_kv, S, d]
        var values = cache.Values;
        long S = keys.shape[1];

        // One new token at the end of its cache (decode, batched decode): nothing to mask; the managed kernel reads the cache in place.
        // The output is rounded to the cache dtype, as AttendBlock returns it (BF16 for a BF16 model, like the reference).
        if (T == 1 && start == S - 1 && _kernels.UseDecodeAttention(q, keys, values))
        {
            var one = _kernels.DecodeAttend(q, keys, values, _scale);
            return one.dtype == values.dtype ? one : one.to_type(values.dtype);
        }

        int r = _heads / _kvHeads;
        if (_kernels.UpcastAttentionCache(values.dtype, r * T))
        {
            // Upcast the cache once for all query blocks (the kernels decide when; see GraniteKernels.UpcastAttentionCache).
            keys = keys.to_type(ScalarType.Float32);
            values = values.to_type(ScalarType.Float32);
        }

        // Long prefills attend in query blocks so the float32 score matrix stays bounded; each block's intermediates
        // (scores, probabilities: ~2 × KernelTuning.MaxScoreElements floats) are freed before the next block starts.
        long rowsPerBlock = Math.Max(1, _kernels.MaxScoreElements / ((long)_heads * S));
        if (T <= rowsPerBlock) return AttendBlock(q, start, keys, values);
        var parts = new List<Tensor>();
        for (long qs = 0; qs < T; qs += rowsPerBlock)
        {
            using var blockScope = torch.NewDisposeScope();
            long n = Math.Min(rowsPerBlock, T - qs);
            long visible = start + qs + n;                                          // later keys are all masked
            parts.Add(AttendBlock(q.narrow(0, qs, n), start + qs, keys.narrow(1, 0, visible), values.narrow(1, 0, visible)).MoveToOuterDisposeScope());
        }
        var o = torch.cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        return o;
    }

    /// <summary>
    /// softmax(q·kᵀ·attention_multiplier) · v for queries q [n, n_h, d] at absolute positions qStart…qStart+n−1 against
    /// keys/values [n_kv, S, d]; returns [n, n_h·d].
    /// </summary>
    private Tensor AttendBlock(Tensor q, long qStart, Tensor keys, Tensor values)
    {
        long T = q.shape[0];
        long S = keys.shape[1];
        int r = _heads / _kvHeads;
        // Group query heads by their KV head: head h = j·r + i → [n_kv, r·T, d]; no KV copy for GQA.
        var qg = q.permute(1, 0, 2).reshape(_kvHeads, r * T, _headDim);
        var outDtype = values.dtype;
        // Decode-sized passes keep a BF16 cache as is (q rounded to it); Forward upcast it for longer ones.
        if (qg.dtype != keys.dtype) qg = qg.to_type(keys.dtype);                 // projections return float32 for BF16 weights
        var scores = torch.matmul(qg, keys.transpose(1, 2));                        // [n_kv, r·T, S]
        if (scores.dtype != _acc) scores = scores.to_type(_acc);
        scores.mul_(_scale);                                                        // in place: the score block is the big tensor
        if (qStart + T - 1 < S - 1 || T > 1)
        {
            var keyPos = torch.arange(S, ScalarType.Int64, q.device);
            var qryPos = torch.arange(qStart, qStart + T, ScalarType.Int64, q.device);
            var masked = keyPos.unsqueeze(0) > qryPos.unsqueeze(1);                 // [T, S]
            scores.view(_kvHeads, r, T, S).masked_fill_(masked, double.NegativeInfinity);
        }
        var probs = F.softmax(scores, -1).to_type(values.dtype);
        return torch.matmul(probs, values).to_type(outDtype)                        // [n_kv, r·T, d]
            .reshape(_heads, T, _headDim).permute(1, 0, 2).reshape(T, (long)_heads * _headDim);
    }

    /// <summary>cos/sin [T, 1, d] for float32 positions <paramref name="pos"/> [T].</summary>
    private (Tensor Cos, Tensor Sin) RopeTables(Tensor pos, ScalarType dtype)
    {
        var inv = torch.tensor(_invFreq, device: pos.device);                       // [d/2] float32
        var ang = pos.unsqueeze(1) * inv.unsqueeze(0);                              // [T, d/2]
        var emb = torch.cat(new[] { ang, ang }, 1);                                 // [T, d]
        return (emb.cos().to_type(dtype).unsqueeze(1), emb.sin().to_type(dtype).unsqueeze(1)); // [T, 1, d]
    }

    private Tensor ApplyRope(Tensor x, Tensor cos, Tensor sin)
    {
        int half = _headDim / 2;
        var rotated = torch.cat(new[] { -x.narrow(2, half, half), x.narrow(2, 0, half) }, 2);
        return x * cos + rotated * sin;
    }
}
