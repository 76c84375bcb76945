using System.Text.Json;
using Granite.Core.Weights.Gguf;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary>
    /// <c>granite export-gguf --model DIR --out FILE.gguf [--type bf16|f16|f32] [--json]</c>: writes the checkpoint as a
    /// llama.cpp GGUF v3 file (the converter's key set and tensor layout; docs/gguf.md). Default type: the stored dtype.
    /// </summary>
    private static int ExportGguf(CliArgs a, TextWriter stdout)
    {
        var dir = ModelDir(a);
        var output = a.Require("out");
        var typeName = a.Get("type");
        bool json = a.Flag("json");
        a.EnsureAllUsed();
        GgmlType? type;
        try { type = typeName is null ? null : GgufExporter.ParseType(typeName); }
        catch (ArgumentException) { throw new CliUsageException($"option --type must be bf16, f16 or f32 (got '{typeName}')"); }
        if (Directory.Exists(output)) throw new CliUsageException($"option --out names a folder, not a file: {output}");
        var r = GgufExporter.Export(dir, output, type);
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { path = r.Path, architecture = r.Architecture, type = r.WeightType.ToString().ToLowerInvariant(), tensors = r.TensorCount, metadata_keys = r.MetadataCount, bytes = r.Bytes }, Json));
        else
            stdout.WriteLine($"wrote {r.Path}: {r.Architecture}, {r.WeightType.ToString().ToLowerInvariant()} weights, {r.TensorCount} tensors, {r.MetadataCount} metadata keys, {r.Bytes / 1048576.0:F1} MiB");
        return 0;
    }
}
