using System.Text.Json;
using Granite.Core.Diagnostics;

namespace Granite.Core.Configuration;

/// <summary>
/// The parts of a checkpoint's optional <c>generation_config.json</c> the engine uses: its end-of-sequence ids (an
/// integer or a list; every entry stops generation, in addition to <c>config.json</c>'s <c>eos_token_id</c>).
/// </summary>
public sealed record GenerationConfig
{
    /// <summary>The file name in a checkpoint folder.</summary>
    public const string FileName = "generation_config.json";

    /// <summary>End-of-sequence token ids (empty when the file has none).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Reads <c>generation_config.json</c> from <paramref name="modelDirectory"/>; null when there is none.</summary>
    /// <exception cref="InvalidDataException">The file is not a JSON object or <c>eos_token_id</c> is not a non-negative integer or a list of them.</exception>
    public static GenerationConfig? Load(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        string path = Path.Combine(modelDirectory, FileName);
        if (!File.Exists(path)) return null;
        JsonDocument doc;
        byte[] bytes = CheckedFile.ReadAllBytes(path);
        if (ErrorText.InvalidUtf8(bytes) is { } bad) throw new InvalidDataException($"Invalid '{path}': {bad}.");
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException ex) { throw new InvalidDataException($"Invalid '{path}': {ErrorText.JsonSyntax(ex)}", ex); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"Invalid '{path}': the top level must be a JSON object.");
            var ids = new List<int>();
            if (root.TryGetProperty("eos_token_id", out var eos) && eos.ValueKind != JsonValueKind.Null)
            {
                var items = eos.ValueKind == JsonValueKind.Array ? eos.EnumerateArray().ToArray() : new[] { eos };
                foreach (var item in items)
                {
                    if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int id) || id < 0)
                        throw new InvalidDataException($"Invalid '{path}': 'eos_token_id' must be a non-negative integer or a list of them.");
                    if (!ids.Contains(id)) ids.Add(id);
                }
            }
            return new GenerationConfig { EosTokenIds = ids };
        }
    }
}
