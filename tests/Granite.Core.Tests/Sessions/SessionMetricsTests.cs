using System.Diagnostics.Metrics;
using static Granite.Core.Tests.Sessions.SessionTestSupport;

namespace Granite.Core.Tests.Sessions;

/// <summary>The session counters are counted once per store instance, on a meter from the given <see cref="IMeterFactory"/>.</summary>
public sealed class SessionMetricsTests
{
    private const int Eos = 507;

    /// <summary>A minimal <see cref="IMeterFactory"/> (what <c>services.AddMetrics()</c> registers): creates and owns meters.</summary>
    private sealed class OwningMeterFactory : IMeterFactory
    {
        public List<Meter> Created { get; } = new();

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options.Name, options.Version, options.Tags, scope: this);
            lock (Created) Created.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            lock (Created) foreach (var m in Created) m.Dispose();
        }
    }

    [Fact]
    public async Task FactoryMeterPublishesExactlyTheStoreStatistics()
    {
        using var factory = new OwningMeterFactory();
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Scope == factory) l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => { lock (seen) seen[i.Name] = seen.GetValueOrDefault(i.Name) + v; });
        listener.Start();

        long snapshotBytes;
        using (var engine = Load(meterFactory: factory))
        {
            factory.Created.Should().ContainSingle().Which.Name.Should().Be(Granite.Core.Generation.SessionStore.MeterName);
            var t1 = await engine.GenerateAsync(engine.Encode(SystemTurn + User("Hello")));
            await engine.GenerateAsync(t1.History(Eos).Concat(engine.Encode(NextUser("Again"))).ToArray());
            await engine.GenerateAsync(engine.Encode(SystemTurn + User("Something else")));
            var s = engine.Sessions;
            s.Hits.Should().BeGreaterThanOrEqualTo(1);
            s.Misses.Should().BeGreaterThanOrEqualTo(1);
            snapshotBytes = s.StoredBytes / s.Count;
            lock (seen)
            {
                // This meter belongs to this engine only, so the published totals equal the store's statistics exactly.
                seen.GetValueOrDefault("granite.sessions.hits").Should().Be(s.Hits);
                seen.GetValueOrDefault("granite.sessions.misses").Should().Be(s.Misses);
                seen.GetValueOrDefault("granite.sessions.tokens_reused").Should().Be(s.TokensReused);
                seen.GetValueOrDefault("granite.sessions.bytes_stored").Should().Be(s.StoredBytes);
            }
        }

        seen.Clear();
        using var small = Load(budget: snapshotBytes * 3 / 2, meterFactory: factory);
        foreach (var u in new[] { "One", "Two", "Three" }) await small.GenerateAsync(small.Encode(SystemTurn + User(u)));
        small.Sessions.Evictions.Should().BeGreaterThan(0);
        lock (seen)
        {
            seen.GetValueOrDefault("granite.sessions.evictions").Should().Be(small.Sessions.Evictions);
            seen.GetValueOrDefault("granite.sessions.drops").Should().Be(small.Sessions.Drops);
            seen.GetValueOrDefault("granite.sessions.bytes_stored").Should().Be(small.Sessions.StoredBytes);
        }
    }

    [Fact]
    public void WithoutAFactoryEachStoreHasAPrivateMeterReleasedWithTheEngine()
    {
        var engine = Load();
        var other = Load();
        var meter = engine.Sessions.Metrics.Meter;
        meter.Name.Should().Be(Granite.Core.Generation.SessionStore.MeterName);
        meter.Scope.Should().BeNull();
        other.Sessions.Metrics.Meter.Should().NotBeSameAs(meter, "each store counts on its own meter");
        var completed = new List<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter == meter) l.EnableMeasurementEvents(i); };
        listener.MeasurementsCompleted = (i, _) => { lock (completed) completed.Add(i.Name); };
        listener.Start();
        other.Dispose();
        lock (completed) completed.Should().BeEmpty("another engine's disposal leaves this meter alone");
        engine.Dispose();
        lock (completed) completed.Should().Contain("granite.sessions.hits").And.Contain("granite.sessions.bytes_stored");
    }
}
