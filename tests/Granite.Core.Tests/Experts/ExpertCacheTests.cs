using Granite.Core.Experts;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Experts;

/// <summary>The per-layer cache on small synthetic expert tensors: eviction order, pinning, streaming, threads.</summary>
public class ExpertCacheTests
{
    private const int E = 8;

    public ExpertCacheTests() => GraniteRuntime.EnsureLoaded();

    /// <summary>BF16 "mapped" tensors [E, 4, 3] / [E, 3, 2] with distinct values per expert.</summary>
    private static ExpertCache NewCache(int capacity, ExpertEvictionPolicy policy, double decay = 1.0)
    {
        using var scope = torch.NewDisposeScope();
        var input = (torch.arange(E * 4 * 3, ScalarType.Float32).reshape(E, 4, 3) / 7).to_type(ScalarType.BFloat16).DetachFromDisposeScope();
        var output = (torch.arange(E * 3 * 2, ScalarType.Float32).reshape(E, 3, 2) / 5 - 3).to_type(ScalarType.BFloat16).DetachFromDisposeScope();
        return new ExpertCache(0, -1, input, output, capacity, ScalarType.Float32, torch.CPU, IExpertEvictionPolicy.Create(policy, E, decay));
    }

    private static void Use(ExpertCache c, params int[] experts)
    {
        using var scope = torch.NewDisposeScope();
        using var lease = c.Acquire(experts);
        for (int j = 0; j < experts.Length; j++)
        {
            using var expectIn = c.MappedInput[experts[j]].to_type(ScalarType.Float32);
            using var expectOut = c.MappedOutput[experts[j]].to_type(ScalarType.Float32);
            lease.Input(j).dtype.Should().Be(ScalarType.Float32);
            lease.Input(j).contiguous().data<float>().ToArray().Should().Equal(expectIn.data<float>().ToArray(), $"expert {experts[j]} gate|up weights");
            lease.Output(j).contiguous().data<float>().ToArray().Should().Equal(expectOut.data<float>().ToArray(), $"expert {experts[j]} down weights");
        }
    }

    private static int[] Resident(ExpertCache c) => c.ResidentExperts().Where(e => e >= 0).Order().ToArray();

    [Fact]
    public void LruEvictsTheLeastRecentlyUsed()
    {
        using var c = NewCache(2, ExpertEvictionPolicy.Lru);
        Use(c, 0);
        Use(c, 1);
        Use(c, 0);
        Use(c, 2);
        Resident(c).Should().Equal(0, 2);
        Use(c, 1);
        Resident(c).Should().Equal(1, 2);
        Use(c, 2);
        Use(c, 3);
        Resident(c).Should().Equal(2, 3);
        (c.Hits, c.Misses, c.Evictions, c.Streamed).Should().Be((2L, 5L, 3L, 0L));
        c.FetchedBytes.Should().Be(5 * c.ExpertBytes);
        c.ExpertBytes.Should().Be((4 * 3 + 3 * 2) * 4);
        c.ResidentBytes.Should().Be(2 * c.ExpertBytes);
    }

    [Fact]
    public void LfuKeepsTheFrequentExpertAndStreamsColdOnes()
    {
        using var c = NewCache(2, ExpertEvictionPolicy.LfuDecay, decay: 1.0);
        Use(c, 0); Use(c, 0); Use(c, 0);
        Use(c, 1);
        Use(c, 2);                      // score 1 ≥ victim 1 (score 1) → admitted, 1 evicted
        Resident(c).Should().Equal(0, 2);
        Use(c, 1);                      // score 2 > 2's score 1 → admitted
        Resident(c).Should().Equal(0, 1);
        Use(c, 3);                      // score 1 < coldest resident (1: score 2) → streamed, nothing evicted
        Resident(c).Should().Equal(0, 1);
        c.Streamed.Should().Be(1);
        c.Evictions.Should().Be(2);
    }

    [Fact]
    public void LfuDecayLetsAnOldHotExpertGo()
    {
        using var c = NewCache(2, ExpertEvictionPolicy.LfuDecay, decay: 0.5);
        Use(c, 0); Use(c, 0); Use(c, 0);
        for (int i = 0; i < 7; i++) Use(c, 1);
        Use(c, 2);                      // 0's score 1.75·0.5^8 < 1 → 0 goes, 1 stays
        Resident(c).Should().Equal(1, 2);
    }

    [Fact]
    public void PinnedSlotsAreNeverEvictedAndOverflowStreams()
    {
        using var c = NewCache(2, ExpertEvictionPolicy.Lru);
        using (var scope = torch.NewDisposeScope())
        {
            using var held = c.Acquire(new[] { 0, 1 });
            held.IsStreamed(0).Should().BeFalse();
            Use(c, 2);                  // both slots pinned → streamed through a transient copy
            c.Streamed.Should().Be(1);
            Resident(c).Should().Equal(0, 1);
            using var wide = c.Acquire(new[] { 3, 4, 5 }); // more distinct experts than slots (a prefill)
            Enumerable.Range(0, 3).Should().OnlyContain(j => wide.IsStreamed(j));
        }
        Use(c, 2);                      // released → evicts the LRU (0)
        Resident(c).Should().Equal(1, 2);
    }

    [Fact]
    public void BatchLargerThanCapacityFillsSlotsThenStreams()
    {
        using var c = NewCache(2, ExpertEvictionPolicy.Lru);
        using (var scope = torch.NewDisposeScope())
        using (var lease = c.Acquire(new[] { 5, 6, 7 }))
        {
            lease.IsStreamed(0).Should().BeFalse();
            lease.IsStreamed(1).Should().BeFalse();
            lease.IsStreamed(2).Should().BeTrue();
        }
        Resident(c).Should().Equal(5, 6);
        Use(c, 5, 6, 7);
        c.Hits.Should().Be(2);
    }

    [Fact]
    public void BadExpertIdsAreRejected()
    {
        using var c = NewCache(2, ExpertEvictionPolicy.Lru);
        var act = () => c.Acquire(new[] { E });
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*expert id outside [0, 8)*");
    }

    [Fact]
    public void ConcurrentLeasesGetTheRightWeights()
    {
        using var c = NewCache(3, ExpertEvictionPolicy.Lru);
        const int threads = 4, rounds = 150;
        var errors = new List<string>();
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var rng = new Random(t);
            try
            {
                for (int r = 0; r < rounds; r++)
                {
                    int a = rng.Next(E), b = (a + 1 + rng.Next(E - 1)) % E;
                    Use(c, a, b);
                }
            }
            catch (Exception ex) { lock (errors) errors.Add(ex.Message); }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        errors.Should().BeEmpty();
        (c.Hits + c.Misses).Should().Be(threads * rounds * 2);
        Resident(c).Should().HaveCount(3);
    }
}
