using Granite.Core;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Extensions.AI;

namespace Granite.TestHelpers;

/// <summary>One engine on the tiny hybrid-MoE fixture (float32 compute), shared by a test class.</summary>
public sealed class TinyEngineFixture : IDisposable
{
    public TinyEngineFixture()
    {
        GraniteRuntime.EnsureLoaded();
        Engine = GraniteEngine.Load(ModelDir, new GraniteEngineOptions { Model = new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 } });
    }

    public static string ModelDir => Fixtures.Dir(Fixtures.TinyHMoe);

    public GraniteEngine Engine { get; }

    public GraniteChatClient NewClient(GraniteChatClientOptions? options = null) => new(Engine, options ?? new GraniteChatClientOptions { ModelPath = ModelDir });

    public void Dispose() => Engine.Dispose();
}
