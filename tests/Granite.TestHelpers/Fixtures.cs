namespace Granite.TestHelpers;

/// <summary>
/// The tiny Granite checkpoints in <c>tests/TestData</c> (each with its <c>golden.json</c>), copied next to every test
/// assembly that references this project. The one place their folders are built.
/// </summary>
public static class Fixtures
{
    /// <summary>Hybrid Mamba-2/attention with routed experts (the default fixture of client, DI and CLI tests).</summary>
    public const string TinyHMoe = "tiny-h-moe";

    /// <summary><see cref="TinyHMoe"/> split into safetensors shards with an index file.</summary>
    public const string TinyHMoeSharded = "tiny-h-moe-sharded";

    /// <summary>Hybrid Mamba-2/attention with a dense MLP.</summary>
    public const string TinyHDense = "tiny-h-dense";

    /// <summary>Attention-only with a dense MLP.</summary>
    public const string TinyDense = "tiny-dense";

    /// <summary>Every fixture, in the order the golden tests iterate them.</summary>
    public static readonly IReadOnlyList<string> All = [TinyHMoe, TinyHMoeSharded, TinyHDense, TinyDense];

    /// <summary>The folder of the test data copied next to the running test assembly.</summary>
    public static string Root => Path.Combine(AppContext.BaseDirectory, "TestData");

    /// <summary>The folder of one fixture, e.g. <c>Fixtures.Dir(Fixtures.TinyHMoe)</c>.</summary>
    public static string Dir(string fixture) => Path.Combine(Root, fixture);

    /// <summary>The path of a file inside one fixture's folder.</summary>
    public static string File(string fixture, string fileName) => Path.Combine(Dir(fixture), fileName);

    /// <summary>Copies a fixture's files into a new temporary folder (for tests that damage or extend a checkpoint); the
    /// caller deletes it.</summary>
    public static string CopyToTemp(string fixture, string prefix = "granite-fixture-")
    {
        var dir = Directory.CreateTempSubdirectory(prefix).FullName;
        foreach (var f in Directory.GetFiles(Dir(fixture))) System.IO.File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }
}
