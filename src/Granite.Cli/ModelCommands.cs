using System.Text.Json;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Extensions.AI.Chat;
using TorchSharp;

namespace Granite.Cli;

internal static partial class GraniteCli
{
    static partial void RunMore(string command, IEnumerable<string> args, TextWriter stdout, TextWriter stderr, CancellationToken ct, ref Task<int>? result)
    {
        result = command switch
        {
            "logits" => Task.FromResult(Logits(new CliArgs(args, new HashSet<string> { "json", "check-weights" }), stdout)),
            "generate" => Generate(new CliArgs(args, new HashSet<string> { "json", "check-weights", "special" }), stdout, ct),
            "tokenize" => Task.FromResult(Tokenize(new CliArgs(args, new HashSet<string> { "json", "special" }), stdout)),
            "detokenize" => Task.FromResult(Detokenize(new CliArgs(args, new HashSet<string> { "json" }), stdout)),
            "prompt" => Task.FromResult(Prompt(new CliArgs(args, new HashSet<string> { "json" }), stdout)),
            "bench" when args.Contains("--tokenizer") => Task.FromResult(BenchTokenizer(new CliArgs(args, new HashSet<string> { "json", "tokenizer" }), stdout)),
            "bench" => Task.FromResult(Bench(new CliArgs(args, new HashSet<string> { "json", "check-weights", "profile" }), stdout)),
            "export-gguf" => Task.FromResult(ExportGguf(new CliArgs(args, new HashSet<string> { "json" }), stdout)),
            "chat" => Chat(new CliArgs(args, new HashSet<string> { "json", "no-reuse", "store-conversations", "check-weights" }), stdout, ct),
            "train-demo" => Demo.DemoCommands.TrainAsync(new CliArgs(args, new HashSet<string> { "json" }), stdout, stderr, ct),
            "eval-demo" => Demo.DemoCommands.EvalAsync(new CliArgs(args, new HashSet<string> { "json" }), stdout, stderr, ct),
            _ => null,
        };
    }

    private static GraniteModelOptions ModelOptions(CliArgs a, WeightDtypePolicy dflt)
    {
        var dtype = a.Get("dtype");
        var policy = dtype switch
        {
            null => dflt,
            "f32" or "float32" => WeightDtypePolicy.Float32,
            "bf16" or "bfloat16" or "stored" => WeightDtypePolicy.AsStored,
            _ => throw new CliUsageException($"option --dtype must be f32 or bf16 (got '{dtype}')"),
        };
        int threads = a.Int("threads", 1) ?? 0;
        if (threads > GraniteModelOptions.MaxThreads)
            throw new CliUsageException($"option --threads must be at most {GraniteModelOptions.MaxThreads} on this machine ({Environment.ProcessorCount} CPUs; got {threads})");
        return new GraniteModelOptions { WeightDtype = policy, Threads = threads, ExpertOffload = ExpertBudget(a), CheckFiniteWeights = a.Flag("check-weights") };
    }

    /// <summary><c>--expert-budget off|BYTES|PERCENT%</c> (absent = off).</summary>
    internal static Granite.Core.Experts.ExpertOffloadOptions ExpertBudget(CliArgs a)
    {
        var s = a.Get("expert-budget");
        if (s is null) return Granite.Core.Experts.ExpertOffloadOptions.Off;
        try { return Granite.Core.Experts.ExpertOffloadOptions.Parse(s); }
        catch (FormatException ex) { throw new CliUsageException("option --" + ex.Message.Replace("expert budget", "expert-budget", StringComparison.Ordinal)); }
    }

    /// <summary><c>granite logits</c>: parity output in float32 by default.</summary>
    private static int Logits(CliArgs a, TextWriter stdout)
    {
        var dir = ModelDir(a);
        var ids = a.Ids("ids") ?? throw new CliUsageException("option --ids is required");
        int greedy = a.Int("greedy", 0) ?? 0;
        a.Flag("json"); // the output is always JSON
        var options = ModelOptions(a, WeightDtypePolicy.Float32);
        a.EnsureAllUsed();
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
    private static async Task<int> Generate(CliArgs a, TextWriter stdout, CancellationToken ct)
    {
        var dir = ModelDir(a);
        var ids = a.Ids("ids");
        var prompt = a.Get("prompt");
        if ((ids is null) == (prompt is null)) throw new CliUsageException("give exactly one of --ids or --prompt");
        var sampling = new SamplingOptions
        {
            MaxNewTokens = a.Int("max-tokens", 1) ?? 64,
            Temperature = (float?)a.Double("temperature"),
            TopK = a.Int("top-k", 0),
            TopP = (float?)a.Double("top-p"),
            Seed = a.Int("seed"),
        };
        bool json = a.Flag("json");
        bool special = a.Flag("special");
        var options = ModelOptions(a, WeightDtypePolicy.AsStored);
        a.EnsureAllUsed();
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

    private static GraniteTokenizer LoadTokenizer(CliArgs a) => GraniteTokenizer.FromDirectory(ModelDir(a));

    /// <summary><c>granite tokenize</c>: user text is encoded untrusted unless --trusted.</summary>
    private static int Tokenize(CliArgs a, TextWriter stdout)
    {
        var tok = LoadTokenizer(a);
        var text = a.Require("text");
        bool json = a.Flag("json");
        bool trusted = a.Flag("special"); // --special: added tokens in the text become control ids (template semantics)
        a.EnsureAllUsed();
        var ids = tok.Encode(text, allowSpecialTokens: trusted);
        stdout.WriteLine(json ? JsonSerializer.Serialize(new { ids }, Json) : string.Join(",", ids));
        return 0;
    }

    private static int Detokenize(CliArgs a, TextWriter stdout)
    {
        var tok = LoadTokenizer(a);
        var ids = a.Ids("ids") ?? throw new CliUsageException("option --ids is required");
        bool json = a.Flag("json");
        a.EnsureAllUsed();
        var text = tok.Decode(ids);
        stdout.WriteLine(json ? JsonSerializer.Serialize(new { text }, Json) : text);
        return 0;
    }

    /// <summary><c>granite prompt</c>: renders an OpenAI-style conversation file exactly as the model sees it.</summary>
    private static int Prompt(CliArgs a, TextWriter stdout)
    {
        var tok = LoadTokenizer(a);
        var file = a.Require("conversation");
        bool json = a.Flag("json");
        a.EnsureAllUsed();
        if (!File.Exists(file)) throw new CliUsageException($"conversation file not found: {file}");
        var rendered = GraniteChatTemplate.RenderJson(File.ReadAllText(file));
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { text = rendered.Text, ids = tok.Encode(rendered.Segments) }, Json));
        else
            stdout.Write(rendered.Text);
        return 0;
    }
}
