using System.Numerics;

namespace Granite.Core.Generation;

/// <summary>
/// The sampler's seeded random source: xoshiro256** (Blackman and Vigna) with its 256-bit state expanded from the
/// 64-bit seed by SplitMix64. Managed, allocation-free and platform independent: the same seed gives the same
/// sequence on every machine and runtime. Not thread-safe (one per <see cref="Sampler"/>).
/// </summary>
internal struct SamplerRandom
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>A generator whose sequence is fixed by <paramref name="seed"/>.</summary>
    public SamplerRandom(ulong seed)
    {
        ulong sm = seed;
        _s0 = SplitMix64(ref sm);
        _s1 = SplitMix64(ref sm);
        _s2 = SplitMix64(ref sm);
        _s3 = SplitMix64(ref sm); // SplitMix64 never yields four zero words in a row, so the state is valid.
    }

    /// <summary>A generator with the given raw state (not all zero); for reference-vector tests.</summary>
    internal SamplerRandom(ulong s0, ulong s1, ulong s2, ulong s3)
    {
        if ((s0 | s1 | s2 | s3) == 0) throw new ArgumentException("The xoshiro256** state must not be all zero.");
        (_s0, _s1, _s2, _s3) = (s0, s1, s2, s3);
    }

    /// <summary>One step of SplitMix64 (Steele, Lea and Flood): advances <paramref name="state"/> and returns the mixed value.</summary>
    internal static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform number in [0, 1) with 53 random bits (every double k·2⁻⁵³ equally likely).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
