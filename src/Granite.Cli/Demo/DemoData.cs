using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core.Configuration;
using Granite.Core.Tokenization;
using Granite.Core.Training;
using Granite.Extensions.AI.Chat;

namespace Granite.Cli.Demo;

/// <summary>Tokenizer training, model configuration and conversation → training example conversion for the demo model.</summary>
internal static class DemoData
{
    /// <summary>Granite 4.0's 28 added tokens (contents and flags) in their real order, from the embedded fixture tokenizer.</summary>
    public static IReadOnlyList<JsonObject> GraniteAddedTokens()
    {
        var root = JsonNode.Parse(Resource("Granite.Cli.Demo.fixture_tokenizer.json"))!.AsObject();
        return root["added_tokens"]!.AsArray().Select(t =>
        {
            var o = t!.AsObject().DeepClone().AsObject();
            o.Remove("id");
            return o;
        }).ToList();
    }

    private static string Resource(string name)
    {
        using var s = Assembly.GetExecutingAssembly().GetManifestResourceStream(name) ?? throw new InvalidOperationException($"embedded resource {name} is missing");
        using var r = new StreamReader(s, Encoding.UTF8);
        return r.ReadToEnd();
    }

    /// <summary>
    /// Trains the BPE on <paramref name="texts"/> and writes <c>tokenizer.json</c> and <c>tokenizer_config.json</c> (the
    /// real Granite 4.0 chat template and special-token settings, added-token ids renumbered) into <paramref name="dir"/>.
    /// </summary>
    public static void WriteTokenizer(string dir, IEnumerable<string> texts, int merges)
    {
        Directory.CreateDirectory(dir);
        var vocab = BpeTrainer.Train(texts, merges);
        var ids = BpeTrainer.WriteTokenizerJson(Path.Combine(dir, "tokenizer.json"), vocab, GraniteAddedTokens());
        var config = JsonNode.Parse(Resource("Granite.Cli.Demo.tokenizer_config.json"))!.AsObject();
        var decoder = new JsonObject();
        foreach (var (id, entry) in config["added_tokens_decoder"]!.AsObject().ToList())
        {
            string content = entry!["content"]!.GetValue<string>();
            decoder[ids[content].ToString(System.Globalization.CultureInfo.InvariantCulture)] = entry.DeepClone();
        }
        config["added_tokens_decoder"] = decoder;
        config["model_max_length"] = 2048;
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), new UTF8Encoding(false));
    }

    /// <summary>Plain-text pieces of a rendered conversation (added tokens removed), for BPE training.</summary>
    public static IEnumerable<string> TextPieces(RenderedPrompt prompt, IReadOnlyCollection<string> addedTokens)
    {
        foreach (var seg in prompt.Segments)
        {
            if (!seg.IsTemplate) { yield return seg.Text; continue; }
            string rest = seg.Text;
            while (rest.Length > 0)
            {
                int best = -1;
                string? hit = null;
                foreach (var t in addedTokens)
                {
                    int i = rest.IndexOf(t, StringComparison.Ordinal);
                    if (i >= 0 && (best < 0 || i < best)) { best = i; hit = t; }
                }
                if (hit is null) { yield return rest; break; }
                if (best > 0) yield return rest[..best];
                rest = rest[(best + hit.Length)..];
            }
        }
    }

    /// <summary>
    /// The demo model's architecture (Granite 4.0-H layout) for a vocabulary size; <paramref name="heads"/> attention
    /// heads (0: one per 32 hidden units), each of <c>hidden / heads</c> dimensions.
    /// </summary>
    public static GraniteConfig ModelConfig(GraniteTokenizer tokenizer, int hidden = 128, string layers = "mmamma", int heads = 0)
    {
        if (heads <= 0) heads = hidden / 32;
        if (hidden % heads != 0) throw new ArgumentException($"hidden size {hidden} is not a multiple of {heads} attention heads", nameof(heads));
        int vocab = (tokenizer.VocabularySize + 7) / 8 * 8;
        int eos = tokenizer.EosTokenId ?? throw new InvalidDataException("the tokenizer has no eos token");
        int pad = tokenizer.PadTokenId ?? eos;
        var types = new JsonArray(layers.Select(c => (JsonNode)JsonValue.Create(c == 'a' ? "attention" : "mamba")!).ToArray());
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("GraniteMoeHybridForCausalLM"),
            ["model_type"] = "granitemoehybrid",
            ["vocab_size"] = vocab,
            ["hidden_size"] = hidden,
            ["num_hidden_layers"] = layers.Length,
            ["layer_types"] = types,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = heads,
            ["intermediate_size"] = 2 * hidden,
            ["shared_intermediate_size"] = 2 * hidden,
            ["num_local_experts"] = 0,
            ["num_experts_per_tok"] = 0,
            ["max_position_embeddings"] = 2048,
            ["position_embedding_type"] = "nope",
            ["rms_norm_eps"] = 1e-5,
            ["embedding_multiplier"] = 1.0,
            ["residual_multiplier"] = 1.0,
            ["attention_multiplier"] = 1.0 / Math.Sqrt(hidden / heads),
            ["logits_scaling"] = 1.0,
            ["mamba_n_heads"] = 2 * hidden / 32,
            ["mamba_d_head"] = 32,
            ["mamba_d_state"] = 32,
            ["mamba_n_groups"] = 1,
            ["mamba_d_conv"] = 4,
            ["mamba_expand"] = 2,
            ["mamba_chunk_size"] = 128,
            ["mamba_conv_bias"] = true,
            ["mamba_proj_bias"] = false,
            ["attention_bias"] = false,
            ["tie_word_embeddings"] = true,
            ["bos_token_id"] = eos,
            ["eos_token_id"] = eos,
            ["pad_token_id"] = pad,
            ["torch_dtype"] = "float32",
        };
        return GraniteConfig.Parse(o.ToJsonString(), "demo model config");
    }

    /// <summary>
    /// Tokenizes a rendered conversation and marks the supervised tokens: everything an assistant turn produces (tool
    /// calls, answers, its closing end-of-text). The shared prefix is the system block up to its end-of-text.
    /// </summary>
    public static TrainingExample ToExample(GraniteTokenizer tokenizer, RenderedPrompt prompt)
    {
        int sr = Special(tokenizer, GraniteChatTemplate.StartOfRole), er = Special(tokenizer, GraniteChatTemplate.EndOfRole), eot = Special(tokenizer, GraniteChatTemplate.EndOfText);
        int[] ids = tokenizer.Encode(prompt.Segments).ToArray();
        var sup = new bool[ids.Length];
        bool inAssistant = false;
        int prefix = -1;
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] == sr)
            {
                int j = i + 1;
                while (j < ids.Length && ids[j] != er) j++;
                string role = tokenizer.Decode(ids[(i + 1)..j]);
                inAssistant = role == "assistant";
                i = j;
                continue;
            }
            if (inAssistant)
            {
                sup[i] = true;
                if (ids[i] == eot) inAssistant = false;
            }
            else if (ids[i] == eot && prefix < 0) prefix = i + 1;
        }
        return new TrainingExample(ids, sup, Math.Max(0, prefix));
    }

    private static int Special(GraniteTokenizer t, string token) =>
        t.AddedTokens.TryGetValue(token, out int id) ? id : throw new InvalidDataException($"the tokenizer lacks the added token {token}");
}
