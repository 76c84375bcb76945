using System.Text;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Core.Weights;
using Granite.Core.Weights.Gguf;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

namespace Granite.Fuzz;

/// <summary>The fuzz targets: each takes raw bytes and throws only on a defect.</summary>
internal static class FuzzTargets
{
    public static readonly Dictionary<string, Action<byte[]>> All = new(StringComparer.Ordinal)
    {
        ["safetensors"] = Safetensors,
        ["index"] = Index,
        ["config"] = Config,
        ["tokenizer"] = Tokenizer,
        ["toolcall-stream"] = ToolCallStream,
        ["conversation"] = Conversation,
        ["gguf"] = GgufModel,
    };

    /// <summary>Fuzzing-only settings (a shorter regex match timeout keeps hangs below AFL's per-input limit).</summary>
    public static void ConfigureForFuzzing() => TokenizerJsonReader.RegexMatchTimeout = TimeSpan.FromMilliseconds(200);

    private static readonly string Fixture = Path.Combine(AppContext.BaseDirectory, "TestData", "tiny-h-moe");
    private static readonly Lazy<string> WorkDir = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("granite-fuzz-").FullName;
        // A real shard for index inputs to point at.
        File.Copy(Path.Combine(Fixture, "model.safetensors"), Path.Combine(dir, "model-00001-of-00001.safetensors"));
        return dir;
    });

    private static readonly Lazy<SafetensorsCheckpoint> FixtureCheckpoint = new(() => SafetensorsCheckpoint.Open(Fixture));

    /// <summary>The 8-byte length prefix and JSON header of one safetensors file (data section = the rest).</summary>
    private static void Safetensors(byte[] data)
    {
        try
        {
            using var ms = new MemoryStream(data, writable: false);
            var header = SafetensorsHeader.Read(ms, "fuzz.safetensors");
            foreach (var e in header.Entries)
                if (e.End > data.Length - header.DataStart || e.Begin > e.End) throw new InvalidOperationException("entry outside the data section was accepted");
        }
        catch (InvalidDataException) { }
    }

    /// <summary>
    /// A whole GGUF file (header, metadata, tensor infos, data), through everything a load does before building the
    /// model: validation and mapping, every tensor read (quantized ones dequantized), metadata → config, tensors → the
    /// checkpoint's tensors with the converter's transforms undone, and the tokenizer rebuilt. Errors must be
    /// <see cref="InvalidDataException"/> (or <see cref="NotSupportedException"/> for a valid but unsupported type or
    /// architecture) naming the file; accepted tensors must lie aligned inside the data section and read back with the
    /// shape and element count they declare.
    /// </summary>
    private static void GgufModel(byte[] data)
    {
        string path = Path.Combine(WorkDir.Value, "fuzz.gguf");
        File.Delete(path); // a new inode: a mapping still held by an earlier input never sees this one truncated
        File.WriteAllBytes(path, data);
        try
        {
            using var f = GgufFile.Open(path);
            foreach (var t in f.Tensors)
            {
                if (t.Offset < f.DataStart || t.ByteLength < 0 || t.Offset + t.ByteLength > data.Length || (t.Offset - f.DataStart) % f.Alignment != 0)
                    throw new InvalidOperationException($"tensor '{t.Name}' at [{t.Offset}, +{t.ByteLength}) outside the data section was accepted");
                try
                {
                    using var x = f.GetTensor(t.Name);
                    if (!x.shape.SequenceEqual(t.Shape)) throw new InvalidOperationException($"tensor '{t.Name}' read back as [{string.Join(",", x.shape)}]");
                }
                catch (NotSupportedException e) when (e.Message.Contains(path, StringComparison.Ordinal)) { }
            }
            var cfg = GgufImporter.ReadConfig(f);
            foreach (var (spec, produce) in GgufImporter.Tensors(f, cfg))
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var x = produce();
                if (!x.shape.SequenceEqual(spec.Shape)) throw new InvalidOperationException($"'{spec.Name}' imported as [{string.Join(",", x.shape)}], declared [{string.Join(",", spec.Shape)}]");
            }
            _ = GgufTokenizerImport.Build(f, cfg);
        }
        catch (InvalidDataException e) when (e.Message.Contains(path, StringComparison.Ordinal)) { }
        catch (NotSupportedException e) when (e.Message.Contains(path, StringComparison.Ordinal)) { }
    }

    /// <summary>model.safetensors.index.json next to one real shard.</summary>
    private static void Index(byte[] data)
    {
        string path = Path.Combine(WorkDir.Value, SafetensorsCheckpoint.IndexFileName);
        File.WriteAllBytes(path, data);
        try
        {
            using var ckpt = SafetensorsCheckpoint.Open(path);
            _ = ckpt.TotalDataBytes;
        }
        catch (InvalidDataException) { }
    }

    /// <summary>config.json, then the same preflight as loading against the tiny checkpoint (no weights allocated).</summary>
    private static void Config(byte[] data)
    {
        string path = Path.Combine(WorkDir.Value, "config.json");
        File.WriteAllBytes(path, data);
        try
        {
            var c = GraniteConfig.Load(path);
            _ = c.TotalParameterCount;
            _ = c.DefaultedFields;
            ModelPreflight.Check(c, FixtureCheckpoint.Value, Fixture, TorchSharp.torch.ScalarType.BFloat16);
        }
        catch (InvalidDataException) { }
    }

    /// <summary>tokenizer.json and tokenizer_config.json, separated by a NUL byte; a loaded tokenizer encodes and decodes.</summary>
    private static void Tokenizer(byte[] data)
    {
        int split = Array.IndexOf(data, (byte)0);
        string tok = Path.Combine(WorkDir.Value, "tokenizer.json"), cfg = Path.Combine(WorkDir.Value, "tokenizer_config.json");
        File.WriteAllBytes(tok, split < 0 ? data : data[..split]);
        if (split >= 0) File.WriteAllBytes(cfg, data[(split + 1)..]);
        try
        {
            var t = GraniteTokenizer.FromFiles(tok, split < 0 ? null : cfg);
            var ids = t.Encode("Hello <|start_of_role|> wörld 😀 \ud800 123", allowSpecialTokens: false);
            _ = t.Encode([new PromptSegment("<|end_of_text|>x", true), new PromptSegment("<|end_of_text|>y", false)]);
            _ = t.Decode(ids);
            var d = t.CreateStreamingDetokenizer();
            foreach (int id in ids) _ = d.Append(id);
            _ = d.Flush();
        }
        catch (InvalidDataException) { }
    }

    /// <summary>Any UTF-16 sequence (bytes taken as UTF-16LE code units, so lone surrogates occur), streamed at split
    /// points from the first bytes; the result must equal the whole-text parse and never throw.</summary>
    private static void ToolCallStream(byte[] data)
    {
        if (data.Length < 2) return;
        int seed = data[0] | (data[1] << 8);
        var chars = new char[(data.Length - 2) / 2];
        for (int i = 0; i < chars.Length; i++) chars[i] = (char)(data[2 + 2 * i] | (data[3 + 2 * i] << 8));
        string text = new(chars);
        string whole = Describe(GraniteToolCallParser.Parse(text).Contents);
        var parser = new GraniteToolCallParser();
        var random = new Random(seed);
        var all = new List<AIContent>();
        for (int i = 0; i < text.Length;)
        {
            int n = Math.Min(text.Length - i, random.Next(1, 9));
            all.AddRange(parser.Push(text.Substring(i, n)));
            i += n;
        }

        all.AddRange(parser.Complete());
        string streamed = Describe(all);
        if (streamed != whole) throw new InvalidOperationException($"streamed parse differs from whole parse:\n{streamed}\n---\n{whole}");
        // What the parser returns must render back into the template.
        _ = GraniteChatTemplate.Render([new ChatMessage(ChatRole.Assistant, all)], addGenerationPrompt: false);
    }

    /// <summary>An OpenAI-style conversation file as <c>granite prompt</c> reads it.</summary>
    private static void Conversation(byte[] data)
    {
        string text = Encoding.UTF8.GetString(data);
        try
        {
            _ = GraniteChatTemplate.RenderJson(text);
        }
        catch (ArgumentException) { }
        catch (NotSupportedException) { }
    }

    private static string Describe(IEnumerable<AIContent> contents)
    {
        var sb = new StringBuilder();
        string? pendingText = null;
        foreach (AIContent c in contents)
        {
            if (c is TextContent t) { pendingText = (pendingText ?? "") + t.Text; continue; }
            if (pendingText is not null) { sb.Append("T:").Append(pendingText).Append('\u0001'); pendingText = null; }
            if (c is FunctionCallContent f)
                sb.Append("C:").Append(f.CallId).Append('|').Append(f.Name).Append('|')
                  .Append(f.Arguments is null ? "" : PythonJson.SerializeValue(f.Arguments)).Append('|').Append(f.Exception?.Message).Append('\u0001');
        }

        if (pendingText is not null) sb.Append("T:").Append(pendingText);
        return sb.ToString();
    }
}

