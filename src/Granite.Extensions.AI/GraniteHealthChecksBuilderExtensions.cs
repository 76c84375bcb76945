using Granite.Extensions.AI.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Health checks of Granite registrations.</summary>
public static class GraniteHealthChecksBuilderExtensions
{
    /// <summary>
    /// Adds a health check of the Granite registration <paramref name="serviceKey"/> (or the non-keyed one): healthy once
    /// the model is loaded, degraded before, unhealthy with the load error. Does not load the model itself.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="serviceKey">The key of a keyed registration, or null.</param>
    /// <param name="name">The check's name (default <c>granite</c>, or <c>granite-KEY</c>).</param>
    /// <param name="failureStatus">Status reported when the model failed to load (default unhealthy).</param>
    /// <param name="tags">Tags of the check.</param>
    /// <exception cref="InvalidOperationException">No Granite client is registered under that key.</exception>
    public static IHealthChecksBuilder AddGranite(this IHealthChecksBuilder builder, object? serviceKey = null, string? name = null, HealthStatus? failureStatus = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var key = GraniteRegistration.Find(builder.Services, serviceKey);
        return builder.Add(new HealthCheckRegistration(
            name ?? "granite" + (serviceKey is null ? "" : "-" + key.DisplayName),
            sp => new GraniteHealthCheck(sp.GetRequiredKeyedService<GraniteModelHolder>(key), failureStatus ?? HealthStatus.Unhealthy),
            failureStatus, tags));
    }
}
