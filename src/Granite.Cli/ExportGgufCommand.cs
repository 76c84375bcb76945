using System.CommandLine;
using System.Text.Json;
using Granite.Core.Weights.Gguf;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    /// <summary>
    /// <c>granite export-gguf --model DIR --out FILE.gguf [--type bf16|f16|f32|q8_0|q4_0|q4_k|q6_k] [--json]</c>: writes
    /// the checkpoint as a llama.cpp GGUF v3 file (the converter's key set and tensor layout; quantized types per tensor as
    /// llama.cpp's quantizer chooses them; docs/gguf.md, docs/quantization.md). Default type: the stored dtype.
    /// </summary>
    private static Command ExportGgufCommand()
    {
        var model = CliOptions.Model();
        var output = CliOptions.Text("--out", "FILE.gguf", "the GGUF file to write (replaced atomically)", required: true);
        var type = new Option<GgmlType?>("--type")
        {
            Description = "weight type; default: as stored (lossless). Quantized types are chosen per tensor as llama-quantize --pure does (norms, router, conv1d, A, D, biases stay F32)",
            HelpName = "bf16|f16|f32|q8_0|q4_0|q4_k|q6_k",
            CustomParser = r =>
            {
                var s = CliOptions.SingleValue(r, "--type");
                if (s is null) return null;
                try { return GgufExporter.ParseType(s); }
                catch (ArgumentException) { r.AddError($"option --type must be {GgufExporter.TypeNames} (got '{s}')"); return null; }
            },
        };
        var json = CliOptions.Flag("--json", "print {\"path\",\"architecture\",\"type\",\"tensors\",\"metadata_keys\",\"bytes\"} instead of a summary line");
        var command = new Command("export-gguf", "write the checkpoint as a llama.cpp GGUF v3 file (the converter's key set and tensor layout)") { model, output, type, json };
        command.SetAction(r => ExportGguf(ModelDir(r.GetRequiredValue(model)), r.GetRequiredValue(output), r.GetValue(type), r.GetValue(json), r.InvocationConfiguration.Output));
        return command;
    }

    private static int ExportGguf(string dir, string output, GgmlType? type, bool json, TextWriter stdout)
    {
        if (Directory.Exists(output)) throw new CliUsageException($"option --out names a folder, not a file: {output}");
        var r = GgufExporter.Export(dir, output, type);
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { path = r.Path, architecture = r.Architecture, type = r.WeightType.ToString().ToLowerInvariant(), tensors = r.TensorCount, metadata_keys = r.MetadataCount, bytes = r.Bytes }, Json));
        else
            stdout.WriteLine($"wrote {r.Path}: {r.Architecture}, {r.WeightType.ToString().ToLowerInvariant()} weights, {r.TensorCount} tensors, {r.MetadataCount} metadata keys, {r.Bytes / 1048576.0:F1} MiB");
        return 0;
    }
}
