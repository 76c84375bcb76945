using System.Text.Json;
using Granite.Core.Configuration;
using static TorchSharp.torch;

namespace Granite.Core.Weights.Gguf;

/// <summary>
/// Reads a llama.cpp GGUF file of a Granite 4.0 model (<c>granitehybrid</c>, <c>granite</c>, <c>granitemoe</c>) back into
/// this project's terms: metadata → <see cref="GraniteConfig"/>, tensors → Hugging Face tensors with the converter's
/// transforms undone (<c>ssm_a</c> → A_log = log(−A), split gate/up re-fused, q/k rows un-permuted, reshapes undone),
/// <c>tokenizer.ggml.*</c> → <c>tokenizer.json</c>, <c>tokenizer.chat_template</c> → <c>tokenizer_config.json</c>.
/// </summary>
/// <remarks>
/// <see cref="ResolveModelPath"/> writes a small folder (config, tokenizer, a pointer to the file: <see cref="Link"/>);
/// <see cref="Modeling.GraniteModel.Load"/> then maps the GGUF itself, keeping quantized tensors as blocks in place.
/// <see cref="Materialize"/> writes a full safetensors checkpoint instead (quantized tensors dequantized). See docs/gguf.md.
/// </remarks>
internal static class GgufImporter
{
    /// <summary>Maps the file's metadata to a validated config (errors name the file and key).</summary>
    public static GraniteConfig ReadConfig(GgufFile f)
    {
        string arch = f.GetString(Gguf.General.Architecture);
        if (arch is not (Gguf.ArchGraniteHybrid or Gguf.ArchGranite or Gguf.ArchGraniteMoe))
            throw new NotSupportedException($"{f.Path}: general.architecture is '{arch}'; supported: {Gguf.ArchGraniteHybrid}, {Gguf.ArchGranite}, {Gguf.ArchGraniteMoe}");
        string K(string fmt) => Gguf.Llm.Key(fmt, arch);
        int U(string fmt) => f.GetInt32(K(fmt));
        int UOr(string fmt, int dflt) => f.Contains(K(fmt)) ? U(fmt) : dflt;
        double DOr(string fmt, double dflt) => f.Contains(K(fmt)) ? f.GetDouble(K(fmt)) : dflt;

        int layers = U(Gguf.Llm.BlockCount);
        int hidden = U(Gguf.Llm.EmbeddingLength);
        int heads = U(Gguf.Llm.HeadCount);
        if (layers <= 0 || layers > 4096) throw Bad(f, K(Gguf.Llm.BlockCount), $"is {layers}");
        var kvKey = K(Gguf.Llm.HeadCountKv);
        var kvValue = f.Require(kvKey);
        int[] kvPerLayer;
        if (kvValue.Type == GgufValueType.Array)
        {
            var arr = (Array)kvValue.Value;
            if (arr.Length != layers) throw Bad(f, kvKey, $"has {arr.Length} entries but block_count is {layers}");
            kvPerLayer = new int[layers];
            for (int i = 0; i < layers; i++)
                kvPerLayer[i] = arr.GetValue(i) is var v && new GgufValue(kvValue.ElementType, v!).AsInt64() is long l && l >= 0 && l <= int.MaxValue
                    ? (int)l : throw Bad(f, kvKey, $"entry {i} is not a non-negative integer");
        }
        else kvPerLayer = Enumerable.Repeat(f.GetInt32(kvKey), layers).ToArray();
        var kinds = kvPerLayer.Select(n => n == 0 ? LayerKind.Mamba : LayerKind.Attention).ToArray();
        var kvHeads = kvPerLayer.Where(n => n > 0).Distinct().ToArray();
        if (kvHeads.Length > 1) throw new NotSupportedException($"{f.Path}: metadata '{kvKey}' has different key/value head counts per attention layer ({string.Join(", ", kvHeads)})");
        bool hybrid = kinds.Contains(LayerKind.Mamba);
        if (hybrid != (arch == Gguf.ArchGraniteHybrid))
            throw Bad(f, kvKey, hybrid ? $"marks Mamba layers (0 entries) but the architecture is '{arch}'" : "marks no Mamba layer, but the architecture is granitehybrid");

        var embd = f.GetInfo("token_embd.weight");
        if (embd.Shape.Length != 2 || embd.Shape[1] != hidden)
            throw new InvalidDataException($"{f.Path}: tensor 'token_embd.weight' has shape [{string.Join(",", embd.Shape)}], metadata implies [vocab, {hidden}]");
        if (embd.Shape[0] > int.MaxValue)
            throw new InvalidDataException($"{f.Path}: tensor 'token_embd.weight' has {embd.Shape[0]} rows, more than a vocabulary can have");
        int vocab = (int)embd.Shape[0];
        if (f.Contains(K(Gguf.Llm.VocabSize)) && U(Gguf.Llm.VocabSize) != vocab)
            throw Bad(f, K(Gguf.Llm.VocabSize), $"is {U(Gguf.Llm.VocabSize)} but token_embd.weight has {vocab} rows");

        int experts = UOr(Gguf.Llm.ExpertCount, 0);
        int ff = U(Gguf.Llm.FeedForwardLength);
        int headDim = heads > 0 ? hidden / heads : 0;
        bool rope = arch != Gguf.ArchGraniteHybrid || (f.Get(K(Gguf.Llm.RopeScalingFinetuned))?.Value is true);
        int inner = UOr(Gguf.Llm.SsmInnerSize, 2 * hidden);
        int ssmHeads = UOr(Gguf.Llm.SsmTimeStepRank, 0);
        if (hybrid && (inner % hidden != 0)) throw Bad(f, K(Gguf.Llm.SsmInnerSize), $"({inner}) is not a multiple of embedding_length ({hidden})");
        if (hybrid && (ssmHeads <= 0 || inner % ssmHeads != 0)) throw Bad(f, K(Gguf.Llm.SsmTimeStepRank), $"({ssmHeads}) must divide ssm.inner_size ({inner})");

        int? Tok(string key) => f.Contains(key) ? f.GetInt32(key) : null;
        int? eos = Tok(Gguf.Tokenizer.EosId);
        var cfg = new GraniteConfig
        {
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = ff,
            SharedIntermediateSize = UOr(Gguf.Llm.ExpertSharedFeedForwardLength, ff),
            NumHiddenLayers = layers,
            LayerTypes = kinds,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads.Length == 1 ? kvHeads[0] : heads,
            MaxPositionEmbeddings = U(Gguf.Llm.ContextLength),
            RmsNormEps = f.GetDouble(K(Gguf.Llm.RmsEps)),
            PadTokenId = Tok(Gguf.Tokenizer.PadId),
            BosTokenId = Tok(Gguf.Tokenizer.BosId),
            EosTokenIds = eos is int e ? new[] { e } : Array.Empty<int>(),
            TieWordEmbeddings = !f.ContainsTensor("output.weight"),
            RopeTheta = DOr(Gguf.Llm.RopeFreqBase, 10000),
            AttentionBias = f.ContainsTensor(FirstAttention(kinds) is int a ? $"blk.{a}.attn_q.bias" : "-"),
            // llama.cpp's meaning of an absent key: softmax scale 1/sqrt(head_dim), no embedding/residual/logit scaling.
            EmbeddingMultiplier = DOr(Gguf.Llm.EmbeddingScale, 1.0),
            AttentionMultiplier = DOr(Gguf.Llm.AttentionScale, headDim > 0 ? 1.0 / Math.Sqrt(headDim) : 1.0),
            ResidualMultiplier = DOr(Gguf.Llm.ResidualScale, 1.0),
            LogitsScaling = DOr(Gguf.Llm.LogitScale, 1.0),
            NumLocalExperts = experts,
            NumExpertsPerTok = UOr(Gguf.Llm.ExpertUsedCount, 0),
            PositionEmbeddingType = rope ? "rope" : "nope",
            MambaNHeads = ssmHeads > 0 ? ssmHeads : 128,
            MambaNGroups = UOr(Gguf.Llm.SsmGroupCount, 1),
            MambaDState = UOr(Gguf.Llm.SsmStateSize, 256),
            MambaDHead = ssmHeads > 0 && inner % ssmHeads == 0 ? inner / ssmHeads : 0,
            MambaDConv = UOr(Gguf.Llm.SsmConvKernel, 4),
            MambaExpand = inner % hidden == 0 ? inner / hidden : 2,
            MambaConvBias = FirstMamba(kinds) is int m ? f.ContainsTensor($"blk.{m}.ssm_conv1d.bias") : true,
            MambaProjBias = FirstMamba(kinds) is int m2 && f.ContainsTensor($"blk.{m2}.ssm_in.bias"),
            TorchDtype = StoredDtypeName(f),
            SourcePath = f.Path,
        };
        try { cfg.Validate(); }
        catch (InvalidDataException ex) { throw new InvalidDataException($"{ex.Message} (derived from the GGUF metadata)", ex); }
        return cfg;
    }

