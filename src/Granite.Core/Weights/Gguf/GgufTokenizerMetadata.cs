using System.Text.Json;
using Granite.Core.Tokenization;

namespace Granite.Core.Weights.Gguf;

/// <summary>
/// The <c>tokenizer.*</c> metadata llama.cpp's converter writes for a byte-level BPE <c>tokenizer.json</c>
/// (<c>_set_vocab_gpt2</c> + gguf-py <c>SpecialVocab</c>): model <c>gpt2</c>, <c>pre</c> from the split regex, the token list
/// padded with <c>[PAD{i}]</c> to the vocabulary size, token types, merges, special-token ids and add flags, chat template.
/// </summary>
internal static class GgufTokenizerMetadata
{
    /// <summary>The cl100k-style split regex of Granite 4.0's <c>tokenizer.json</c> (llama.cpp pre-tokenizer <c>dbrx</c>).</summary>
    internal const string Cl100kSplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Special-token types in the order <c>SpecialVocab</c> visits them.</summary>
    private static readonly string[] SpecialTypes = { "bos", "eos", "unk", "sep", "pad", "cls", "mask" };

    /// <summary>Adds the tokenizer keys for the checkpoint folder <paramref name="modelDir"/> to <paramref name="w"/>.</summary>
    /// <param name="w">The writer.</param>
    /// <param name="modelDir">Folder with <c>tokenizer.json</c> (required), <c>tokenizer_config.json</c> and <c>config.json</c>.</param>
    /// <param name="vocabSize">Token-list length: the config's vocabulary size, rounded up as the converter does.</param>
    /// <exception cref="FileNotFoundException">No <c>tokenizer.json</c>.</exception>
    /// <exception cref="InvalidDataException">A tokenizer file is invalid or has ids at or past <paramref name="vocabSize"/>.</exception>
    /// <exception cref="NotSupportedException">The pre-tokenizer has no llama.cpp equivalent.</exception>
    public static void Add(GgufWriter w, string modelDir, int vocabSize)
    {
        var tokenizerPath = Path.GetFullPath(Path.Combine(modelDir, "tokenizer.json"));
        if (!File.Exists(tokenizerPath)) throw new FileNotFoundException($"{tokenizerPath}: not found (GGUF export needs the tokenizer)", tokenizerPath);
        var def = TokenizerJsonReader.Read(tokenizerPath);

        int maxId = Math.Max(def.Vocabulary.Values.DefaultIfEmpty(-1).Max(), def.AddedTokens.Select(a => a.Id).DefaultIfEmpty(-1).Max());
        if (maxId >= vocabSize)
            throw new InvalidDataException($"{tokenizerPath}: token id {maxId} is not below the model's vocabulary size {vocabSize} (config.json vocab_size)");

        var tokens = new string?[vocabSize];
        foreach (var (tok, id) in def.Vocabulary) tokens[id] = tok;
        var added = new Dictionary<int, AddedToken>();
        foreach (var a in def.AddedTokens) { tokens[a.Id] = a.Content; added[a.Id] = a; }
        var types = new int[vocabSize];
        var list = new string[vocabSize];
        for (int i = 0; i < vocabSize; i++)
        {
            if (tokens[i] is not string t) { list[i] = $"[PAD{i}]"; types[i] = (int)GgufTokenType.Unused; continue; }
            list[i] = t;
            types[i] = added.TryGetValue(i, out var a)
                ? (int)(a.Special || LooksSpecial(t) ? GgufTokenType.Control : GgufTokenType.UserDefined)
                : (int)GgufTokenType.Normal;
        }

        w.Set(Gguf.Tokenizer.Model, GgufValue.Str("gpt2"));
        w.Set(Gguf.Tokenizer.Pre, GgufValue.Str(PreName(def)));
        w.Set(Gguf.Tokenizer.Tokens, GgufValue.StrArray(list));
        w.Set(Gguf.Tokenizer.TokenType, GgufValue.I32Array(types));
        if (def.Merges.Count > 0)
            w.Set(Gguf.Tokenizer.Merges, GgufValue.StrArray(def.Merges.Select(m => Encode(m.Left) + " " + Encode(m.Right)).ToArray()));

        AddSpecials(w, modelDir, def);
    }

    /// <summary>The converter's <c>does_token_look_special</c>.</summary>
    internal static bool LooksSpecial(string t) =>
        t is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (t.StartsWith("<|", StringComparison.Ordinal) && t.EndsWith("|>", StringComparison.Ordinal))
        || (t.StartsWith("<｜", StringComparison.Ordinal) && t.EndsWith("｜>", StringComparison.Ordinal))
        || (t.StartsWith("<unused", StringComparison.Ordinal) && t.EndsWith('>'));

    // Merges given as pairs may contain spaces; gguf-py writes them as U+0120 so "a b" stays splittable.
    private static string Encode(string part) => part.Replace(' ', '\u0120');

