using System.Text.Json;
using System.Text.RegularExpressions;
using Granite.Core.Diagnostics;

namespace Granite.Core.Configuration;

/// <summary>
/// Reads <c>config.json</c> into a <see cref="GraniteConfig"/>: source-generated System.Text.Json parsing
/// (<see cref="GraniteConfigJsonContext"/>), the Hugging Face <c>GraniteMoeHybridConfig</c> defaults for absent fields
/// (recorded in <see cref="GraniteConfig.DefaultedFields"/>), then <see cref="GraniteConfigValidator"/>. Every error is an
/// <see cref="InvalidDataException"/> naming the file and the field.
/// </summary>
internal static partial class GraniteConfigReader
{
    /// <summary>The <c>config.json</c> fields this reader reads, in Hugging Face's order (for <see cref="GraniteConfig.DefaultedFields"/>).</summary>
    private static readonly string[] ArchitectureFields =
    {
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "hidden_act", "max_position_embeddings", "rms_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id",
        "tie_word_embeddings", "rope_theta", "attention_bias", "embedding_multiplier", "logits_scaling", "residual_multiplier",
        "attention_multiplier", "num_local_experts", "num_experts_per_tok", "shared_intermediate_size", "position_embedding_type",
        "layer_types", "mamba_n_heads", "mamba_n_groups", "mamba_d_state", "mamba_d_head", "mamba_d_conv", "mamba_expand",
        "mamba_chunk_size", "mamba_conv_bias", "mamba_proj_bias", "time_step_limit",
    };

    /// <summary>Python's json module writes bare <c>Infinity</c>/<c>NaN</c> (e.g. in <c>time_step_limit</c>): this finds them
    /// in value position so they can be quoted into valid JSON first.</summary>
    [GeneratedRegex(@"(?<=[\[:,]\s*)(-?)(Infinity|NaN)\b")]
    private static partial Regex PythonNonFinite();