    private static int? FirstAttention(LayerKind[] k) => Array.IndexOf(k, LayerKind.Attention) is var i && i >= 0 ? i : null;
    private static int? FirstMamba(LayerKind[] k) => Array.IndexOf(k, LayerKind.Mamba) is var i && i >= 0 ? i : null;

    private static InvalidDataException Bad(GgufFile f, string key, string problem) => new($"{f.Path}: metadata '{key}' {problem}");

    private static string StoredDtypeName(GgufFile f) => (f.Get(Gguf.General.FileType)?.AsUInt32()) switch
    {
        (uint)LlamaFileType.MostlyBF16 => "bfloat16",
        (uint)LlamaFileType.MostlyF16 => "float16",
        _ => "float32",
    };

    /// <summary>
    /// The Hugging Face tensors of the file (name, dtype, shape) checked against what <paramref name="c"/> implies, and a
    /// producer of each; every GGUF tensor must be used exactly once.
    /// </summary>
    public static IReadOnlyList<(SafetensorsTensorSpec Spec, Func<Tensor> Produce)> Tensors(GgufFile f, GraniteConfig c)
    {
        var mappings = GraniteGgufLayout.Tensors(c, hasLmHead: f.ContainsTensor("output.weight"));
        foreach (var m in mappings)
        {
            var info = f.ContainsTensor(m.GgufName) ? f.GetInfo(m.GgufName)
                : throw new InvalidDataException($"{f.Path}: tensor '{m.GgufName}' is missing (needed for {m.HfName})");
            if (!info.Shape.SequenceEqual(m.Shape))
                throw new InvalidDataException($"{f.Path}: tensor '{m.GgufName}' has shape [{string.Join(",", info.Shape)}], the metadata implies [{string.Join(",", m.Shape)}]");
            if (m.Transform is GgufTransform.PermuteQ or GgufTransform.PermuteK
                && (m.Transform == GgufTransform.PermuteQ ? c.NumAttentionHeads : c.NumKeyValueHeads) is var h && (h <= 0 || m.Shape[0] % (2L * h) != 0))
                throw new InvalidDataException($"{f.Path}: tensor '{m.GgufName}' has {m.Shape[0]} rows, which do not split into {h} heads of even size (the converter's RoPE row order cannot be undone)");
            if (!GgufQuantization.IsReadable(info.Type))
                throw new NotSupportedException($"{f.Path}: tensor '{m.GgufName}' has type {info.Type}; import reads {GgufQuantization.ReadableTypes} (block types dequantized at load)");
        }
        var used = mappings.Select(m => m.GgufName).ToHashSet(StringComparer.Ordinal);
        var extra = f.Tensors.Where(t => !used.Contains(t.Name)).Select(t => t.Name).ToList();
        if (extra.Count > 0) throw new InvalidDataException($"{f.Path}: tensor '{extra[0]}' has no meaning for this model ({extra.Count} unexpected in all)");

        var result = new List<(SafetensorsTensorSpec, Func<Tensor>)>();
        foreach (var group in mappings.GroupBy(m => m.HfName))
        {
            var parts = group.ToList();
            var types = parts.Select(p => f.GetInfo(p.GgufName).Type).Distinct().ToList();
            var dtype = types.Count == 1 && types[0] is GgmlType.BF16 ? ScalarType.BFloat16
                : types.Count == 1 && types[0] is GgmlType.F16 ? ScalarType.Float16 : ScalarType.Float32;
            if (parts[0].Transform == GgufTransform.NegExp) dtype = ScalarType.Float32;
            var spec = new SafetensorsTensorSpec(parts[0].HfName, dtype, parts[0].HfShape);
            result.Add((spec, () => Inverse(f, c, parts, dtype)));
        }
        return result;
    }

