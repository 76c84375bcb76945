using System.Text.Json;
using Granite.Core;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.TestHelpers.Conformance;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Conformance;

/// <summary>One engine per test class, loaded on first use (never, when every test of the class is skipped).</summary>
public abstract class SharedEngine : IDisposable
{
    private readonly string? _modelPath;
    private readonly Lazy<GraniteEngine> _engine;

    protected SharedEngine(string? modelPath, WeightDtypePolicy dtype)
    {
        _modelPath = modelPath;
        Dtype = dtype;
        _engine = new(() =>
        {
            GraniteRuntime.EnsureLoaded();
            return GraniteEngine.Load(ModelPath, new GraniteEngineOptions { Model = new GraniteModelOptions { WeightDtype = Dtype } });
        });
    }

    /// <summary>The checkpoint folder or GGUF file.</summary>
    public string ModelPath => string.IsNullOrWhiteSpace(_modelPath) ? throw new InvalidOperationException("No model path was given.") : _modelPath;

    /// <summary>The weight dtype policy of every engine the tests load.</summary>
    public WeightDtypePolicy Dtype { get; }

    /// <summary>The shared engine (loaded at first use).</summary>
    public GraniteEngine Engine => _engine.Value;

    public void Dispose()
    {
        if (_engine.IsValueCreated) _engine.Value.Dispose();
    }
}

public sealed class TinyHMoeEngine() : SharedEngine(Fixtures.Dir(Fixtures.TinyHMoe), WeightDtypePolicy.Float32);

public sealed class TinyHDenseEngine() : SharedEngine(Fixtures.Dir(Fixtures.TinyHDense), WeightDtypePolicy.Float32);

public sealed class TinyDenseEngine() : SharedEngine(Fixtures.Dir(Fixtures.TinyDense), WeightDtypePolicy.Float32);

/// <summary>The checkpoint named by <c>GRANITE_MODEL_PATH</c> (a folder or a GGUF file), in its stored dtype.</summary>
public sealed class RealCheckpointEngine() : SharedEngine(Environment.GetEnvironmentVariable(RealCheckpointEngine.Variable), WeightDtypePolicy.AsStored)
{
    public const string Variable = "GRANITE_MODEL_PATH";
}

/// <summary>
/// <see cref="GraniteChatClient"/> under the <see cref="ChatClientConformanceTests"/> suite: clients share the class's
/// engine (<see cref="CreateClient"/>) or load and own their own (<see cref="CreateOwningClient"/>); tool calls are forced
/// with the <c>forced_prefix</c> knob so the round trip is exact.
/// </summary>
public abstract class GraniteChatClientConformanceTests(SharedEngine shared) : ChatClientConformanceTests
{
    protected override IChatClient CreateClient(bool storeConversations = false) =>
        new GraniteChatClient(shared.Engine, new GraniteChatClientOptions { ModelPath = shared.ModelPath, StoreConversations = storeConversations });

    protected override IChatClient CreateOwningClient() =>
        new GraniteChatClient(new GraniteChatClientOptions { ModelPath = shared.ModelPath, WeightDtype = shared.Dtype });

    protected override string ExpectedProviderName => "granite";

    /// <summary>The checkpoint folder's name (for a GGUF file: the folder it was imported into).</summary>
    protected override string ExpectedModelId =>
        Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(Directory.Exists(shared.ModelPath) ? shared.ModelPath : shared.Engine.ModelDirectory ?? shared.ModelPath)));

    protected override ChatOptions ForceToolCall(ChatOptions options, string functionName, IReadOnlyDictionary<string, object?> arguments)
    {
        (options.AdditionalProperties ??= new())[GraniteChatClient.ForcedPrefixKey] =
            $"<tool_call>\n{{\"name\": {JsonSerializer.Serialize(functionName)}, \"arguments\": {JsonSerializer.Serialize(arguments)}}}\n</tool_call><|end_of_text|>";
        return options;
    }
}

public sealed class TinyHMoeConformanceTests(TinyHMoeEngine engine) : GraniteChatClientConformanceTests(engine), IClassFixture<TinyHMoeEngine>;

public sealed class TinyHDenseConformanceTests(TinyHDenseEngine engine) : GraniteChatClientConformanceTests(engine), IClassFixture<TinyHDenseEngine>;

public sealed class TinyDenseConformanceTests(TinyDenseEngine engine) : GraniteChatClientConformanceTests(engine), IClassFixture<TinyDenseEngine>;

/// <summary>Opt-in: the suite against a real Granite 4.0 checkpoint.</summary>
[RequiresEnvironmentVariable(RealCheckpointEngine.Variable, "set it to a Granite 4.0 checkpoint folder or GGUF file to run the IChatClient conformance suite against a real model")]
public sealed class RealCheckpointConformanceTests(RealCheckpointEngine engine) : GraniteChatClientConformanceTests(engine), IClassFixture<RealCheckpointEngine>;
