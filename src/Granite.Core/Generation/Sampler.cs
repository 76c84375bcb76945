using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Granite.Core.Constraints;
using Granite.Core.Modeling;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Granite.Core.Generation;

/// <summary>
/// Turns the logits of the last position into the next token id: padding mask, repetition/frequency/presence
/// penalties, constraint mask, then greedy argmax or temperature + top-k + top-p sampling driven by a seeded managed
/// random source (<see cref="SamplerRandom"/>).
/// </summary>
/// <remarks>
/// <para>A pure function of its inputs: the chosen token depends only on the logits span, the context tokens, the
/// options and the random state, which advances by exactly one uniform number per sampled (non-greedy) token. No
/// tensors, no native calls: the caller copies the logits out of the model's tensor once per step
/// (<see cref="LogitsReader"/>). One instance per generation request (it owns the random state, so a seeded request is
/// reproducible); not thread-safe.</para>
/// <para>The random source is xoshiro256** seeded by SplitMix64. Before it, the sampler drew from a LibTorch
/// <c>torch.Generator</c> (one <c>torch.rand</c> tensor per token), so seeded sequences differ from those of earlier
/// versions; they are now identical on every platform and runtime.</para>
/// <para>Processing uses SIMD (<see cref="TensorPrimitives"/>) and reused scratch buffers: at V = 100352 a step stays
/// in the tens to a few hundreds of µs (LibTorch's <c>argmax</c>/<c>topk</c>/<c>multinomial</c> cost 0.16 ms to
/// several ms each).</para>
/// </remarks>
internal sealed class Sampler
{
    /// <summary>Float bits shifted right by this give the top-p histogram bucket (sign 0, 8 exponent, 4 mantissa bits).</summary>
    private const int BucketShift = 19;
    private const int BucketCount = (0x7F800000 >> BucketShift) + 1;
    /// <summary>Top-p fast path: candidates are the tokens with weight ≥ this (relative to the maximum, which is 1).</summary>
    private const float FastCut = 1f / 4096;
    private const int FastMaxCandidates = 4096;

    private readonly SamplingOptions _options;
    private readonly bool _greedy;
    private readonly float _temperature;
    private readonly int _topK;
    private readonly float _topP;
    private readonly float _repetition;
    private readonly float _frequency;
    private readonly float _presence;
    private SamplerRandom _random;

    // Reused scratch buffers (grown on demand, never shrunk).
    private int[] _ids = Array.Empty<int>();
    private int[] _generatedCounts = Array.Empty<int>();
    private bool[] _seen = Array.Empty<bool>();
    private readonly List<int> _touched = new();
    private double[]? _bucketMass;
    private readonly List<int> _nucleus = new();
    private readonly List<ulong> _sorted = new();

