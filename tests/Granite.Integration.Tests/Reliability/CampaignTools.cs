using System.Text;
using System.Text.Json;
using Granite.Core;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Integration.Tests.Reliability;

/// <summary>
/// A real tool whose arguments are all enumerations (a JSON Schema with <c>enum</c> values and
/// <c>additionalProperties: false</c>), so a call the model generates under constrained decoding is short and always
/// complete. The result names every argument, so it shows up in the next prompt.
/// </summary>
internal sealed class EnumTool : AIFunction
{
    private readonly string[] _parameters;

    public EnumTool(string name, string description, params (string Name, string[] Values)[] parameters)
    {
        Name = name;
        Description = description;
        _parameters = parameters.Select(p => p.Name).ToArray();
        var props = string.Join(",", parameters.Select(p => $"\"{p.Name}\":{{\"type\":\"string\",\"enum\":[{string.Join(",", p.Values.Select(v => $"\"{v}\""))}]}}"));
        var required = string.Join(",", parameters.Select(p => $"\"{p.Name}\""));
        JsonSchema = JsonDocument.Parse($"{{\"type\":\"object\",\"properties\":{{{props}}},\"required\":[{required}],\"additionalProperties\":false}}").RootElement.Clone();
    }

    public override string Name { get; }

    public override string Description { get; }

    public override JsonElement JsonSchema { get; }

    public int Invocations;

    protected override ValueTask<object?> InvokeCoreAsync(AIFunctionArguments arguments, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref Invocations);
        var parts = _parameters.Select(p => $"{p}={(arguments.TryGetValue(p, out var v) ? v?.ToString() : "missing")}");
        return new ValueTask<object?>($"{Name} done: {string.Join(", ", parts)}");
    }
}

/// <summary>Helpers shared by the concurrency and cancellation campaigns.</summary>
internal static class CampaignTools
{
    public static string ModelDir => Path.Combine(AppContext.BaseDirectory, "TestData", "tiny-h-moe");

    /// <summary>A fresh engine on the tiny hybrid-MoE fixture (float32 compute, greedy by default).</summary>
    public static GraniteEngine NewEngine(long sessionBytes, int maxBatch = 8, int prefillChunk = 256, string? spillDirectory = null, long spillBytes = 4L << 30)
    {
        GraniteRuntime.EnsureLoaded();
        return GraniteEngine.Load(ModelDir, new GraniteEngineOptions
        {
            Model = new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 },
            SessionCacheBytes = sessionBytes,
            MaxBatchSize = maxBatch,
            PrefillChunkTokens = prefillChunk,
            SessionStore = new SessionStoreOptions { SpillDirectory = spillDirectory, SpillBytes = spillBytes },
        });
    }

    /// <summary>Everything a response says, except what is random per run (response, message and call ids, timestamps):
    /// roles, text, tool calls (name + arguments as JSON), tool results, in order.</summary>
    public static string Transcript(IEnumerable<ChatMessage> messages)
    {
        var sb = new StringBuilder();
        foreach (var m in messages)
        {
            sb.Append('<').Append(m.Role.Value).Append('>');
            foreach (var c in m.Contents)
            {
                switch (c)
                {
                    case TextContent t: sb.Append("text(").Append(t.Text).Append(')'); break;
                    case FunctionCallContent f:
                        sb.Append("call(").Append(f.Name).Append(',').Append(JsonSerializer.Serialize(f.Arguments)).Append(',')
                            .Append(f.Exception?.Message).Append(')');
                        break;
                    case FunctionResultContent r: sb.Append("result(").Append(r.Result?.ToString()).Append(')'); break;
                    case UsageContent: break;
                    default: sb.Append(c.GetType().Name); break;
                }
            }
        }
        return sb.ToString();
    }
}
