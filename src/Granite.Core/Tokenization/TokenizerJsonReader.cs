using System.Text.Json;
using System.Text.RegularExpressions;
using Granite.Core.Diagnostics;

namespace Granite.Core.Tokenization;

/// <summary>
/// Reads and validates a Hugging Face <c>tokenizer.json</c> holding a byte-level BPE model. Every problem is reported
/// as an <see cref="InvalidDataException"/> whose message names the file and the offending field.
/// </summary>
internal static class TokenizerJsonReader
{
    /// <summary>Limit on one match of a split regex from the file (a real pre-tokenizer match takes microseconds; a
    /// pattern such as <c>(a+)+$</c> backtracks exponentially and trips it).</summary>
    internal static TimeSpan RegexMatchTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest token id accepted (ids size the id → token tables; Granite's vocabulary is 100,352).</summary>
    public const int MaxTokenId = (1 << 22) - 1;

    public static TokenizerDefinition Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        }

        JsonDocument document;
        try
        {
            byte[] bytes = CheckedFile.ReadAllBytes(path, CheckedFile.MaxTokenizerBytes);
            if (ErrorText.InvalidUtf8(bytes) is { } bad)
            {
                throw Error(path, bad);
            }

            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException ex)
        {
            throw Error(path, ErrorText.JsonSyntax(ex), ex);
        }

