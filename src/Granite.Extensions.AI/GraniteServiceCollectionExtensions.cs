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
        var holder = new GraniteModelHolder(serviceKey?.ToString() ?? "default");
        services.AddKeyedSingleton<GraniteModelHolder>(name, (_, _) => holder); // factory registration: the container disposes it
        services.AddSingleton<IHostedService>(sp => new GraniteModelHostedService(holder, sp.GetRequiredService<IOptionsMonitor<GraniteChatClientOptions>>().Get(name), sp.GetService<ILoggerFactory>()));
        services.AddHealthChecks().AddCheck("granite" + (serviceKey is null ? "" : "-" + name), new GraniteHealthCheck(holder));

        IChatClient Factory(IServiceProvider sp)
        {
            var options = sp.GetRequiredService<IOptionsMonitor<GraniteChatClientOptions>>().Get(name);
            var engine = holder.GetOrLoad(options, sp.GetService<ILoggerFactory>());
            return new GraniteChatClient(engine, options, sp.GetService<ILoggerFactory>(), ownsEngine: false);
        }

        return serviceKey is null ? services.AddChatClient(Factory) : services.AddKeyedChatClient(serviceKey, Factory);
    }
}

/// <summary>Holds the engine of one registration; loaded once (at host start by the hosted service, or at first use).</summary>
internal sealed class GraniteModelHolder(string name) : IDisposable
{
    private readonly object _gate = new();
    private GraniteEngine? _engine;

    public string Name { get; } = name;
    public Exception? LoadError { get; private set; }
    public bool IsLoaded => Volatile.Read(ref _engine) is not null;

    public GraniteEngine GetOrLoad(GraniteChatClientOptions options, ILoggerFactory? loggerFactory)
    {
        lock (_gate)
        {
            if (_engine is not null) return _engine;
            if (LoadError is not null) throw new InvalidOperationException($"The Granite model '{Name}' failed to load: {LoadError.Message}", LoadError);
            try
            {
                if (string.IsNullOrWhiteSpace(options.ModelPath))
                    throw new InvalidOperationException($"The Granite model '{Name}' has no ModelPath (configuration key Granite:ModelPath, or GraniteChatClientOptions.ModelPath).");
                if (!Directory.Exists(options.ModelPath))
                    throw new DirectoryNotFoundException($"Granite model folder not found: {options.ModelPath}");
                _engine = GraniteEngine.Load(options.ModelPath, GraniteChatClient.ToEngineOptions(options), loggerFactory?.CreateLogger<GraniteEngine>());
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
            _engine?.Dispose();
            _engine = null;
        }
    }
}

/// <summary>Loads the model when the host starts (not at the first request); a bad checkpoint fails host start.</summary>
internal sealed class GraniteModelHostedService(GraniteModelHolder holder, GraniteChatClientOptions options, ILoggerFactory? loggerFactory) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var logger = loggerFactory?.CreateLogger<GraniteModelHostedService>();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        logger?.LogInformation("Loading Granite model '{Name}' from {Path}", holder.Name, options.ModelPath);
        var engine = holder.GetOrLoad(options, loggerFactory);
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
