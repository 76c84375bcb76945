using System.Text.Json;
using Granite.Core.Diagnostics;

namespace Granite.Core.Tokenization;

/// <summary>Special-token names and the chat template from <c>tokenizer_config.json</c>.</summary>
internal sealed record TokenizerSettings(string? BosToken, string? EosToken, string? PadToken, string? ChatTemplate)
{
    public static readonly TokenizerSettings Empty = new(null, null, null, null);
}

/// <summary>Special-token ids from <c>generation_config.json</c> or <c>config.json</c>, and (from <c>config.json</c>) the
/// model's vocabulary size, which bounds every tokenizer id.</summary>
internal readonly record struct ModelTokenIds(int? Bos, int? Eos, int? Pad, int? VocabSize = null);

/// <summary>Reads the optional JSON files that accompany <c>tokenizer.json</c>.</summary>
internal static class TokenizerConfigReader
{
    public static TokenizerSettings ReadTokenizerConfig(string path)
    {
        using JsonDocument document = Parse(path);
        JsonElement root = document.RootElement;
        try
        {
            return new TokenizerSettings(
                TokenName(path, root, "bos_token"),
                TokenName(path, root, "eos_token"),
                TokenName(path, root, "pad_token"),
                ChatTemplate(path, root));
        }
        catch (InvalidOperationException ex)
        {
            // JsonElement.GetString cannot represent an escaped unpaired surrogate (\ud800).
            throw new InvalidDataException($"Invalid configuration file '{path}': a token name or chat template is not valid text (an escaped unpaired surrogate such as \\ud800).", ex);
        }
    }

    /// <summary>Reads <c>bos/eos/pad_token_id</c> (an integer or a list whose first entry is used; null = absent).</summary>
    public static ModelTokenIds ReadModelTokenIds(string path)
    {
        using JsonDocument document = Parse(path);
        JsonElement root = document.RootElement;
        int? vocab = Path.GetFileName(path) == "config.json" ? Id(path, root, "vocab_size") : null;
        return new ModelTokenIds(Id(path, root, "bos_token_id"), Id(path, root, "eos_token_id"), Id(path, root, "pad_token_id"), vocab);
    }

    private static JsonDocument Parse(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer configuration file '{path}' does not exist.", path);
        }

        JsonDocument document;
        try
        {
            byte[] bytes = CheckedFile.ReadAllBytes(path);
            if (ErrorText.InvalidUtf8(bytes) is { } bad)
            {
                throw new InvalidDataException($"Invalid configuration file '{path}': {bad}.");
            }

            document = JsonDocument.Parse(bytes);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"Invalid configuration file '{path}': {ErrorText.JsonSyntax(ex)}.", ex);
        }

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw new InvalidDataException($"Invalid configuration file '{path}': the top level must be a JSON object.");
        }

        return document;
    }

    private static string? TokenName(string path, JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        // Serialized AddedToken: { "content": "...", "__type": "AddedToken", ... }
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out JsonElement content)
            && content.ValueKind == JsonValueKind.String)
        {
            return content.GetString();
        }

        throw new InvalidDataException($"Invalid configuration file '{path}': '{name}' must be a string or an object with 'content'.");
    }

    private static string? ChatTemplate(string path, JsonElement root)
    {
        if (!root.TryGetProperty("chat_template", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            string? first = null;
            foreach (JsonElement item in value.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty("template", out JsonElement t) && t.ValueKind == JsonValueKind.String)
                {
                    first ??= t.GetString();
                    if (item.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String && n.GetString() == "default")
                    {
                        return t.GetString();
                    }
                }
            }

            return first;
        }

        throw new InvalidDataException($"Invalid configuration file '{path}': 'chat_template' must be a string or a list of {{name, template}}.");
    }

    private static int? Id(string path, JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            if (value.GetArrayLength() == 0)
            {
                return null;
            }

            value = value[0];
        }

        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id) && id >= 0)
        {
            return id;
        }

        throw new InvalidDataException($"Invalid configuration file '{path}': '{name}' must be a non-negative integer (or a list of them).");
    }
}
