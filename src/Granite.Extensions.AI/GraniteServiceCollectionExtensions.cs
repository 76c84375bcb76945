using Granite.Core.Generation;
using Granite.Extensions.AI;
using Granite.Extensions.AI.Hosting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Dependency-injection registration of the Granite chat client (in this namespace, like M.E.AI's own
/// <c>AddChatClient</c>).</summary>
/// <remarks>
/// The container creates and disposes the model: disposing the provider (or host, or <c>kernel.Services</c>) disposes
/// the engine and waits for its inference thread. The model is loaded at the first resolution of the client; opt in to
/// loading at host start with <see cref="AddGraniteModelWarmUp"/> and to a health check with
/// <see cref="GraniteHealthChecksBuilderExtensions.AddGranite"/>. Each key is registered once: a second registration
/// under the same key (or twice without a key) throws.
/// </remarks>
public static class GraniteServiceCollectionExtensions
{
    /// <summary>The configuration section read by the <see cref="IConfiguration"/> overloads.</summary>
    public const string DefaultSectionName = "Granite";

    /// <summary>
    /// Registers a <see cref="GraniteChatClient"/> as <see cref="IChatClient"/>. Returns the <see cref="ChatClientBuilder"/>
    /// so callers can chain <c>.UseFunctionInvocation().UseOpenTelemetry().UseLogging()</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">A non-keyed Granite client is already registered.</exception>
    public static ChatClientBuilder AddGraniteChatClient(this IServiceCollection services, Action<GraniteChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        return Add(services, serviceKey: null, configure);
    }

    /// <summary>Same as <see cref="AddGraniteChatClient(IServiceCollection, Action{GraniteChatClientOptions})"/>, binding
    /// the options from a configuration section (by default <c>"Granite"</c>: ModelPath, ModelId, WeightDtype, Threads,
    /// Device, ExpertBudget, SessionCacheBytes, spill, MaxBatchSize, PrefillChunkTokens, defaults).</summary>
    public static ChatClientBuilder AddGraniteChatClient(this IServiceCollection services, IConfiguration configuration, string sectionName = DefaultSectionName)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentException.ThrowIfNullOrWhiteSpace(sectionName);
        var section = configuration.GetSection(sectionName);
        return Add(services, serviceKey: null, o => section.Bind(o));
    }

    /// <summary>Registers a keyed Granite chat client (several models side by side).</summary>
    /// <exception cref="InvalidOperationException">A Granite client is already registered under <paramref name="serviceKey"/>.</exception>
    public static ChatClientBuilder AddKeyedGraniteChatClient(this IServiceCollection services, object serviceKey, Action<GraniteChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(configure);
        return Add(services, serviceKey, configure);
    }

    /// <summary>Registers a keyed Granite chat client bound from a configuration section (e.g. <c>"Granite:Tiny"</c>).</summary>
    /// <exception cref="InvalidOperationException">A Granite client is already registered under <paramref name="serviceKey"/>.</exception>
    public static ChatClientBuilder AddKeyedGraniteChatClient(this IServiceCollection services, object serviceKey, IConfiguration configuration, string sectionName = DefaultSectionName)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentException.ThrowIfNullOrWhiteSpace(sectionName);
        var section = configuration.GetSection(sectionName);
        return Add(services, serviceKey, o => section.Bind(o));
    }

    /// <summary>
    /// Opt-in warm-up: a hosted service loads the model of the registration (<paramref name="serviceKey"/>, or the
    /// non-keyed one) when the host starts instead of at the first request, so a bad checkpoint fails host start.
    /// </summary>
    /// <exception cref="InvalidOperationException">No Granite client is registered under that key.</exception>
    public static IServiceCollection AddGraniteModelWarmUp(this IServiceCollection services, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var key = GraniteRegistration.Find(services, serviceKey);
        services.AddSingleton<IHostedService>(sp => new GraniteModelHostedService(sp.GetRequiredKeyedService<GraniteModelHolder>(key), sp.GetService<ILoggerFactory>()));
        return services;
    }

    private static ChatClientBuilder Add(IServiceCollection services, object? serviceKey, Action<GraniteChatClientOptions> configure)
    {
        var key = GraniteRegistration.Register(services, serviceKey);
        services.AddOptions<GraniteChatClientOptions>(key.OptionsName).Configure(configure);
        // The container creates the holder, so disposing the provider (host, kernel.Services) disposes it and its engine.
        // Everything else reaches the holder through the container, never through a captured instance.
        services.AddKeyedSingleton<GraniteModelHolder>(key, (sp, _) => new GraniteModelHolder(
            key.DisplayName,
            sp.GetRequiredService<IOptionsMonitor<GraniteChatClientOptions>>().Get(key.OptionsName),
            sp.GetService<ILoggerFactory>(),
            sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));

        IChatClient Factory(IServiceProvider sp)
        {
            var holder = sp.GetRequiredKeyedService<GraniteModelHolder>(key);
            return new GraniteChatClient(holder.GetOrLoad(), holder.Options, sp.GetService<ILoggerFactory>(), ownsEngine: false);
        }

        return serviceKey is null ? services.AddChatClient(Factory) : services.AddKeyedChatClient(serviceKey, Factory);
    }
}
