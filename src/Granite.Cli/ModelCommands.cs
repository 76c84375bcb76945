using System.CommandLine;
using System.Text.Json;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Extensions.AI.Chat;
using TorchSharp;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    private static Option<bool> JsonFlag(string description) => CliOptions.Flag("--json", description);

    private static Command LogitsCommand()
    {
        var model = CliOptions.Model();
        var ids = CliOptions.Ids("input token ids", required: true);
        var greedy = CliOptions.Int("--greedy", "N", "greedy new tokens to append after the input", 0, min: 0);
        var json = JsonFlag("accepted for symmetry: the output is always JSON");
        var load = new ModelLoadOptions("compute dtype; default f32 whatever the stored dtype (parity mode), bf16 selects the fast path");
        var command = new Command("logits", "parity output: last-position logits, argmax of every input position and N greedy tokens, as JSON") { model, ids, greedy, json };
        load.AddTo(command);
        command.SetAction(r => Logits(ModelDir(r.GetRequiredValue(model)), r.GetRequiredValue(ids), r.GetValue(greedy), load.Read(r, WeightDtypePolicy.Float32), r.InvocationConfiguration.Output));
        return command;
    }

    private static Command GenerateCommand()
    {
        var model = CliOptions.Model();
        var ids = CliOptions.Ids("prompt token ids (give --ids or --prompt)", required: false);
        var prompt = CliOptions.Text("--prompt", "TEXT", "prompt text, rendered as one user turn with the chat template");
        var maxTokens = CliOptions.Int("--max-tokens", "N", "most new tokens", 64, min: 1);
        var temperature = CliOptions.OptionalNumber("--temperature", "T", "sampling temperature (0 or absent: greedy)");
        var topK = CliOptions.OptionalInt("--top-k", "K", "keep the K most likely tokens (0: off)", min: 0);
        var topP = CliOptions.OptionalNumber("--top-p", "P", "nucleus sampling mass in (0, 1]");
        var seed = CliOptions.OptionalInt("--seed", "S", "sampling seed");
        var special = CliOptions.Flag("--special", "keep tokens flagged special in tokenizer.json in the text");
        var json = JsonFlag("print {\"prompt_tokens\",\"tokens\",\"text\",\"finish_reason\"} at the end instead of streaming text");
        var load = new ModelLoadOptions("compute dtype; default: as stored");
        var command = new Command("generate", "stream decoded text as tokens come") { model, ids, prompt, maxTokens, temperature, topK, topP, seed, special, json };
        load.AddTo(command);
        command.Validators.Add(c =>
        {
            if ((c.GetResult(ids) is { Implicit: false }) == (c.GetResult(prompt) is { Implicit: false })) c.AddError("give exactly one of --ids or --prompt");
        });
        command.SetAction((r, ct) =>
        {
            var sampling = new SamplingOptions
            {
                MaxNewTokens = r.GetValue(maxTokens),
                Temperature = (float?)r.GetValue(temperature),
                TopK = r.GetValue(topK),
                TopP = (float?)r.GetValue(topP),
                Seed = r.GetValue(seed),
            };
            // An absent --ids reads as an empty array, not null: ask whether it was given.
            var promptIds = r.GetResult(ids) is { Implicit: false } ? r.GetRequiredValue(ids) : null;
            return Generate(ModelDir(r.GetRequiredValue(model)), promptIds, r.GetValue(prompt), sampling, r.GetValue(special), r.GetValue(json),
                load.Read(r, WeightDtypePolicy.AsStored), r.InvocationConfiguration.Output, ct);
        });
        return command;
    }

    private static Command TokenizeCommand()
    {
        var model = CliOptions.Model();
        var text = CliOptions.Text("--text", "TEXT", "text to encode (untrusted: control-token strings stay plain text)", required: true);
        var special = CliOptions.Flag("--special", "let added tokens in the text become their ids (template semantics)");
        var json = JsonFlag("print {\"ids\":[...]}");
        var command = new Command("tokenize", "encode text to token ids") { model, text, special, json };
        command.SetAction(r => Tokenize(ModelDir(r.GetRequiredValue(model)), r.GetRequiredValue(text), r.GetValue(special), r.GetValue(json), r.InvocationConfiguration.Output));
        return command;
    }

    private static Command DetokenizeCommand()
    {
        var model = CliOptions.Model();
        var ids = CliOptions.Ids("token ids to decode", required: true);
        var json = JsonFlag("print {\"text\":...}");
        var command = new Command("detokenize", "decode token ids to text (nothing skipped)") { model, ids, json };
        command.SetAction(r => Detokenize(ModelDir(r.GetRequiredValue(model)), r.GetRequiredValue(ids), r.GetValue(json), r.InvocationConfiguration.Output));
        return command;
    }

    private static Command PromptCommand()
    {
        var model = CliOptions.Model();
        var conversation = CliOptions.Text("--conversation", "FILE.json", "OpenAI-style conversation {\"messages\":[...],\"tools\":[...]}", required: true);
        var json = JsonFlag("print {\"text\",\"ids\"} (adds the token ids)");
        var command = new Command("prompt", "render a conversation file exactly as the model sees it") { model, conversation, json };
        command.SetAction(r => Prompt(ModelDir(r.GetRequiredValue(model)), r.GetRequiredValue(conversation), r.GetValue(json), r.InvocationConfiguration.Output));
        return command;
    }

    /// <summary><c>granite logits</c>: parity output in float32 by default.</summary>
    private static int Logits(string dir, int[] ids, int greedy, GraniteModelOptions options, TextWriter stdout)
    {
        using var model = GraniteModel.Load(dir, options);
        foreach (var id in ids)
            if ((uint)id >= (uint)model.Config.VocabSize) throw new CliUsageException($"token id {id} is outside the vocabulary (0..{model.Config.VocabSize - 1})");
        if (ids.Length + greedy > model.Config.MaxPositionEmbeddings)
            throw new CliUsageException($"{ids.Length} ids + {greedy} new tokens exceed the context limit {model.Config.MaxPositionEmbeddings}");
        using var state = model.CreateState();
        float[] last;
        long[] argmax;
        using (var scope = torch.NewDisposeScope())
        {
            var all = model.Forward(ids, state, allPositions: true);
            EnsureFinite(all, dir);
            argmax = all.argmax(-1).data<long>().ToArray();
            last = all[-1].to_type(torch.ScalarType.Float32).data<float>().ToArray();
        }
        var generated = new List<int>();
        int next = (int)argmax[^1];
        for (int i = 0; i < greedy; i++)
        {
            generated.Add(next);
            if (i + 1 == greedy) break;
            using var scope = torch.NewDisposeScope();
            var l = model.Forward(new[] { next }, state);
            EnsureFinite(l, dir);
            next = (int)l.reshape(-1).argmax().item<long>();
        }
        stdout.WriteLine(JsonSerializer.Serialize(new { last_logits = last, argmax, greedy = generated }, Json));
        return 0;
    }

    /// <summary>Non-finite logits mean the weights (or a huge activation) overflowed: say so instead of printing NaN.</summary>
    private static void EnsureFinite(torch.Tensor logits, string dir)
    {
        using var finite = logits.isfinite();
        if (finite.all().item<bool>()) return;
        long bad = finite.numel() - finite.sum().item<long>();
        throw new InvalidDataException(
            $"{dir}: the model produced {bad} non-finite logits (NaN or Inf); the weights are probably corrupt (run with --check-weights to find the tensor)");
    }

    /// <summary><c>granite generate</c>: streams decoded text as tokens come.</summary>
    private static async Task<int> Generate(string dir, int[]? ids, string? prompt, SamplingOptions sampling, bool special, bool json,
        GraniteModelOptions options, TextWriter stdout, CancellationToken ct)
    {
        try { sampling.Validate(); } catch (ArgumentException ex) { throw new CliUsageException(ex.Message); }
        using var engine = GraniteEngine.Load(dir, new GraniteEngineOptions { Model = options, SessionCacheBytes = 0 });
        IReadOnlyList<int> promptIds = ids ?? (IReadOnlyList<int>)engine.Tokenizer.Encode(
            GraniteChatTemplate.Render(new[] { new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.User, prompt!) }).Segments);
        var tokens = new List<int>();
        GenerationUpdate? final = null;
        await foreach (var u in engine.GenerateAsync(new GenerationRequest { PromptTokens = promptIds, Sampling = sampling, SkipSpecialTokens = !special }, ct))
        {
            if (u.TokenId is int t) tokens.Add(t);
            if (!json) { stdout.Write(u.Text); stdout.Flush(); }
            if (u.FinishReason is not null) final = u;
        }
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { prompt_tokens = promptIds.Count, tokens, text = engine.Tokenizer.Decode(tokens, skipSpecialTokens: !special), finish_reason = final?.FinishReason?.ToString().ToLowerInvariant() }, Json));
        else
            stdout.WriteLine();
        return 0;
    }

    /// <summary><c>granite tokenize</c>: user text is encoded untrusted unless --trusted.</summary>
    private static int Tokenize(string dir, string text, bool trusted, bool json, TextWriter stdout)
    {
        var tok = GraniteTokenizer.FromDirectory(dir);
        // --special (trusted): added tokens in the text become control ids (template semantics)
        var ids = tok.Encode(text, allowSpecialTokens: trusted);
        stdout.WriteLine(json ? JsonSerializer.Serialize(new { ids }, Json) : string.Join(",", ids));
        return 0;
    }

    private static int Detokenize(string dir, int[] ids, bool json, TextWriter stdout)
    {
        var tok = GraniteTokenizer.FromDirectory(dir);
        var text = tok.Decode(ids);
        stdout.WriteLine(json ? JsonSerializer.Serialize(new { text }, Json) : text);
        return 0;
    }

    /// <summary><c>granite prompt</c>: renders an OpenAI-style conversation file exactly as the model sees it.</summary>
    private static int Prompt(string dir, string file, bool json, TextWriter stdout)
    {
        var tok = GraniteTokenizer.FromDirectory(dir);
        if (!File.Exists(file)) throw new CliUsageException($"conversation file not found: {file}");
        var rendered = GraniteChatTemplate.RenderJson(File.ReadAllText(file));
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { text = rendered.Text, ids = tok.Encode(rendered.Segments) }, Json));
        else
            stdout.Write(rendered.Text);
        return 0;
    }
}