    private static Tensor Inverse(GgufFile f, GraniteConfig c, List<GgufTensorMapping> parts, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        Tensor Get(GgufTensorMapping m) => f.GetTensor(m.GgufName).to_type(dtype);
        var m0 = parts[0];
        Tensor hf = m0.Transform switch
        {
            GgufTransform.FirstHalf => cat(new[] { Get(m0), Get(parts[1]) }, -2),
            GgufTransform.NegExp => ALogFromA(f.GetTensor(m0.GgufName).to_type(ScalarType.Float32).reshape(m0.HfShape)),
            GgufTransform.PermuteQ => GraniteGgufLayout.Permute(Get(m0), c.NumAttentionHeads, inverse: true),
            GgufTransform.PermuteK => GraniteGgufLayout.Permute(Get(m0), c.NumKeyValueHeads, inverse: true),
            GgufTransform.Reshape => Get(m0).reshape(m0.HfShape),
            GgufTransform.Copy => Get(m0),
            _ => throw new InvalidDataException($"{f.Path}: tensor '{m0.GgufName}': unexpected layout"),
        };
        if (parts.Count != (m0.Transform == GgufTransform.FirstHalf ? 2 : 1) || (parts.Count == 2 && parts[1].Transform != GgufTransform.SecondHalf))
            throw new InvalidDataException($"{f.Path}: tensor '{m0.HfName}': unexpected GGUF parts {string.Join(", ", parts.Select(p => p.GgufName))}");
        return hf.contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A_log from the stored A = −exp(A_log) (F32). Where the BF16 rounding of log(−A) reproduces A exactly it is used —
    /// the original value of a BF16 checkpoint, so such a round trip is bit-exact — otherwise log(−A) in F32. Either way
    /// −exp(A_log), all the model computes from it, gives back the stored A.
    /// </summary>
    private static Tensor ALogFromA(Tensor a)
    {
        var log = a.neg().log();
        var bf = log.to_type(ScalarType.BFloat16).to_type(ScalarType.Float32);
        return where(bf.exp().neg().eq(a), bf, log);
    }

    /// <summary>
    /// Writes the file as a checkpoint folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) into
    /// <paramref name="directory"/>, streaming one tensor at a time; returns the config. Files are written atomically.
    /// </summary>
    public static GraniteConfig Materialize(string ggufPath, string directory)
    {
        using var f = GgufFile.Open(ggufPath);
        var cfg = ReadConfig(f);
        var tensors = Tensors(f, cfg);
        var (tokenizerJson, tokenizerConfig) = GgufTokenizerImport.Build(f, cfg);
        Directory.CreateDirectory(directory);
        var lookup = tensors.ToDictionary(t => t.Spec.Name, t => t.Produce, StringComparer.Ordinal);
        SafetensorsWriter.Write(Path.Combine(directory, SafetensorsCheckpoint.SingleFileName), tensors.Select(t => t.Spec).ToList(),
            s => lookup[s.Name](), new Dictionary<string, string> { ["format"] = "pt", ["source"] = "gguf" });
        WriteAtomic(Path.Combine(directory, "tokenizer.json"), tokenizerJson);
        WriteAtomic(Path.Combine(directory, "tokenizer_config.json"), tokenizerConfig);
        WriteAtomic(Path.Combine(directory, "config.json"), cfg.ToJson()); // last: its presence marks a complete folder
        return cfg with { SourcePath = Path.Combine(directory, "config.json") };
    }

    /// <summary>Name of the file in a linked folder (<see cref="Link"/>) that points at its GGUF file.</summary>
    public const string SourceFileName = "gguf-source.json";

    /// <summary>
    /// Writes the small part of an import into <paramref name="directory"/>: config.json, tokenizer.json,
    /// tokenizer_config.json and <see cref="SourceFileName"/> (the GGUF's path, size and time) — no weights:
    /// <see cref="Modeling.GraniteModel.Load"/> maps the GGUF itself (quantized tensors stay blocks in place, F32 tensors are
    /// zero-copy views). All tensors are checked against the metadata here, as <see cref="Materialize"/> does.
    /// </summary>
    public static GraniteConfig Link(string ggufPath, string directory)
    {
        var full = Path.GetFullPath(ggufPath);
        using var f = GgufFile.Open(full);
        var cfg = ReadConfig(f);
        _ = Tensors(f, cfg); // every tensor named, typed and shaped as the metadata implies
        var (tokenizerJson, tokenizerConfig) = GgufTokenizerImport.Build(f, cfg);
        Directory.CreateDirectory(directory);
        var fi = new FileInfo(full);
        WriteAtomic(Path.Combine(directory, SourceFileName), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["path"] = full,
            ["length"] = fi.Length,
            ["mtime_ticks"] = fi.LastWriteTimeUtc.Ticks,
        }));
        WriteAtomic(Path.Combine(directory, "tokenizer.json"), tokenizerJson);
        WriteAtomic(Path.Combine(directory, "tokenizer_config.json"), tokenizerConfig);
        WriteAtomic(Path.Combine(directory, "config.json"), cfg.ToJson()); // last: its presence marks a complete folder
        return cfg with { SourcePath = Path.Combine(directory, "config.json") };
    }

    /// <summary>
    /// The GGUF file a folder written by <see cref="Link"/> points at, or null for an ordinary checkpoint folder.
    /// </summary>
    /// <exception cref="InvalidDataException">The pointer is unreadable, or the GGUF is gone or changed since the import.</exception>
    public static string? LinkedSource(string directory)
    {
        var file = Path.Combine(directory, SourceFileName);
        if (!File.Exists(file)) return null;
        string path;
        long length, ticks;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            path = doc.RootElement.GetProperty("path").GetString() ?? throw new InvalidDataException("path is null");
            length = doc.RootElement.GetProperty("length").GetInt64();
            ticks = doc.RootElement.GetProperty("mtime_ticks").GetInt64();
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or InvalidDataException)
        {
            throw new InvalidDataException($"{file}: not a valid GGUF pointer ({ex.Message})", ex);
        }
        var fi = new FileInfo(path);
        if (!fi.Exists) throw new FileNotFoundException($"{file}: the GGUF file it points at is gone: {path}", path);
        if (fi.Length != length || fi.LastWriteTimeUtc.Ticks != ticks)
            throw new InvalidDataException($"{file}: the GGUF file {path} changed since it was imported; load the .gguf file itself again");
        return path;
    }

    private static void WriteAtomic(string path, string text)
    {
        File.WriteAllText(path + ".tmp", text);
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>
    /// <paramref name="modelPath"/> unchanged when it is a folder; for a GGUF file (detected by its magic, so an Ollama
    /// blob without extension works too) the path of a folder linked to it (<see cref="Link"/>: config, tokenizer and a
    /// pointer, no weights) in <c>$GRANITE_CACHE</c> (default <c>~/.cache/granite/gguf</c>), keyed by the file's path, size
    /// and time, reused when present.
    /// </summary>
    /// <exception cref="InvalidDataException">The GGUF file is invalid.</exception>
    public static string ResolveModelPath(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        if (Directory.Exists(modelPath) || !File.Exists(modelPath)) return modelPath;
        if (!GgufFile.HasMagic(modelPath))
        {
            if (modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"{Path.GetFullPath(modelPath)}: is not a GGUF file (no GGUF magic)");
            return modelPath;
        }
        var full = Path.GetFullPath(modelPath);
        var fi = new FileInfo(full);
        var key = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
            System.Text.Encoding.UTF8.GetBytes($"{full}\n{fi.Length}\n{fi.LastWriteTimeUtc.Ticks}\nv2-linked")))[..16].ToLowerInvariant();
        var dir = Path.Combine(CacheRoot(), Path.GetFileNameWithoutExtension(full) + "-" + key);
        if (File.Exists(Path.Combine(dir, "config.json")) && File.Exists(Path.Combine(dir, SourceFileName))) return dir;
        var staging = dir + ".partial-" + Environment.ProcessId;
        try
        {
            Link(full, staging);
            try { Directory.Move(staging, dir); }
            catch (IOException) when (File.Exists(Path.Combine(dir, "config.json"))) { Directory.Delete(staging, recursive: true); } // another process won
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            throw;
        }
        return dir;
    }

    private static string CacheRoot()
    {
        var env = Environment.GetEnvironmentVariable("GRANITE_CACHE");
        if (!string.IsNullOrEmpty(env)) return Path.Combine(env, "gguf");
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "granite", "gguf");
    }
}