    /// <summary>Creates a sampler; validates <paramref name="options"/>.</summary>
    public Sampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _greedy = options.IsGreedy;
        _temperature = options.Temperature ?? 0f;
        _topK = options.TopK ?? 0;
        _topP = options.TopP ?? 1f;
        _repetition = options.RepetitionPenalty ?? 1f;
        _frequency = options.FrequencyPenalty ?? 0f;
        _presence = options.PresencePenalty ?? 0f;
        Seed = options.Seed ?? Random.Shared.NextInt64();
        _random = new SamplerRandom(unchecked((ulong)Seed));
    }

    /// <summary>The seed in use (the given one, or the random one drawn when none was given), for reproduction.</summary>
    public long Seed { get; }

    /// <summary>The options this sampler was built with.</summary>
    public SamplingOptions Options => _options;

    private bool HasPenalties => _repetition != 1f || _frequency != 0f || _presence != 0f;

    /// <summary>Chooses the next token.</summary>
    /// <param name="logits">Logits of the last position, length V. Used as work space: overwritten (penalised, masked,
    /// turned into weights).</param>
    /// <param name="contextTokens">Prompt followed by the tokens generated so far (used by the penalties).</param>
    /// <param name="generatedStart">Index in <paramref name="contextTokens"/> where the generated tokens begin.</param>
    /// <param name="allowed">Tokens allowed by a constraint (others get −∞ after the penalties), or null.</param>
    /// <returns>The token id, in [0, min(V, MaskTokenIdsFrom)).</returns>
    /// <exception cref="ArgumentException">Empty logits, or a context token id outside [0, V).</exception>
    /// <exception cref="InvalidOperationException">The logits contain NaN or no finite value.</exception>
    public int Next(Span<float> logits, IReadOnlyList<int> contextTokens, int generatedStart, TokenMask? allowed = null)
    {
        var x = Prepare(logits, contextTokens, generatedStart);
        allowed?.Apply(x);
        return _greedy ? Greedy(x) : Draw(x, _random.NextDouble());
    }

    /// <summary>
    /// The choice alone for a given uniform number: greedy argmax, or temperature, top-k, top-p and the inverse CDF at
    /// <paramref name="u"/> over <paramref name="logits"/> that are already penalised and masked (overwritten). Pure: the
    /// same logits and <paramref name="u"/> give the same token; <see cref="Next"/> is this with the next uniform of the
    /// seeded sequence. Tests sweep <paramref name="u"/> to check truncation and probabilities exactly.
    /// </summary>
    /// <param name="logits">Candidate logits (length ≤ V); overwritten.</param>
    /// <param name="u">A number in [0, 1); ignored when greedy.</param>
    internal int Choose(Span<float> logits, double u) => _greedy ? Greedy(logits) : Draw(logits, u);

    private static int Greedy(ReadOnlySpan<float> x)
    {
        int id = TensorPrimitives.IndexOfMax(x); // first maximum, like torch.argmax; first NaN if any
        CheckBest(x[id]);
        return id;
    }

    /// <summary>
    /// The logits after padding mask and penalties (before temperature), full length V with −∞ in masked rows; the
    /// input is not modified. For tests and diagnostics.
    /// </summary>
    internal float[] AdjustLogits(ReadOnlySpan<float> logits, IReadOnlyList<int> contextTokens, int generatedStart)
    {
        var full = logits.ToArray();
        var x = Prepare(full, contextTokens, generatedStart);
        full.AsSpan(x.Length).Fill(float.NegativeInfinity);
        return full;
    }

    /// <summary>Checks the arguments, applies the penalties in place and returns the unmasked logits [0, n).</summary>
    private Span<float> Prepare(Span<float> logits, IReadOnlyList<int> contextTokens, int generatedStart)
    {
        ArgumentNullException.ThrowIfNull(contextTokens);
        if (logits.IsEmpty)
            throw new ArgumentException("logits must have at least one element.", nameof(logits));
        if (generatedStart < 0 || generatedStart > contextTokens.Count)
            throw new ArgumentOutOfRangeException(nameof(generatedStart), generatedStart, $"generatedStart must be in [0, {contextTokens.Count}].");
        int vocab = logits.Length;
        int n = _options.MaskTokenIdsFrom is { } mask && mask < vocab ? mask : vocab;
        var x = logits[..n];
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
                TokenLimits.CheckInVocabulary(id, i, vocab, "contextTokens", "Context token id");
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

    private int Draw(Span<float> x, double u)
    {
        int n = x.Length;
        float max = TensorPrimitives.Max(x); // NaN if any NaN
        CheckBest(max);

        if (_topK > 0 && _topK < n)
        {
            var ids = SelectTopK(x, _topK);
            // Weights of the candidates only: exp((x − max) / T); subtracting the max first keeps tiny temperatures finite.
            int k = ids.Length;
            var weights = k <= 256 ? stackalloc float[k] : new float[k];
            for (int j = 0; j < k; j++)
                weights[j] = MathF.Exp((x[ids[j]] - max) / _temperature);
            return DrawSorted(ids, weights, u);
        }

        // Unnormalised probabilities in place: w = exp((x − max) / T) ∈ [0, 1], the maximum has weight 1.
        ToWeights(x, max, _temperature);
        return _topP < 1f ? DrawNucleus(x, u) : DrawAll(x, u);
    }

    /// <summary>x ← exp((x − max) / T), one fused pass. Scalar <see cref="MathF.Exp"/> rather than
    /// <see cref="TensorPrimitives"/>.Exp: the latter runs unoptimized until the JIT tiers it up (measured on this
    /// project's CI machine: 0.6–0.8 s per call at V = 100352 for the first ~20 calls, ~7 ms per call at V = 1000 for the
    /// first ~1000 calls, under load), while this loop is compiled optimized on its first call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ToWeights(Span<float> x, float max, float temperature)
    {
        for (int i = 0; i < x.Length; i++)
            x[i] = MathF.Exp((x[i] - max) / temperature);
    }

    /// <summary>Sort key ordering by decreasing value, then increasing id (ascending keys; values are never NaN).</summary>
    private static ulong DescendingKey(float value, int id)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value + 0f); // + 0 turns −0 into +0, which compare equal
        uint ascending = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        return ((ulong)~ascending << 32) | (uint)id;
    }

    private static int IdOf(ulong key) => (int)(uint)key;

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
        _sorted.Clear();
        double total = 0, heavy = 0;
        for (int i = 0; i < w.Length; i++)
        {
            float v = w[i];
            total += v;
            if (v >= FastCut)
            {
                heavy += v;
                if (_sorted.Count <= FastMaxCandidates) _sorted.Add(DescendingKey(v, i));
            }
        }
        double target = _topP * total;
        if (heavy >= target && _sorted.Count <= FastMaxCandidates)
        {
            var candidates = CollectionsMarshal.AsSpan(_sorted);
            candidates.Sort();
            double mass = 0;
            int keep = 0;
            while (keep < candidates.Length && (keep == 0 || mass < target))
                mass += w[IdOf(candidates[keep++])];
            double draw = u * mass, sum = 0;
            for (int j = 0; j < keep; j++)
            {
                int id = IdOf(candidates[j]);
                sum += w[id];
                if (sum > draw) return id;
            }
            return IdOf(candidates[keep - 1]);
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
        _sorted.Clear();
        for (int i = 0; i < w.Length; i++)
        {
            int b = BitConverter.SingleToInt32Bits(w[i]) >> BucketShift;
            if (b > edgeBucket) _nucleus.Add(i);
            else if (b == edgeBucket) _sorted.Add(DescendingKey(w[i], i));
        }
        var edge = CollectionsMarshal.AsSpan(_sorted);
        edge.Sort();
        double before = above;
        foreach (ulong key in edge)
        {
            if (_nucleus.Count > 0 && before >= target) break;
            int id = IdOf(key);
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

    /// <summary>The k largest logits' ids, sorted by (logit desc, id asc), in a reused buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ReadOnlySpan<int> SelectTopK(ReadOnlySpan<float> x, int k)
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
        _sorted.Clear();
        foreach (int id in heap) _sorted.Add(DescendingKey(x[id], id));
        var keys = CollectionsMarshal.AsSpan(_sorted);
        keys.Sort();
        for (int j = 0; j < k; j++) heap[j] = IdOf(keys[j]);
        return heap;
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
}
