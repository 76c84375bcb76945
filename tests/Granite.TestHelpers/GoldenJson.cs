using System.Text.Json;

namespace Granite.TestHelpers;

/// <summary>
/// The parsed <c>golden.json</c> of a fixture (reference values from the Hugging Face implementation), read once per
/// fixture and shared. The typed readers (<see cref="Golden"/>, <see cref="GoldenLogits"/>, <see cref="TokenizerGolden"/>)
/// and the chat-template cases read their sections from here.
/// </summary>
public static class GoldenJson
{
    private static readonly Dictionary<string, JsonElement> Cache = new();

    /// <summary>The root object of <c>TestData/&lt;fixture&gt;/golden.json</c>.</summary>
    public static JsonElement Root(string fixture)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(fixture, out var root))
            {
                using var doc = JsonDocument.Parse(System.IO.File.ReadAllBytes(Fixtures.File(fixture, "golden.json")));
                root = doc.RootElement.Clone();
                Cache[fixture] = root;
            }
            return root;
        }
    }
}