/// <summary>Rebuilds <c>tokenizer.json</c> and <c>tokenizer_config.json</c> from <c>tokenizer.ggml.*</c> metadata.</summary>
internal static class GgufTokenizerImport
{
    /// <summary>The two JSON documents.</summary>
    public static (string TokenizerJson, string TokenizerConfigJson) Build(GgufFile f, GraniteConfig cfg)
    {
        var model = f.GetString(Gguf.Tokenizer.Model);
        if (model != "gpt2") throw new NotSupportedException($"{f.Path}: metadata '{Gguf.Tokenizer.Model}' is '{model}'; only byte-level BPE ('gpt2') is supported");
        var tokens = f.Require(Gguf.Tokenizer.Tokens).Value as string[] ?? throw new InvalidDataException($"{f.Path}: metadata '{Gguf.Tokenizer.Tokens}' must be an array of strings");
        var typesValue = f.Get(Gguf.Tokenizer.TokenType);
        int[] types = typesValue?.Value switch
        {
            int[] a => a,
            null => Enumerable.Repeat((int)GgufTokenType.Normal, tokens.Length).ToArray(),
            _ => throw new InvalidDataException($"{f.Path}: metadata '{Gguf.Tokenizer.TokenType}' must be an INT32 array"),
        };
        if (types.Length != tokens.Length) throw new InvalidDataException($"{f.Path}: metadata '{Gguf.Tokenizer.TokenType}' has {types.Length} entries, tokenizer.ggml.tokens has {tokens.Length}");
        if (tokens.Length < cfg.VocabSize) throw new InvalidDataException($"{f.Path}: metadata '{Gguf.Tokenizer.Tokens}' has {tokens.Length} tokens, fewer than the {cfg.VocabSize} embedding rows");
        var merges = f.Get(Gguf.Tokenizer.Merges)?.Value as string[] ?? Array.Empty<string>();
        string pre = f.Contains(Gguf.Tokenizer.Pre) ? f.GetString(Gguf.Tokenizer.Pre) : "default";

        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < tokens.Length; i++)
            {
                if (types[i] is not ((int)GgufTokenType.Control or (int)GgufTokenType.UserDefined)) continue;
                w.WriteStartObject();
                w.WriteNumber("id", i);
                w.WriteString("content", tokens[i]);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", types[i] == (int)GgufTokenType.Control);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNull("normalizer");
            w.WritePropertyName("pre_tokenizer");
            switch (pre)
            {
                case Gguf.Tokenizer.PreGpt2:
                    ByteLevel(w, useRegex: true);
                    break;
                case Gguf.Tokenizer.PreDbrx:
                    w.WriteStartObject();
                    w.WriteString("type", "Sequence");
                    w.WriteStartArray("pretokenizers");
                    w.WriteStartObject();
                    w.WriteString("type", "Split");
                    w.WriteStartObject("pattern");
                    w.WriteString("Regex", GgufTokenizerMetadata.Cl100kSplitPattern);
                    w.WriteEndObject();
                    w.WriteString("behavior", "Isolated");
                    w.WriteBoolean("invert", false);
                    w.WriteEndObject();
                    ByteLevel(w, useRegex: false);
                    w.WriteEndArray();
                    w.WriteEndObject();
                    break;
                default:
                    throw new NotSupportedException($"{f.Path}: metadata '{Gguf.Tokenizer.Pre}' is '{pre}'; supported: gpt-2, dbrx");
            }
            w.WritePropertyName("post_processor");
            ByteLevel(w, useRegex: true, trimOffsets: false);
            w.WritePropertyName("decoder");
            ByteLevel(w, useRegex: true);
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteNull("unk_token");
            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", false);
            w.WriteBoolean("byte_fallback", false);
            w.WriteBoolean("ignore_merges", false);
            w.WriteStartObject("vocab");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < tokens.Length; i++)
            {
                if (types[i] == (int)GgufTokenType.Unused) continue;
                if (!seen.Add(tokens[i])) throw new InvalidDataException($"{f.Path}: metadata '{Gguf.Tokenizer.Tokens}' lists '{tokens[i]}' twice (id {i})");
                w.WriteNumber(tokens[i], i);
            }
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var m in merges) w.WriteStringValue(m);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        string tokenizerJson = System.Text.Encoding.UTF8.GetString(ms.ToArray());

        var tc = new Dictionary<string, object?>
        {
            ["tokenizer_class"] = "GPT2Tokenizer",
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = cfg.MaxPositionEmbeddings,
        };
        foreach (var (type, key) in new[] { ("bos", Gguf.Tokenizer.BosId), ("eos", Gguf.Tokenizer.EosId), ("unk", Gguf.Tokenizer.UnkId), ("pad", Gguf.Tokenizer.PadId) })
        {
            if (!f.Contains(key)) continue;
            uint id = f.GetUInt32(key);
            if (id >= tokens.Length) throw new InvalidDataException($"{f.Path}: metadata '{key}' = {id} is outside the {tokens.Length} tokens");
            tc[type + "_token"] = tokens[id];
        }
        foreach (var (type, key) in new[] { ("bos", Gguf.Tokenizer.AddBos), ("eos", Gguf.Tokenizer.AddEos) })
            if (f.Get(key)?.Value is bool b) tc[$"add_{type}_token"] = b;
        if (f.Contains(Gguf.Tokenizer.ChatTemplate)) tc["chat_template"] = f.GetString(Gguf.Tokenizer.ChatTemplate);
        return (tokenizerJson, JsonSerializer.Serialize(tc, new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void ByteLevel(Utf8JsonWriter w, bool useRegex, bool trimOffsets = true)
    {
        w.WriteStartObject();
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", trimOffsets);
        w.WriteBoolean("use_regex", useRegex);
        w.WriteEndObject();
    }
}