    /// <summary><c>tokenizer.ggml.pre</c> for the pre-tokenizer pipeline, or <see cref="NotSupportedException"/>.</summary>
    internal static string PreName(TokenizerDefinition def)
    {
        var steps = def.PreTokenizer.Steps;
        if (steps.Count == 1 && steps[0] is PreTokenizerPipeline.ByteLevelStep { AddPrefixSpace: false, Regex: { } r }
            && r.ToString() == PreTokenizerPipeline.ByteLevelSplitPattern)
            return Gguf.Tokenizer.PreGpt2;
        if (steps.Count == 2 && steps[0] is PreTokenizerPipeline.SplitStep s && s.Regex.ToString() == Cl100kSplitPattern
            && steps[1] is PreTokenizerPipeline.ByteLevelStep { AddPrefixSpace: false, Regex: null })
            return Gguf.Tokenizer.PreDbrx;
        throw new NotSupportedException($"{def.SourcePath}: pre_tokenizer ({string.Join(" + ", steps.Select(x => x.GetType().Name.Replace("Step", "", StringComparison.Ordinal)))}) "
            + "has no llama.cpp tokenizer.ggml.pre equivalent (supported: ByteLevel with the GPT-2 regex = gpt-2; Split with the cl100k regex + ByteLevel without regex = dbrx)");
    }

    private static void AddSpecials(GgufWriter w, string modelDir, TokenizerDefinition def)
    {
        var ids = new List<(string Type, int Id)>();
        var flags = new List<(string Type, bool Value)>();
        void SetId(string type, int? id)
        {
            if (id is not int v || ids.Any(x => x.Type == type)) return;
            if (v < 0) throw new InvalidDataException($"{modelDir}: special token '{type}' has negative id {v}");
            ids.Add((type, v));
        }

        var configPath = Path.Combine(modelDir, "tokenizer_config.json");
        string? chatTemplate = null;
        List<(string Name, string Template)>? namedTemplates = null;
        if (File.Exists(configPath))
        {
            using var doc = ParseObject(configPath);
            var root = doc.RootElement;
            foreach (var type in SpecialTypes)
            {
                if (root.TryGetProperty($"add_{type}_token", out var add) && add.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    flags.Add((type, add.GetBoolean()));
                if (!root.TryGetProperty($"{type}_token", out var entry)) continue;
                string? content = entry.ValueKind == JsonValueKind.String ? entry.GetString()
                    : entry.ValueKind == JsonValueKind.Object && entry.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                if (content is null) continue;
                SetId(type, def.AddedTokens.FirstOrDefault(a => a.Content == content)?.Id);
            }
            if (root.TryGetProperty("chat_template", out var ct))
            {
                if (ct.ValueKind == JsonValueKind.String) chatTemplate = ct.GetString();
                else if (ct.ValueKind == JsonValueKind.Array)
                {
                    namedTemplates = new();
                    foreach (var item in ct.EnumerateArray())
                    {
                        if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("template", out var tt) || tt.ValueKind != JsonValueKind.String) continue;
                        string name = item.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "";
                        name = new string(name.Select(ch => char.IsAsciiLetterOrDigit(ch) ? ch : '_').ToArray());
                        if (name.Length > 0) namedTemplates.Add((name, tt.GetString()!));
                    }
                }
            }
            else
            {
                var jinja = Path.Combine(modelDir, "chat_template.jinja");
                if (File.Exists(jinja)) chatTemplate = File.ReadAllText(jinja);
            }
        }

        var modelConfig = Path.Combine(modelDir, "config.json");
        if (File.Exists(modelConfig))
        {
            using var doc = ParseObject(modelConfig);
            foreach (var type in SpecialTypes)
                if (doc.RootElement.TryGetProperty($"{type}_token_id", out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var id))
                    SetId(type, id);
        }

        foreach (var (type, id) in ids)
            if (Gguf.Tokenizer.IdKey(type) is string key) w.Set(key, GgufValue.U32((uint)id));
        foreach (var (type, value) in flags)
            if (Gguf.Tokenizer.AddKey(type) is string key) w.Set(key, GgufValue.Bool(value));
        if (namedTemplates is not null)
        {
            var others = namedTemplates.Where(t => t.Name != "default").ToList();
            foreach (var (name, template) in others) w.Set($"{Gguf.Tokenizer.ChatTemplate}.{name}", GgufValue.Str(template));
            if (others.Count > 0) w.Set("tokenizer.chat_templates", GgufValue.StrArray(others.Select(t => t.Name).Distinct().ToArray()));
            chatTemplate = namedTemplates.FirstOrDefault(t => t.Name == "default").Template;
        }
        if (chatTemplate is not null) w.Set(Gguf.Tokenizer.ChatTemplate, GgufValue.Str(chatTemplate));
    }

    private static JsonDocument ParseObject(string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException ex) { throw new InvalidDataException($"{path}: not valid JSON ({ex.Message})", ex); }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new InvalidDataException($"{path}: the top level must be a JSON object");
        }
        return doc;
    }
}
