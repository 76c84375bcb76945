using System.Numerics;

namespace Granite.Core.Constraints;

/// <summary>A set of allowed token ids as a bit set over the model's vocabulary (bit i = token i may be sampled).</summary>
internal sealed class TokenMask
{
    private readonly ulong[] _bits;

    /// <summary>An empty mask over <paramref name="size"/> token ids.</summary>
    public TokenMask(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        Size = size;
        _bits = new ulong[(size + 63) >> 6];
    }

    /// <summary>Number of token ids the mask covers.</summary>
    public int Size { get; }

    /// <summary>The bits (64 ids per word, id i at word i/64, bit i%64).</summary>
    internal ulong[] Bits => _bits;

    /// <summary>Whether token <paramref name="id"/> is allowed.</summary>
    public bool this[int id] => (uint)id < (uint)Size && (_bits[id >> 6] & (1UL << (id & 63))) != 0;

    /// <summary>Number of allowed tokens.</summary>
    public int Count
    {
        get
        {
            int n = 0;
            foreach (ulong w in _bits) n += BitOperations.PopCount(w);
            return n;
        }
    }

    /// <summary>Allowed token ids in increasing order.</summary>
    public IEnumerable<int> AllowedIds()
    {
        for (int w = 0; w < _bits.Length; w++)
        {
            ulong word = _bits[w];
            while (word != 0)
            {
                int bit = BitOperations.TrailingZeroCount(word);
                yield return (w << 6) + bit;
                word &= word - 1;
            }
        }
    }

    internal void Clear() => Array.Clear(_bits);

    internal void Set(int id)
    {
        if ((uint)id < (uint)Size) _bits[id >> 6] |= 1UL << (id & 63);
    }

    internal void Or(ulong[] other)
    {
        int n = Math.Min(other.Length, _bits.Length);
        for (int i = 0; i < n; i++) _bits[i] |= other[i];
    }

    /// <summary>Sets logits of disallowed ids in <c>[0, logits.Length)</c> to −∞.</summary>
    internal void Apply(Span<float> logits)
    {
        int n = Math.Min(logits.Length, Size);
        int words = n >> 6;
        for (int w = 0; w < words; w++)
        {
            ulong word = _bits[w];
            if (word == ulong.MaxValue) continue;
            var block = logits.Slice(w << 6, 64);
            if (word == 0) { block.Fill(float.NegativeInfinity); continue; }
            for (int b = 0; b < 64; b++)
                if ((word & (1UL << b)) == 0) block[b] = float.NegativeInfinity;
        }
        for (int i = words << 6; i < n; i++)
            if ((_bits[i >> 6] & (1UL << (i & 63))) == 0) logits[i] = float.NegativeInfinity;
        logits[n..].Fill(float.NegativeInfinity);
    }
}
