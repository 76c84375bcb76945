using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Granite.Core.Generation;

/// <summary>
/// Turns the logits of the last position into the next token id: padding mask, repetition/frequency/presence
/// penalties, then greedy argmax or temperature + top-k + top-p sampling driven by a seeded <see cref="Generator"/>.
/// </summary>
/// <remarks>
/// <para>One instance per generation request (it owns the random generator, so a seeded request is reproducible).
/// Not thread-safe; call it on the inference thread.</para>
/// <para>The logits are read once from the tensor's memory into a reused managed buffer and processed with SIMD
/// (<see cref="TensorPrimitives"/>) on the calling thread: at V = 100352, LibTorch's CPU <c>argmax</c>/<c>topk</c>
/// cost 0.16–0.26 ms each and <c>multinomial</c>/<c>sort</c> several ms (and far more when the intra-op thread pool
/// competes for cores), while this path stays in the tens to a few hundreds of µs. Sampling draws one uniform number
/// per token from the <see cref="Generator"/> and inverts the cumulative distribution of the kept tokens.</para>
/// </remarks>
internal sealed class Sampler : IDisposable
{
    /// <summary>Float bits shifted right by this give the top-p histogram bucket (sign 0, 8 exponent, 4 mantissa bits).</summary>
    private const int BucketShift = 19;
    private const int BucketCount = (0x7F800000 >> BucketShift) + 1;
    /// <summary>Top-p fast path: candidates are the tokens with weight ≥ this (relative to the maximum, which is 1).</summary>
    private const float FastCut = 1f / 4096;
    private const int FastMaxCandidates = 4096;

    private readonly SamplingOptions _options;
    private readonly Generator? _generator;
    private readonly float _temperature;
    private readonly int _topK;
    private readonly float _topP;
    private readonly float _repetition;
    private readonly float _frequency;
    private readonly float _presence;

    // Reused scratch buffers (grown on demand, never shrunk).
    private float[] _work = Array.Empty<float>();
    private int[] _ids = Array.Empty<int>();
    private int[] _generatedCounts = Array.Empty<int>();
    private bool[] _seen = Array.Empty<bool>();
    private readonly List<int> _touched = new();
    private double[]? _bucketMass;
    private readonly List<int> _nucleus = new();
    private readonly List<int> _edge = new();

