using Granite.Core.Generation;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Granite.Extensions.AI;

/// <summary>Dependency-injection registration of the Granite chat client.</summary>
public static class GraniteServiceCollectionExtensions
{
    /// <summary>The configuration section read by <see cref="AddGraniteChatClient(IServiceCollection, IConfiguration, string)"/>.</summary>
    public const string DefaultSectionName = "Granite";

    /// <summary>
    /// Registers a <see cref="GraniteChatClient"/> as <see cref="IChatClient"/>, a hosted service that loads the model at
    /// host start, and a <c>"granite"</c> health check. Returns the <see cref="ChatClientBuilder"/> so callers can chain
    /// <c>.UseFunctionInvocation().UseOpenTelemetry().UseLogging()</c>.
    /// </summary>
    public static ChatClientBuilder AddGraniteChatClient(this IServiceCollection services, Action<GraniteChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        return Add(services, serviceKey: null, configure);
    }

    /// <summary>Same as <see cref="AddGraniteChatClient(IServiceCollection, Action{GraniteChatClientOptions})"/>, binding
    /// the options from a configuration section (by default <c>"Granite"</c>: ModelPath, ModelId, WeightDtype, Threads,
    /// SessionCacheBytes, DefaultMaxOutputTokens, DefaultTemperature).</summary>
    public static ChatClientBuilder AddGraniteChatClient(this IServiceCollection services, IConfiguration configuration, string sectionName = DefaultSectionName)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(sectionName);
        return Add(services, serviceKey: null, o => section.Bind(o));
    }

    /// <summary>Registers a keyed Granite chat client (several models side by side).</summary>
    public static ChatClientBuilder AddKeyedGraniteChatClient(this IServiceCollection services, object serviceKey, Action<GraniteChatClientOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(serviceKey);
        ArgumentNullException.ThrowIfNull(configure);
        return Add(services, serviceKey, configure);
    }

    private static ChatClientBuilder Add(IServiceCollection services, object? serviceKey, Action<GraniteChatClientOptions> configure)
    {
        string name = serviceKey?.ToString() ?? Options.DefaultName;
        services.AddOptions<GraniteChatClientOptions>(name).Configure(configure);
        // The container creates the holder, so disposing the provider (host, kernel.Services) disposes it and its engine.
        // Everything else reaches the holder through the container, never through a captured instance.
        services.AddKeyedSingleton<GraniteModelHolder>(name, (sp, _) => new GraniteModelHolder(
            serviceKey?.ToString() ?? "default",
            sp.GetRequiredService<IOptionsMonitor<GraniteChatClientOptions>>().Get(name),
            sp.GetService<ILoggerFactory>()));
        services.AddSingleton<IHostedService>(sp => new GraniteModelHostedService(sp.GetRequiredKeyedService<GraniteModelHolder>(name), sp.GetService<ILoggerFactory>()));
        services.AddHealthChecks().Add(new HealthCheckRegistration(
            "granite" + (serviceKey is null ? "" : "-" + name),
            sp => new GraniteHealthCheck(sp.GetRequiredKeyedService<GraniteModelHolder>(name)),
            failureStatus: null, tags: null));

        IChatClient Factory(IServiceProvider sp)
        {
            var holder = sp.GetRequiredKeyedService<GraniteModelHolder>(name);
            return new GraniteChatClient(holder.GetOrLoad(), holder.Options, sp.GetService<ILoggerFactory>(), ownsEngine: false);
        }

        return serviceKey is null ? services.AddChatClient(Factory) : services.AddKeyedChatClient(serviceKey, Factory);
    }
}

/// <summary>Holds the engine of one registration; loaded once (at host start by the hosted service, or at first use).
/// Created and disposed by the container; disposing it disposes the engine (which waits for the inference thread).</summary>
internal sealed class GraniteModelHolder(string name, GraniteChatClientOptions options, ILoggerFactory? loggerFactory) : IDisposable
{
    private readonly object _gate = new();
    private GraniteEngine? _engine;
    private bool _disposed;

    public string Name { get; } = name;
    public GraniteChatClientOptions Options { get; } = options;
    public Exception? LoadError { get; private set; }
    public bool IsLoaded => Volatile.Read(ref _engine) is not null;

    /// <exception cref="ObjectDisposedException">The container was disposed.</exception>
    public GraniteEngine GetOrLoad()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_engine is not null) return _engine;
            if (LoadError is not null) throw new InvalidOperationException($"The Granite model '{Name}' failed to load: {LoadError.Message}", LoadError);
            try
            {
                if (string.IsNullOrWhiteSpace(Options.ModelPath))
                    throw new InvalidOperationException($"The Granite model '{Name}' has no ModelPath (configuration key Granite:ModelPath, or GraniteChatClientOptions.ModelPath).");
                if (!Directory.Exists(Options.ModelPath))
                    throw new DirectoryNotFoundException($"Granite model folder not found: {Options.ModelPath}");
                _engine = GraniteEngine.Load(Options.ModelPath, GraniteChatClient.ToEngineOptions(Options), loggerFactory?.CreateLogger<GraniteEngine>());
                return _engine;
            }
            catch (Exception ex)
            {
                LoadError = ex;
                throw;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _engine?.Dispose();
            _engine = null;
        }
    }
}

/// <summary>Loads the model when the host starts (not at the first request); a bad checkpoint fails host start.</summary>
internal sealed class GraniteModelHostedService(GraniteModelHolder holder, ILoggerFactory? loggerFactory) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var logger = loggerFactory?.CreateLogger<GraniteModelHostedService>();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        logger?.LogInformation("Loading Granite model '{Name}' from {Path}", holder.Name, holder.Options.ModelPath);
        var engine = holder.GetOrLoad();
        long weightBytes = 0;
        if (engine.ModelDirectory is { } dir)
            weightBytes = Directory.EnumerateFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length);
        logger?.LogInformation("Granite model '{Name}' loaded in {Ms} ms: {Params:N0} parameters, {Bytes:N0} bytes of weights",
            holder.Name, sw.ElapsedMilliseconds, engine.Config.TotalParameterCount, weightBytes);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>Healthy once the model is loaded; unhealthy with the load error otherwise.</summary>
internal sealed class GraniteHealthCheck(GraniteModelHolder holder) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(holder.IsLoaded
            ? HealthCheckResult.Healthy($"Granite model '{holder.Name}' loaded")
            : holder.LoadError is { } e
                ? HealthCheckResult.Unhealthy($"Granite model '{holder.Name}' failed to load: {e.Message}", e)
                : HealthCheckResult.Degraded($"Granite model '{holder.Name}' not loaded yet"));
}