    /// <summary>Reads and validates <c>config.json</c> from a checkpoint folder or a file path.</summary>
    public static GraniteConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"Granite config not found: {path}", path);
        ReadOnlySpan<byte> bytes = CheckedFile.ReadAllBytes(path);
        if (bytes.StartsWith("\uFEFF"u8)) bytes = bytes[3..];
        if (ErrorText.InvalidUtf8(bytes) is { } bad) throw new InvalidDataException($"{path}: {bad}");
        return Parse(System.Text.Encoding.UTF8.GetString(bytes), path);
    }

    /// <summary>Parses and validates config JSON. <paramref name="sourceName"/> appears in error messages.</summary>
    public static GraniteConfig Parse(string json, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            return Build(ReadObject(json, sourceName), sourceName);
        }
        catch (InvalidOperationException ex)
        {
            // Keys and strings are decoded lazily; an escaped unpaired surrogate (\ud800) has no .NET string.
            throw UnpairedSurrogate(sourceName, ex);
        }
    }

    private static InvalidDataException UnpairedSurrogate(string sourceName, Exception ex) =>
        new($"{sourceName}: a key or string is not valid text (an escaped unpaired surrogate such as \\ud800)", ex);

    /// <summary>The top-level object, field name → value.</summary>
    private static Dictionary<string, JsonElement> ReadObject(string json, string sourceName)
    {
        string sanitized = PythonNonFinite().Replace(json, m => "\"" + m.Groups[1].Value + m.Groups[2].Value + "\"");
        try
        {
            var first = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(sanitized), new JsonReaderOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            if (first.Read() && first.TokenType != JsonTokenType.StartObject)
                throw new InvalidDataException($"{sourceName}: the root is not a JSON object");
            return JsonSerializer.Deserialize(sanitized, GraniteConfigJsonContext.Default.DictionaryStringJsonElement)
                ?? throw new InvalidDataException($"{sourceName}: the root is not a JSON object");
        }
        catch (JsonException ex) when (ex.InnerException is InvalidOperationException)
        {
            throw UnpairedSurrogate(sourceName, ex);
        }
        catch (JsonException ex) when (RepeatedKey(sanitized) is { } key)
        {
            throw new InvalidDataException($"{sourceName}: {ErrorText.JsonSyntax(ex)}; the key '{ErrorText.Excerpt(key)}' is repeated", ex);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{sourceName}: {ErrorText.JsonSyntax(ex)}", ex);
        }
    }

    /// <summary>The first key that repeats within one object (the serializer's duplicate error does not name it), or null.</summary>
    private static string? RepeatedKey(string json)
    {
        try
        {
            var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(json), new JsonReaderOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            var open = new Stack<HashSet<string>?>();
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: open.Push(new HashSet<string>(StringComparer.Ordinal)); break;
                    case JsonTokenType.StartArray: open.Push(null); break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray: open.Pop(); break;
                    case JsonTokenType.PropertyName:
                        string name = reader.GetString()!;
                        if (open.Peek() is { } keys && !keys.Add(name)) return name;
                        break;
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
        }
        return null;
    }

    private static GraniteConfig Build(Dictionary<string, JsonElement> root, string sourceName)
    {
        var r = new FieldReader(root, sourceName);
        string? modelType = r.Str("model_type", null);
        if (modelType is not null && modelType != "granitemoehybrid" && modelType != "granitemoeshared" && modelType != "granite" && modelType != "granitemoe")
            throw new InvalidDataException($"{sourceName}: field 'model_type' is '{ErrorText.Excerpt(modelType)}', expected 'granitemoehybrid'");

        int hidden = r.Int("hidden_size", 4096);
        int layers = r.Int("num_hidden_layers", 32);
        int heads = r.Int("num_attention_heads", 32);
        int mambaHeads = r.Int("mamba_n_heads", 128);
        int expand = r.Int("mamba_expand", 2);
        var dHeadNode = r.Get("mamba_d_head");
        int dHead = dHeadNode is null || dHeadNode.Value.ValueKind == JsonValueKind.String && dHeadNode.Value.GetString() == "auto"
            ? (mambaHeads > 0 ? expand * hidden / mambaHeads : 0)
            : r.Int("mamba_d_head", 0);

        string typesField = r.Get("layer_types") is not null ? "layer_types" : "layers_block_type";
        var typesNode = r.Get(typesField);
        List<LayerKind> kinds;
        if (layers <= 0 || layers > GraniteConfig.MaxLayers)
            throw new InvalidDataException($"{sourceName}: field 'num_hidden_layers' is {layers}, expected 1..{GraniteConfig.MaxLayers}");
        if (typesNode is null) kinds = Enumerable.Repeat(LayerKind.Mamba, layers).ToList();
        else if (typesNode.Value.ValueKind == JsonValueKind.Array)
        {
            kinds = new List<LayerKind>(typesNode.Value.GetArrayLength());
            int i = 0;
            foreach (var item in typesNode.Value.EnumerateArray())
            {
                string? t = item.ValueKind == JsonValueKind.String ? item.GetString() : null;
                kinds.Add(t switch
                {
                    "mamba" => LayerKind.Mamba,
                    "attention" => LayerKind.Attention,
                    _ => throw new InvalidDataException($"{sourceName}: field '{typesField}[{i}]' is '{ErrorText.Excerpt(FieldReader.Raw(item))}', expected \"mamba\" or \"attention\""),
                });
                i++;
            }
        }
        else throw new InvalidDataException($"{sourceName}: field '{typesField}' must be a list of \"mamba\"/\"attention\"");

        var ropeParameters = r.Get("rope_parameters");
        bool nestedTheta = ropeParameters is { ValueKind: JsonValueKind.Object } rp && rp.TryGetProperty("rope_theta", out var nt) && nt.ValueKind != JsonValueKind.Null;
        double ropeTheta = nestedTheta
            ? FieldReader.AsDouble(ropeParameters!.Value.GetProperty("rope_theta"), sourceName + " rope_parameters", "rope_theta")
            : r.Double("rope_theta", 10000);

        var limit = (0.0, double.PositiveInfinity);
        if (r.Get("time_step_limit") is { ValueKind: JsonValueKind.Array } tl)
        {
            if (tl.GetArrayLength() != 2) throw new InvalidDataException($"{sourceName}: field 'time_step_limit' must have two numbers");
            limit = (FieldReader.AsDouble(tl[0], sourceName, "time_step_limit[0]"), FieldReader.AsDouble(tl[1], sourceName, "time_step_limit[1]"));
        }

        var cfg = new GraniteConfig
        {
            VocabSize = r.Int("vocab_size", 32000),
            HiddenSize = hidden,
            IntermediateSize = r.Int("intermediate_size", 11008),
            SharedIntermediateSize = r.Int("shared_intermediate_size", 1024),
            NumHiddenLayers = layers,
            LayerTypes = kinds,
            NumAttentionHeads = heads,
            NumKeyValueHeads = r.Int("num_key_value_heads", heads),
            HiddenAct = r.Str("hidden_act", "silu")!,
            MaxPositionEmbeddings = r.Int("max_position_embeddings", 2048),
            RmsNormEps = r.Double("rms_norm_eps", 1e-6),
            PadTokenId = r.IntOrNull("pad_token_id"),
            BosTokenId = root.ContainsKey("bos_token_id") ? r.IntOrNull("bos_token_id") : 1,
            EosTokenIds = r.IntList("eos_token_id", new[] { 2 }),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            RopeTheta = ropeTheta,
            AttentionBias = r.Bool("attention_bias", false),
            EmbeddingMultiplier = r.Double("embedding_multiplier", 1.0),
            AttentionMultiplier = r.Double("attention_multiplier", 1.0),
            ResidualMultiplier = r.Double("residual_multiplier", 1.0),
            LogitsScaling = r.Double("logits_scaling", 1.0),
            NumLocalExperts = r.Int("num_local_experts", 8),
            NumExpertsPerTok = r.Int("num_experts_per_tok", 2),
            PositionEmbeddingType = r.Str("position_embedding_type", null),
            MambaNHeads = mambaHeads,
            MambaNGroups = r.Int("mamba_n_groups", 1),
            MambaDState = r.Int("mamba_d_state", 256),
            MambaDHead = dHead,
            MambaDConv = r.Int("mamba_d_conv", 4),
            MambaExpand = expand,
            MambaChunkSize = r.Int("mamba_chunk_size", 256),
            MambaConvBias = r.Bool("mamba_conv_bias", true),
            MambaProjBias = r.Bool("mamba_proj_bias", false),
            TimeStepLimit = limit,
            TorchDtype = r.Str("torch_dtype", null) ?? r.Str("dtype", null),
            SourcePath = sourceName,
        };
        GraniteConfig.SetDefaultedFields(cfg, ArchitectureFields.Where(f => f switch
        {
            "layer_types" => !root.ContainsKey("layer_types") && !root.ContainsKey("layers_block_type"),
            "rope_theta" => !root.ContainsKey("rope_theta") && !(ropeParameters is { ValueKind: JsonValueKind.Object } rpo && rpo.TryGetProperty("rope_theta", out _)),
            _ => !root.ContainsKey(f),
        }).ToArray());
        GraniteConfigValidator.Validate(cfg);
        return cfg;
    }

    /// <summary>Typed reads of the top-level fields; a JSON null counts as absent (the default applies).</summary>
    private sealed class FieldReader(Dictionary<string, JsonElement> o, string src)
    {
        /// <summary>The field's value, or null when absent or JSON null.</summary>
        public JsonElement? Get(string name) => o.TryGetValue(name, out var e) && e.ValueKind != JsonValueKind.Null ? e : null;

        /// <summary>The value as compact JSON text (as it was quoted before: re-written, not the file's raw text), for error messages.</summary>
        public static string Raw(JsonElement e)
        {
            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(buffer)) e.WriteTo(w);
            return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        }

        public int Int(string name, int dflt)
        {
            if (Get(name) is not { } e) return dflt;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var i)) return i;
            throw new InvalidDataException($"{src}: field '{name}' must be an integer (is {ErrorText.Excerpt(Raw(e))})");
        }

        public int? IntOrNull(string name) => Get(name) is null ? null : Int(name, 0);

        public IReadOnlyList<int> IntList(string name, int[] dflt)
        {
            if (Get(name) is not { } e) return dflt;
            if (e.ValueKind == JsonValueKind.Array)
                return e.EnumerateArray().Select((x, i) => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out var xi) ? xi : throw new InvalidDataException($"{src}: field '{name}[{i}]' must be an integer")).ToArray();
            return new[] { Int(name, 0) };
        }

        public double Double(string name, double dflt) => Get(name) is { } e ? AsDouble(e, src, name) : dflt;

        public static double AsDouble(JsonElement e, string src, string name)
        {
            if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var d)) return d;
            if (e.ValueKind == JsonValueKind.String)
            {
                switch (e.GetString())
                {
                    case "Infinity": return double.PositiveInfinity;
                    case "-Infinity": return double.NegativeInfinity;
                    case "NaN": return double.NaN;
                }
            }
            throw new InvalidDataException($"{src}: field '{name}' must be a number (is {ErrorText.Excerpt(e.ValueKind == JsonValueKind.Undefined ? null : Raw(e))})");
        }

        public bool Bool(string name, bool dflt)
        {
            if (Get(name) is not { } e) return dflt;
            if (e.ValueKind is JsonValueKind.True or JsonValueKind.False) return e.GetBoolean();
            throw new InvalidDataException($"{src}: field '{name}' must be true or false (is {ErrorText.Excerpt(Raw(e))})");
        }

        public string? Str(string name, string? dflt)
        {
            if (Get(name) is not { } e) return dflt;
            if (e.ValueKind == JsonValueKind.String) return e.GetString();
            throw new InvalidDataException($"{src}: field '{name}' must be a string (is {ErrorText.Excerpt(Raw(e))})");
        }
    }
}
