using System.Diagnostics;
using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Weights;
using Granite.Core.Weights.Gguf;
using static TorchSharp.torch;

namespace Granite.Benchmarks.Peers;

/// <summary>Writes the H-Tiny-shaped random checkpoint and its GGUF export (reused when already there).</summary>
internal static class Setup
{
    /// <summary>
    /// An H-Tiny-shaped checkpoint (<see cref="GraniteConfigPresets.HTinyShaped"/>: real widths, 64 experts top-6, vocab 100,352
    /// tied; layer i % 10 == 5 is attention) with random BF16 weights (seed 42). The GGUF export needs a tokenizer: the
    /// test fixtures' byte-level BPE tokenizer is copied (ids 544 and up become llama.cpp padding entries; the benchmark
    /// feeds token ids directly, so tokenization is not exercised).
    /// </summary>
    public static void WriteHTinyShaped(string dir, int layers)
    {
        var cfg = GraniteConfigPresets.HTinyShaped(layers);
        var weights = Path.Combine(dir, SafetensorsCheckpoint.SingleFileName);
        if (File.Exists(weights) && File.Exists(Path.Combine(dir, "config.json")) && GraniteConfig.Load(dir).ToJson() == cfg.ToJson()
            && File.Exists(Path.Combine(dir, "tokenizer.json")))
        {
            Console.Error.WriteLine($"peers: reusing {dir}");
            return;
        }
        GraniteRuntime.EnsureLoaded();
        var sw = Stopwatch.StartNew();
        GraniteCheckpointLayout.WriteConfig(dir, cfg);
        GraniteCheckpointLayout.WriteRandom(dir, cfg, ScalarType.BFloat16, seed: 42);
        var fixture = FindFixture("tiny-h-moe");
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(fixture, f), Path.Combine(dir, f), overwrite: true);
        Console.Error.WriteLine($"peers: wrote {dir} ({new FileInfo(weights).Length / 1048576.0:F0} MiB) in {sw.Elapsed.TotalSeconds:F0} s");
    }

    /// <summary>Exports <paramref name="model"/> to <paramref name="gguf"/> unless a newer export exists.</summary>
    public static void Export(string model, string gguf, string type)
    {
        var newest = Directory.EnumerateFiles(model).Max(File.GetLastWriteTimeUtc);
        if (File.Exists(gguf) && File.GetLastWriteTimeUtc(gguf) > newest)
        {
            Console.Error.WriteLine($"peers: reusing {gguf}");
            return;
        }
        GraniteRuntime.EnsureLoaded();
        var sw = Stopwatch.StartNew();
        var r = GgufExporter.Export(model, gguf, GgufExporter.ParseType(type));
        Console.Error.WriteLine($"peers: exported {r.Path} ({r.Architecture}, {r.WeightType}, {r.Bytes / 1048576.0:F0} MiB) in {sw.Elapsed.TotalSeconds:F0} s");
    }

    private static string FindFixture(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "tests", "TestData", name);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"tests/TestData/{name} not found above {AppContext.BaseDirectory} (run from the repository)");
    }
}
