using System.Diagnostics.Metrics;
using Granite.Core.Generation;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Granite.Extensions.AI.Hosting;

/// <summary>The internal service key of one Granite registration (the user's key, or a private one for the non-keyed
/// registration), with its options name.</summary>
internal sealed record GraniteRegistration(object? UserKey)
{
    public string OptionsName => UserKey?.ToString() ?? Microsoft.Extensions.Options.Options.DefaultName;
    public string DisplayName => UserKey?.ToString() ?? "default";

    public static GraniteRegistration Register(IServiceCollection services, object? serviceKey)
    {
        var key = new GraniteRegistration(serviceKey);
        foreach (var d in services)
        {
            if (d.ServiceType != typeof(GraniteModelHolder) || d.ServiceKey is not GraniteRegistration other) continue;
            if (Equals(other, key))
                throw new InvalidOperationException(serviceKey is null
                    ? "A Granite chat client is already registered without a key; register each model once, or use AddKeyedGraniteChatClient for more models."
                    : $"A Granite chat client is already registered under the key '{serviceKey}'; use another key.");
            if (other.OptionsName == key.OptionsName)
                throw new InvalidOperationException($"The Granite registration keys '{other.UserKey}' and '{serviceKey}' have the same name '{key.OptionsName}'; use keys with distinct names.");
        }
        return key;
    }

    public static GraniteRegistration Find(IServiceCollection services, object? serviceKey)
    {
        var key = new GraniteRegistration(serviceKey);
        if (!services.Any(d => d.ServiceType == typeof(GraniteModelHolder) && Equals(d.ServiceKey, key)))
            throw new InvalidOperationException(serviceKey is null
                ? "No Granite chat client is registered without a key: call AddGraniteChatClient first."
                : $"No Granite chat client is registered under the key '{serviceKey}': call AddKeyedGraniteChatClient first.");
        return key;
    }
}

/// <summary>Holds the engine of one registration; loaded once (at host start by the hosted service, or at first use).
/// Created and disposed by the container; disposing it disposes the engine (which waits for the inference thread).</summary>
internal sealed class GraniteModelHolder(string name, GraniteChatClientOptions options, ILoggerFactory? loggerFactory, IMeterFactory? meterFactory = null) : IDisposable
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
                if (!Directory.Exists(Options.ModelPath) && !File.Exists(Options.ModelPath)) // a GGUF file is imported by GraniteEngine.Load
                    throw new DirectoryNotFoundException($"Granite model folder (or GGUF file) not found: {Options.ModelPath}");
                _engine = GraniteEngine.Load(Options.ModelPath, GraniteChatClient.ToEngineOptions(Options) with { MeterFactory = meterFactory }, loggerFactory?.CreateLogger<GraniteEngine>());
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

/// <summary>Healthy once the model is loaded; degraded before; <paramref name="failureStatus"/> with the load error.</summary>
internal sealed class GraniteHealthCheck(GraniteModelHolder holder, HealthStatus failureStatus) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(holder.IsLoaded
            ? HealthCheckResult.Healthy($"Granite model '{holder.Name}' loaded")
            : holder.LoadError is { } e
                ? new HealthCheckResult(failureStatus, $"Granite model '{holder.Name}' failed to load: {e.Message}", e)
                : HealthCheckResult.Degraded($"Granite model '{holder.Name}' not loaded yet"));
}