        using (document)
        {
            try
            {
                return Parse(path, document.RootElement);
            }
            catch (InvalidOperationException ex)
            {
                // JsonElement.GetString / JsonProperty.Name cannot represent an escaped unpaired surrogate (\ud800).
                throw Error(path, "a token or string is not valid text (an escaped unpaired surrogate such as \\ud800)", ex);
            }
        }
    }

    private static TokenizerDefinition Parse(string path, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw Error(path, "the top level must be a JSON object");
        }

        if (!root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
        {
            throw Error(path, "missing the required object 'model'");
        }

        string? type = model.TryGetProperty("type", out JsonElement typeElement) && typeElement.ValueKind == JsonValueKind.String
            ? typeElement.GetString()
            : null;
        if (type is not null && type != "BPE")
        {
            throw Error(path, $"unsupported model type 'model.type' = '{E(type)}' (only 'BPE' is supported)");
        }

        if (type is null && !model.TryGetProperty("merges", out _))
        {
            throw Error(path, "no 'model.type' and no 'model.merges'; cannot identify a BPE model");
        }

        CheckModelOptions(path, model);
        Dictionary<string, int> vocab = ReadVocabulary(path, model);
        List<(string, string)> merges = ReadMerges(path, model, vocab);
        List<AddedToken> added = ReadAddedTokens(path, root, vocab);
        CheckNormalizer(path, root);
        CheckDecoder(path, root);
        PreTokenizerPipeline preTokenizer = ReadPreTokenizer(path, root);

        for (int b = 0; b < 256; b++)
        {
            string symbol = ByteLevelAlphabet.ByteToChar((byte)b).ToString();
            if (!vocab.ContainsKey(symbol))
            {
                throw Error(path, $"'model.vocab' lacks the byte-level symbol '{symbol}' for byte 0x{b:X2}; not a byte-level BPE vocabulary");
            }
        }

        bool ignoreMerges = model.TryGetProperty("ignore_merges", out JsonElement im) && im.ValueKind == JsonValueKind.True;
        return new TokenizerDefinition(path, vocab, merges, added, preTokenizer, ignoreMerges);
    }

    private static void CheckModelOptions(string path, JsonElement model)
    {
        if (model.TryGetProperty("dropout", out JsonElement dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() != 0)
        {
            throw Error(path, $"'model.dropout' = {E(dropout.GetRawText())}; BPE dropout is not supported (encoding must be deterministic)");
        }

        if (model.TryGetProperty("byte_fallback", out JsonElement byteFallback) && byteFallback.ValueKind == JsonValueKind.True)
        {
            throw Error(path, "'model.byte_fallback' = true, which is not supported for a byte-level BPE model");
        }

        foreach (string name in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (model.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String && value.GetString()!.Length > 0)
            {
                throw Error(path, $"'model.{name}' = '{E(value.GetString())}', which is not supported for a byte-level BPE model");
            }
        }
    }

    private static Dictionary<string, int> ReadVocabulary(string path, JsonElement model)
    {
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement) || vocabElement.ValueKind != JsonValueKind.Object)
        {
            throw Error(path, "missing the object 'model.vocab' (token → id)");
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var byId = new Dictionary<int, string>();
        foreach (JsonProperty entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0 || id > MaxTokenId)
            {
                throw Error(path, $"'model.vocab' entry '{E(entry.Name)}' has id {E(entry.Value.GetRawText())}; expected an integer in 0..{MaxTokenId}");
            }

            if (!vocab.TryAdd(entry.Name, id))
            {
                throw Error(path, $"'model.vocab' lists token '{E(entry.Name)}' twice");
            }

            if (!byId.TryAdd(id, entry.Name))
            {
                throw Error(path, $"'model.vocab' has duplicate id {id} for tokens '{E(byId[id])}' and '{E(entry.Name)}'");
            }
        }

        if (vocab.Count == 0)
        {
            throw Error(path, "empty 'model.vocab'");
        }

        return vocab;
    }

    private static List<(string, string)> ReadMerges(string path, JsonElement model, Dictionary<string, int> vocab)
    {
        var merges = new List<(string, string)>();
        if (!model.TryGetProperty("merges", out JsonElement mergesElement) || mergesElement.ValueKind == JsonValueKind.Null)
        {
            return merges;
        }

        if (mergesElement.ValueKind != JsonValueKind.Array)
        {
            throw Error(path, "'model.merges' must be an array");
        }

        int index = 0;
        foreach (JsonElement merge in mergesElement.EnumerateArray())
        {
            string left, right;
            if (merge.ValueKind == JsonValueKind.String)
            {
                string text = merge.GetString()!;
                int space = text.IndexOf(' ');
                if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                {
                    throw Error(path, $"'model.merges[{index}]' = \"{E(text)}\" is not of the form \"left right\"");
                }

                left = text[..space];
                right = text[(space + 1)..];
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                     && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                left = merge[0].GetString()!;
                right = merge[1].GetString()!;
                if (left.Length == 0 || right.Length == 0)
                {
                    throw Error(path, $"'model.merges[{index}]' contains an empty token");
                }
            }
            else
            {
                throw Error(path, $"'model.merges[{index}]' = {E(merge.GetRawText())}; expected a \"left right\" string or a [\"left\", \"right\"] pair");
            }

            foreach (string part in new[] { left, right, left + right })
            {
                if (!vocab.ContainsKey(part))
                {
                    throw Error(path, $"'model.merges[{index}]' ({E(left)} {E(right)}) refers to token '{E(part)}', which is not in 'model.vocab'");
                }
            }

            merges.Add((left, right));
            index++;
        }

        return merges;
    }

    private static List<AddedToken> ReadAddedTokens(string path, JsonElement root, Dictionary<string, int> vocab)
    {
        var added = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out JsonElement list) || list.ValueKind == JsonValueKind.Null)
        {
            return added;
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            throw Error(path, "'added_tokens' must be an array");
        }

        Dictionary<int, string> vocabById = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        var seenIds = new Dictionary<int, string>();
        var seenContent = new HashSet<string>(StringComparer.Ordinal);
        int index = 0;
        foreach (JsonElement item in list.EnumerateArray())
        {
            string where = $"'added_tokens[{index}]'";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw Error(path, $"{where} must be an object");
            }

            if (!item.TryGetProperty("id", out JsonElement idElement) || idElement.ValueKind != JsonValueKind.Number
                || !idElement.TryGetInt32(out int id) || id < 0 || id > MaxTokenId)
            {
                throw Error(path, $"{where} needs an integer 'id' in 0..{MaxTokenId}");
            }

            if (!item.TryGetProperty("content", out JsonElement contentElement) || contentElement.ValueKind != JsonValueKind.String
                || contentElement.GetString()!.Length == 0)
            {
                throw Error(path, $"{where} (id {id}) needs a non-empty string 'content'");
            }

            string content = contentElement.GetString()!;
            if (!seenIds.TryAdd(id, content))
            {
                throw Error(path, $"{where} reuses id {id} (already used by added token '{E(seenIds[id])}')");
            }

            if (!seenContent.Add(content))
            {
                throw Error(path, $"{where} lists added token '{E(content)}' twice");
            }

            if (vocabById.TryGetValue(id, out string? existing) && existing != content)
            {
                throw Error(path, $"{where} '{E(content)}' has duplicate id {id}, which 'model.vocab' assigns to '{E(existing)}'");
            }

            if (vocab.TryGetValue(content, out int vocabId) && vocabId != id)
            {
                throw Error(path, $"{where} '{E(content)}' has id {id} but 'model.vocab' gives it id {vocabId}");
            }

            if (Flag(item, "single_word"))
            {
                throw Error(path, $"{where} '{E(content)}' sets 'single_word', which is not supported");
            }

            added.Add(new AddedToken(id, content, Flag(item, "special"), Flag(item, "lstrip"), Flag(item, "rstrip")));
            index++;
        }

        return added;
    }

    private static void CheckNormalizer(string path, JsonElement root)
    {
        if (root.TryGetProperty("normalizer", out JsonElement normalizer) && normalizer.ValueKind != JsonValueKind.Null)
        {
            throw Error(path, $"unsupported normalizer '{E(TypeOf(normalizer))}' (only null is supported)");
        }
    }

    private static void CheckDecoder(string path, JsonElement root)
    {
        if (root.TryGetProperty("decoder", out JsonElement decoder) && decoder.ValueKind != JsonValueKind.Null
            && TypeOf(decoder) != "ByteLevel")
        {
            throw Error(path, $"unsupported decoder type '{E(TypeOf(decoder))}' (only 'ByteLevel' is supported)");
        }
    }

    private static PreTokenizerPipeline ReadPreTokenizer(string path, JsonElement root)
    {
        var steps = new List<PreTokenizerPipeline.Step>();
        if (root.TryGetProperty("pre_tokenizer", out JsonElement pre) && pre.ValueKind != JsonValueKind.Null)
        {
            AddSteps(path, pre, "pre_tokenizer", steps);
        }

        return new PreTokenizerPipeline(steps);
    }

    private static void AddSteps(string path, JsonElement element, string where, List<PreTokenizerPipeline.Step> steps)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Error(path, $"'{where}' must be an object");
        }

        string type = TypeOf(element);
        switch (type)
        {
            case "Sequence":
                if (!element.TryGetProperty("pretokenizers", out JsonElement items) || items.ValueKind != JsonValueKind.Array)
                {
                    throw Error(path, $"'{where}' (Sequence) needs an array 'pretokenizers'");
                }

                int i = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    AddSteps(path, item, $"{where}.pretokenizers[{i++}]", steps);
                }

                break;
            case "ByteLevel":
                bool useRegex = !element.TryGetProperty("use_regex", out JsonElement ur) || ur.ValueKind != JsonValueKind.False;
                steps.Add(new PreTokenizerPipeline.ByteLevelStep(
                    Flag(element, "add_prefix_space"),
                    useRegex ? Compile(path, PreTokenizerPipeline.ByteLevelSplitPattern, where) : null)
                { Origin = $"Invalid tokenizer file '{path}': '{where}'" });
                break;
            case "Split":
                string behavior = element.TryGetProperty("behavior", out JsonElement b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "";
                if (behavior != "Isolated")
                {
                    throw Error(path, $"'{where}' (Split) has behavior '{E(behavior)}'; only 'Isolated' is supported");
                }

                if (Flag(element, "invert"))
                {
                    throw Error(path, $"'{where}' (Split) has invert = true, which is not supported");
                }

                if (!element.TryGetProperty("pattern", out JsonElement pattern) || pattern.ValueKind != JsonValueKind.Object)
                {
                    throw Error(path, $"'{where}' (Split) needs an object 'pattern'");
                }

                string regex;
                if (pattern.TryGetProperty("Regex", out JsonElement r) && r.ValueKind == JsonValueKind.String)
                {
                    regex = r.GetString()!;
                }
                else if (pattern.TryGetProperty("String", out JsonElement s) && s.ValueKind == JsonValueKind.String)
                {
                    regex = Regex.Escape(s.GetString()!);
                }
                else
                {
                    throw Error(path, $"'{where}.pattern' needs a string 'Regex' or 'String'");
                }

                steps.Add(new PreTokenizerPipeline.SplitStep(Compile(path, regex, where)) { Origin = $"Invalid tokenizer file '{path}': '{where}'" });
                break;
            default:
                throw Error(path, $"'{where}' has unsupported pre-tokenizer type '{E(type)}' (supported: Sequence, Split, ByteLevel)");
        }
    }

    private static Regex Compile(string path, string pattern, string where)
    {
        try
        {
            return new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant, RegexMatchTimeout);
        }
        catch (ArgumentException ex)
        {
            throw Error(path, $"'{where}' has a split regex that .NET cannot compile ({ErrorText.Excerpt(pattern)}): {ErrorText.Excerpt(ex.Message, 200)}", ex);
        }
    }

    private static string E(string? text) => ErrorText.Excerpt(text);

    private static string TypeOf(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()!
            : element.ValueKind.ToString();

    private static bool Flag(JsonElement element, string name) =>
        element.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.True;

    internal static InvalidDataException Error(string path, string problem, Exception? inner = null) =>
        new($"Invalid tokenizer file '{path}': {problem}.", inner);
}
