using Granite.Core.Weights.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>Exports of the test fixtures, written once per test run into a temporary folder.</summary>
public sealed class ExportedFixtures : IDisposable
{
    public static readonly string[] Fixtures = { "tiny-h-moe", "tiny-h-moe-sharded", "tiny-h-dense", "tiny-dense" };

    private readonly string _dir = Directory.CreateTempSubdirectory("granite-gguf-tests-").FullName;
    private readonly Dictionary<string, string> _files = new();

    public ExportedFixtures() => Granite.Core.GraniteRuntime.EnsureLoaded();

    /// <summary>The fixture exported with <paramref name="type"/> (null = the stored dtype).</summary>
    internal string Path(string fixture, GgmlType? type)
    {
        var key = fixture + "-" + (type?.ToString() ?? "stored");
        lock (_files)
        {
            if (_files.TryGetValue(key, out var p)) return p;
            p = System.IO.Path.Combine(_dir, key + ".gguf");
            GgufExporter.Export(Golden.FixtureDir(fixture), p, type);
            _files[key] = p;
            return p;
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// llama.cpp contexts in one collection: no parallel native runs competing for the two cores. It is also this assembly's
/// non-parallel collection (see <see cref="ProcessWide"/>): its tests set <c>GRANITE_CACHE</c> and load models with
/// <c>Threads = 1</c>, so nothing else in the assembly runs beside them.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LlamaCppCollection : ICollectionFixture<ExportedFixtures>
{
    public const string Name = "llama.cpp";
}