    /// <summary>Creates a sampler; validates <paramref name="options"/>.</summary>
    public Sampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _temperature = options.Temperature ?? 0f;
        _topK = options.TopK ?? 0;
        _topP = options.TopP ?? 1f;
        _repetition = options.RepetitionPenalty ?? 1f;
        _frequency = options.FrequencyPenalty ?? 0f;
        _presence = options.PresencePenalty ?? 0f;
        Seed = options.Seed ?? Random.Shared.NextInt64();
        if (!options.IsGreedy)
            _generator = new Generator(unchecked((ulong)Seed));
    }

    /// <summary>The seed in use (the given one, or the random one drawn when none was given), for reproduction.</summary>
    public long Seed { get; }

    /// <summary>The options this sampler was built with.</summary>
    public SamplingOptions Options => _options;

    private bool HasPenalties => _repetition != 1f || _frequency != 0f || _presence != 0f;

    /// <summary>Chooses the next token.</summary>
    /// <param name="logits">Logits of the last position, shape [V] or [1, V], any float dtype and device (not modified).</param>
    /// <param name="contextTokens">Prompt followed by the tokens generated so far (used by the penalties).</param>
    /// <param name="generatedStart">Index in <paramref name="contextTokens"/> where the generated tokens begin.</param>
    /// <returns>The token id, in [0, min(V, MaskTokenIdsFrom)).</returns>
    /// <exception cref="ArgumentException">Bad shape, or a context token id outside [0, V).</exception>
    /// <exception cref="InvalidOperationException">The logits contain NaN or no finite value.</exception>
    /// <param name="allowed">Tokens allowed by a constraint (others get −∞ after the penalties), or null.</param>
    public int Next(Tensor logits, IReadOnlyList<int> contextTokens, int generatedStart, Constraints.TokenMask? allowed = null)
    {
        var x = Prepare(logits, contextTokens, generatedStart, out _);
        allowed?.Apply(x);
        if (_generator is null)
        {
            int id = TensorPrimitives.IndexOfMax(x); // first maximum, like torch.argmax; first NaN if any
            CheckBest(x[id]);
            return id;
        }
        return Draw(x);
    }

    /// <summary>
    /// The logits after padding mask and penalties (before temperature), full length V with −∞ in masked rows.
    /// For tests and diagnostics; the returned tensor belongs to the caller.
    /// </summary>
    internal Tensor AdjustLogits(Tensor logits, IReadOnlyList<int> contextTokens, int generatedStart)
    {
        var x = Prepare(logits, contextTokens, generatedStart, out int vocab);
        var full = new float[vocab];
        x.CopyTo(full);
        full.AsSpan(x.Length).Fill(float.NegativeInfinity);
        return tensor(full);
    }

    /// <summary>Copies the unmasked logits [0, n) into the work buffer as float32 and applies the penalties.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Span<float> Prepare(Tensor logits, IReadOnlyList<int> contextTokens, int generatedStart, out int vocab)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(contextTokens);
        if (generatedStart < 0 || generatedStart > contextTokens.Count)
            throw new ArgumentOutOfRangeException(nameof(generatedStart), generatedStart, $"generatedStart must be in [0, {contextTokens.Count}].");
        bool batchOfOne = logits.dim() == 2 && logits.shape[0] == 1;
        if (!(logits.dim() == 1 || batchOfOne) || logits.shape[^1] < 1)
            throw new ArgumentException($"logits must have shape [V] or [1, V]; got [{string.Join(", ", logits.shape)}].", nameof(logits));

        vocab = checked((int)logits.shape[^1]);
        int n = _options.MaskTokenIdsFrom is { } mask && mask < vocab ? mask : vocab;
        if (_work.Length < n)
            _work = new float[n];
        var x = _work.AsSpan(0, n);

        using (NewDisposeScope())
        {
            var v = logits;
            if (v.device_type != DeviceType.CPU)
                v = v.cpu();
            if (!v.is_contiguous())
                v = v.contiguous();
            switch (v.dtype)
            {
                case ScalarType.Float32:
                    MemoryMarshal.Cast<byte, float>(v.bytes)[..n].CopyTo(x);
                    break;
                case ScalarType.BFloat16:
                    var raw = MemoryMarshal.Cast<byte, ushort>(v.bytes)[..n];
                    for (int i = 0; i < raw.Length; i++)
                        x[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
                    break;
                default:
                    if (!v.is_floating_point())
                        throw new ArgumentException($"logits must be a floating-point tensor; got {v.dtype}.", nameof(logits));
                    MemoryMarshal.Cast<byte, float>(v.to(ScalarType.Float32).bytes)[..n].CopyTo(x);
                    break;
            }
        }

        if (HasPenalties)
            ApplyPenalties(x, vocab, contextTokens, generatedStart);
        return x;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ApplyPenalties(Span<float> x, int vocab, IReadOnlyList<int> context, int generatedStart)
    {
        int n = x.Length;
        if (_seen.Length < n)
        {
            _seen = new bool[n];
            _generatedCounts = new int[n];
        }
        bool repetition = _repetition != 1f;
        bool frequency = _frequency != 0f || _presence != 0f;
        try
        {
            for (int i = repetition ? 0 : generatedStart; i < context.Count; i++)
            {
                int id = context[i];
                if ((uint)id >= (uint)vocab)
                    throw new ArgumentException($"contextTokens[{i}] = {id} is outside the vocabulary [0, {vocab}).", "contextTokens");
                if (id >= n)
                    continue; // masked anyway
                if (!_seen[id])
                {
                    _seen[id] = true;
                    _touched.Add(id);
                }
                if (i >= generatedStart)
                    _generatedCounts[id]++;
            }
            foreach (int id in _touched)
            {
                float v = x[id];
                if (repetition)
                    v = v < 0f ? v * _repetition : v / _repetition;
                int count = _generatedCounts[id];
                if (frequency && count > 0)
                    v -= count * _frequency + _presence;
                x[id] = v;
            }
        }
        finally
        {
            foreach (int id in _touched)
            {
                _seen[id] = false;
                _generatedCounts[id] = 0;
            }
            _touched.Clear();
        }
    }

    private static void CheckBest(float best)
    {
        if (float.IsNaN(best))
            throw new InvalidOperationException("The logits contain NaN; cannot choose a token.");
        if (float.IsNegativeInfinity(best))
            throw new InvalidOperationException("All logits are −∞; cannot choose a token.");
    }

    private double NextUniform()
    {
        using var r = rand(1, dtype: ScalarType.Float64, generator: _generator);
        return r.item<double>();
    }

    private int Draw(Span<float> x)
    {
        int n = x.Length;
        float max = TensorPrimitives.Max(x); // NaN if any NaN
        CheckBest(max);
        double u = NextUniform();

        if (_topK > 0 && _topK < n)
        {
            int k = SelectTopK(x, _topK);
            var ids = _ids.AsSpan(0, k);
            // Weights of the candidates only: exp((x − max) / T); subtracting the max first keeps tiny temperatures finite.
            var weights = k <= 256 ? stackalloc float[k] : new float[k];
            for (int j = 0; j < k; j++)
                weights[j] = MathF.Exp((x[ids[j]] - max) / _temperature);
            return DrawSorted(ids, weights, u);
        }

        // Unnormalised probabilities in place: w = exp((x − max) / T) ∈ [0, 1], the maximum has weight 1.
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Divide(x, _temperature, x);
        TensorPrimitives.Exp(x, x);
        return _topP < 1f ? DrawNucleus(x, u) : DrawAll(x, u);
    }

    /// <summary>Candidates sorted by decreasing weight: applies top-p (renormalised over them) and inverts the CDF.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int DrawSorted(ReadOnlySpan<int> ids, ReadOnlySpan<float> weights, double u)
    {
        double total = 0;
        foreach (float w in weights) total += w;
        int keep = weights.Length;
        double mass = total;
        if (_topP < 1f)
        {
            // Keep candidate j while the mass strictly before it is < p (HF TopPLogitsWarper, min_tokens_to_keep = 1).
            double target = _topP * total, before = 0;
            keep = 0;
            while (keep < weights.Length && (keep == 0 || before < target))
                before += weights[keep++];
            mass = before;
        }
        double threshold = u * mass, acc = 0;
        int last = ids[0];
        for (int j = 0; j < keep; j++)
        {
            if (weights[j] <= 0f) continue;
            acc += weights[j];
            last = ids[j];
            if (acc > threshold) return ids[j];
        }
        return last;
    }

    /// <summary>Top-p over the whole vocabulary without sorting it: a histogram of the weights' float bits finds the
    /// bucket where the descending cumulative mass crosses p; only that bucket is sorted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int DrawNucleus(ReadOnlySpan<float> w, double u)
    {
        // Fast path (peaked distributions, the common case): if the tokens with weight ≥ FastCut already hold mass
        // ≥ p, the nucleus lies among them, since every other token weighs less than each of them.
        _edge.Clear();
        double total = 0, heavy = 0;
        for (int i = 0; i < w.Length; i++)
        {
            float v = w[i];
            total += v;
            if (v >= FastCut)
            {
                heavy += v;
                _edge.Add(i);
            }
        }
        double target = _topP * total;
        if (heavy >= target && _edge.Count <= FastMaxCandidates)
        {
            var candidates = CollectionsMarshal.AsSpan(_edge);
            var work = _work; // w is _work[0..n)
            candidates.Sort((a, b) => work[a] != work[b] ? work[b].CompareTo(work[a]) : a.CompareTo(b));
            double mass = 0;
            int keep = 0;
            while (keep < candidates.Length && (keep == 0 || mass < target))
                mass += w[candidates[keep++]];
            double draw = u * mass, sum = 0;
            for (int j = 0; j < keep; j++)
            {
                sum += w[candidates[j]];
                if (sum > draw) return candidates[j];
            }
            return candidates[keep - 1];
        }

        var bucketMass = _bucketMass ??= new double[BucketCount];
        Array.Clear(bucketMass);
        for (int i = 0; i < w.Length; i++)
        {
            float v = w[i];
            bucketMass[BitConverter.SingleToInt32Bits(v) >> BucketShift] += v;
        }

        double above = 0;
        int edgeBucket = BucketCount - 1;
        for (; edgeBucket > 0; edgeBucket--)
        {
            if (bucketMass[edgeBucket] == 0) continue;
            if (above + bucketMass[edgeBucket] >= target) break;
            above += bucketMass[edgeBucket];
        }

        // Members of higher buckets are all in the nucleus; the edge bucket is sorted (weight desc, id asc) and cut.
        _nucleus.Clear();
        _edge.Clear();
        for (int i = 0; i < w.Length; i++)
        {
            int b = BitConverter.SingleToInt32Bits(w[i]) >> BucketShift;
            if (b > edgeBucket) _nucleus.Add(i);
            else if (b == edgeBucket) _edge.Add(i);
        }
        var edge = CollectionsMarshal.AsSpan(_edge);
        var weights = _work; // w is _work[0..n)
        if (edge.Length > 1)
            edge.Sort((a, b) => weights[a] != weights[b] ? weights[b].CompareTo(weights[a]) : a.CompareTo(b));
        double before = above;
        foreach (int id in edge)
        {
            if (_nucleus.Count > 0 && before >= target) break;
            _nucleus.Add(id);
            before += w[id];
        }

        // Inverse CDF over the nucleus (in any fixed order: ascending ids for the bulk, then the edge members).
        double threshold = u * before, acc = 0;
        int last = _nucleus[0];
        foreach (int id in _nucleus)
        {
            float v = w[id];
            if (v <= 0f) continue;
            acc += v;
            last = id;
            if (acc > threshold) return id;
        }
        return last;
    }

    /// <summary>Inverse CDF over all weights in id order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int DrawAll(ReadOnlySpan<float> w, double u)
    {
        double total = 0;
        foreach (float v in w) total += v;
        double threshold = u * total, acc = 0;
        int last = -1;
        for (int i = 0; i < w.Length; i++)
        {
            if (w[i] <= 0f) continue;
            acc += w[i];
            last = i;
            if (acc > threshold) return i;
        }
        return last;
    }

    /// <summary>Fills <c>_ids[0..k)</c> with the k largest logits, sorted by (logit desc, id asc); returns k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int SelectTopK(ReadOnlySpan<float> x, int k)
    {
        if (_ids.Length < k)
            _ids = new int[k];
        var heap = _ids.AsSpan(0, k); // min-heap: root = worst kept candidate (smallest logit, largest id on ties)
        for (int i = 0; i < k; i++)
        {
            heap[i] = i;
            SiftUp(heap, x, i);
        }
        float worst = x[heap[0]];
        for (int i = k; i < x.Length; i++)
        {
            float v = x[i];
            if (v <= worst) continue; // equal logits keep the lower id, which is already in the heap
            heap[0] = i;
            SiftDown(heap, x, 0);
            worst = x[heap[0]];
        }
        var logits = _work; // x is _work[0..n)
        heap.Sort((a, b) => logits[a] != logits[b] ? logits[b].CompareTo(logits[a]) : a.CompareTo(b));
        return k;
    }

    private static bool Worse(ReadOnlySpan<float> x, int a, int b) => x[a] < x[b] || (x[a] == x[b] && a > b);

    private static void SiftUp(Span<int> heap, ReadOnlySpan<float> x, int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) / 2;
            if (!Worse(x, heap[i], heap[parent])) break;
            (heap[i], heap[parent]) = (heap[parent], heap[i]);
            i = parent;
        }
    }

    private static void SiftDown(Span<int> heap, ReadOnlySpan<float> x, int i)
    {
        while (true)
        {
            int left = 2 * i + 1, right = left + 1, smallest = i;
            if (left < heap.Length && Worse(x, heap[left], heap[smallest])) smallest = left;
            if (right < heap.Length && Worse(x, heap[right], heap[smallest])) smallest = right;
            if (smallest == i) return;
            (heap[i], heap[smallest]) = (heap[smallest], heap[i]);
            i = smallest;
        }
    }

    /// <inheritdoc />
    public void Dispose() => _generator?.Dispose();
}
