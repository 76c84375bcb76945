using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Benchmarks.Soak;
using Granite.Core;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

// Memory campaigns of issue #14 (docs/reliability.md, "Memory campaigns"). Run by hand, not a test:
//   long   — one generation of --tokens tokens (default 10,000) with RSS sampled every --every tokens;
//   soak   — --requests requests (default 1,000) through FunctionInvokingChatClient over a GraniteChatClient with the
//            session store, expert cache, batch-state and conversation budgets set, --concurrency at once, RSS sampled
//            every --every requests; asserts RSS ≤ weights + budgets + the fixed overhead measured after warm-up;
//   plot   — an SVG from a CSV written by either.
// Each writes <out>/<name>.csv, <out>/<name>.svg and <out>/<name>.json (summary with the flatness figure, load, flags).
GraniteRuntime.EnsureLoaded();
if (args.Length == 0 || args[0] is not ("long" or "soak" or "plot"))
{
    Console.Error.WriteLine("usage: long [--tokens 10000] [--every 250] [--warmup 1000] [--dtype f32|as-stored] [--out DIR]\n" +
        "       soak [--requests 1000] [--concurrency 8] [--every 20] [--warmup 200] [--session-budget 4M] [--expert-budget 50%] [--state-budget 32M] [--conversations 64] [--answer-tokens 8] [--out DIR]\n" +
        "       plot --csv F --svg F --x COLUMN --y COL[,COL...] [--title T]");
    return 2;
}
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i + 1 < args.Length; i += 2) opts[args[i].TrimStart('-')] = args[i + 1];
string Get(string key, string dflt) => opts.TryGetValue(key, out var v) ? v : dflt;
int GetInt(string key, int dflt) => int.Parse(Get(key, dflt.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
string outDir = Path.GetFullPath(Get("out", "soak-results"));
Directory.CreateDirectory(outDir);
var jsonOptions = new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
string fixture = Path.Combine(AppContext.BaseDirectory, "TestData", "tiny-h-moe");

switch (args[0])
{
    case "plot":
    {
        var table = Csv.Read(opts["csv"]);
        Svg.Write(opts["svg"], Get("title", Path.GetFileNameWithoutExtension(opts["csv"])), table, opts["x"], opts["y"].Split(','), null);
        return 0;
    }
    case "long":
        return await LongGeneration();
    default:
        return await Soak();
}

// ------------------------------------------------------------------ long generation

async Task<int> LongGeneration()
{
    int tokens = GetInt("tokens", 10_000);
    int every = GetInt("every", 250);
    int warmup = GetInt("warmup", 1000);
    // The fixtures' context is 4,096 (config.json max_position_embeddings). tiny-h-moe has no positional tensors
    // (position_embedding_type "nope"), so a copy with a longer max_position_embeddings is the same model with room for
    // the whole generation.
    int context = (int)Math.Min(1L << 20, (long)Math.Ceiling((tokens + 512) / 4096.0) * 4096);
    string dir = Path.Combine(outDir, "model-long");
    Directory.CreateDirectory(dir);
    foreach (var f in Directory.GetFiles(fixture)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
    var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
    config["max_position_embeddings"] = context;
    File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(jsonOptions));

    var dtype = Get("dtype", "f32") == "as-stored" ? WeightDtypePolicy.AsStored : WeightDtypePolicy.Float32;
    using var engine = GraniteEngine.Load(dir, new GraniteEngineOptions { Model = new GraniteModelOptions { WeightDtype = dtype }, SessionCacheBytes = 0 });
    var prompt = engine.Tokenizer.Encode(new[] { new PromptSegment("<|start_of_role|>user<|end_of_role|>Write a very long story.<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>", true) });
    // Greedy, and a stop id outside the vocabulary: no token ends the generation, it runs to exactly `tokens`.
    GenerationRequest Request(int n) => new()
    {
        PromptTokens = prompt,
        Sampling = new SamplingOptions { MaxNewTokens = n, StopTokenIds = new[] { engine.Config.VocabSize } },
        UseSessionCache = false,
    };
    await foreach (var _ in engine.GenerateAsync(Request(64))) { } // JIT and allocator warm-up

    int element = engine.Model.WeightDtype == TorchSharp.torch.ScalarType.Float32 ? 4 : 2;
    var rows = new List<Dictionary<string, double>>();
    var clock = Stopwatch.StartNew();
    void Record(int generated)
    {
        var s = MemorySample.Take();
        rows.Add(new Dictionary<string, double>
        {
            ["tokens"] = generated,
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3),
            ["rss_mib"] = s.RssMiB,
            ["anon_mib"] = s.AnonMiB,
            ["file_mib"] = s.FileMiB,
            ["managed_mib"] = s.ManagedMiB,
            // Mamba state + KV cache at the capacity its geometric growth has reached (what the sequence may hold) ...
            ["state_mib"] = Math.Round(engine.EstimateStateBytes(prompt.Count + generated) / 1048576.0, 3),
            // ... and what it has written (pages touched): Mamba state + KV bytes of the tokens so far.
            ["state_used_mib"] = Math.Round((engine.Config.MambaStateBytesPerSequence(element, 4) + engine.Config.KvBytesPerToken(element) * (prompt.Count + generated)) / 1048576.0, 3),
            ["load1"] = s.Load1,
        });
    }
    Record(0);
    int count = 0;
    await foreach (var u in engine.GenerateAsync(Request(tokens)))
    {
        if (u.TokenId is null) continue;
        count++;
        if (count % every == 0 || u.FinishReason is not null) Record(count);
    }
    if (count != tokens) throw new InvalidOperationException($"generated {count} tokens, expected {tokens}");
    double seconds = clock.Elapsed.TotalSeconds;

    var after = rows.Where(r => r["tokens"] >= warmup).ToList();
    double slopeRss = Stats.Slope(after, "tokens", "rss_mib") * 1000;
    double slopeNet = Stats.Slope(after, "tokens", r => r["rss_mib"] - r["state_used_mib"]) * 1000;
    double slopeAnon = Stats.Slope(after, "tokens", r => r["anon_mib"] - r["state_used_mib"]) * 1000;
    // The same figure with later ends of warm-up, to show where growth stops.
    var byWarmup = new[] { 1000, 2000, 3000, 5000 }.Where(w => w < tokens)
        .ToDictionary(w => $"from_{w}", w => Math.Round(Stats.Slope(rows.Where(r => r["tokens"] >= w).ToList(), "tokens", r => r["rss_mib"] - r["state_used_mib"]) * 1000, 4));
    var summary = new Dictionary<string, object?>
    {
        ["command"] = "long " + string.Join(' ', args.Skip(1)),
        ["date_utc"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
        ["machine"] = Machine.Describe(),
        ["model"] = $"tiny-h-moe with max_position_embeddings {context}, {dtype}",
        ["tokens"] = tokens,
        ["seconds"] = Math.Round(seconds, 1),
        ["tokens_per_second"] = Math.Round(tokens / seconds, 1),
        ["warmup_tokens"] = warmup,
        ["rss_mib_first"] = rows[0]["rss_mib"],
        ["rss_mib_after_warmup"] = after.First()["rss_mib"],
        ["rss_mib_last"] = rows[^1]["rss_mib"],
        ["rss_mib_max"] = rows.Max(r => r["rss_mib"]),
        ["state_mib_last"] = rows[^1]["state_mib"],
        ["rss_slope_mib_per_1000_tokens"] = Math.Round(slopeRss, 4),
        ["kv_mib_per_1000_tokens"] = Math.Round(engine.Config.KvBytesPerToken(element) * 1000 / 1048576.0, 4),
        ["rss_minus_state_slope_mib_per_1000_tokens"] = Math.Round(slopeNet, 4),
        ["anon_minus_state_slope_mib_per_1000_tokens"] = Math.Round(slopeAnon, 4),
        ["rss_minus_state_slope_by_warmup"] = byWarmup,
        ["load_average_min_max"] = new[] { rows.Min(r => r["load1"]), rows.Max(r => r["load1"]) },
    };
    return Finish("long-generation", rows, "tokens", new[] { "rss_mib", "anon_mib", "state_used_mib" }, summary, null, $"10k generation: RSS over tokens ({Machine.Short()})");
}

// ------------------------------------------------------------------ soak

async Task<int> Soak()
{
    int requests = GetInt("requests", 1000);
    int concurrency = GetInt("concurrency", 8);
    int every = GetInt("every", 20);
    int warmup = GetInt("warmup", 200);
    long sessionBudget = Bytes.Parse(Get("session-budget", "4M"));
    long stateBudget = Bytes.Parse(Get("state-budget", "32M"));
    string expertBudget = Get("expert-budget", "50%");
    int maxConversations = GetInt("conversations", 64);
    string model = Get("model", fixture);
    var options = new GraniteChatClientOptions
    {
        ModelPath = model,
        WeightDtype = WeightDtypePolicy.Float32, // converted weights: the expert cache then bounds what is resident
        ExpertBudget = expertBudget,
        SessionCacheBytes = sessionBudget,
        MaxBatchStateBytes = stateBudget,
        MaxBatchSize = Math.Max(1, concurrency),
        StoreConversations = true,
        MaxStoredConversations = maxConversations,
    };
    using var granite = new GraniteChatClient(options);
    int answerTokens = GetInt("answer-tokens", 8);
    // The answer after tool results is capped (a turn's options are shared by FunctionInvokingChatClient's rounds, and
    // the forced-call budget would otherwise let it run long).
    using var client = new ChatClientBuilder(granite)
        .UseFunctionInvocation(configure: f => f.MaximumIterationsPerRequest = 3)
        .Use(async (messages, chatOptions, next, ct) =>
        {
            var list = messages as IList<ChatMessage> ?? messages.ToList();
            if (chatOptions is not null && list.Count > 0 && list[^1].Role == ChatRole.Tool)
            {
                chatOptions = chatOptions.Clone();
                chatOptions.MaxOutputTokens = answerTokens;
            }
            await next(list, chatOptions, ct);
        })
        .Build();
    var engine = granite.Engine;
    var experts = engine.Model.Experts;
    var weather = AIFunctionFactory.Create((string city, int days) => $"{city}: {days} days of sun", "get_weather", "Gets the weather forecast for a city");
    var light = AIFunctionFactory.Create((bool on) => on ? "light on" : "light off", "set_light", "Switches the light");

    // Weights: every parameter at its in-memory dtype plus the checkpoint files (mapped; the expert cache reads them) —
    // an upper bound of what the model itself keeps resident.
    long parameterBytes = engine.Model.LoadReport.ParameterCount * (engine.Model.WeightDtype == TorchSharp.torch.ScalarType.Float32 ? 4 : 2);
    long fileBytes = Directory.GetFiles(engine.ModelDirectory!, "*.safetensors").Sum(f => new FileInfo(f).Length);
    long expertBudgetBytes = experts?.Plan.MaxResidentBytes ?? 0;

    int issued = 0, done = 0, toolTurns = 0, failures = 0;
    var rng = new Random(1402);
    object gate = new();
    var rows = new List<Dictionary<string, double>>();
    var violations = new List<string>();
    var clock = Stopwatch.StartNew();
    double overheadMiB = double.NaN, boundMiB = double.NaN;
    long firstAfterWarmup = 0;

    // A worker runs conversations of 1–5 turns; a turn is one request: a forced tool call (the random-weights fixture
    // cannot decide to call a tool), a required call generated under constrained decoding, or plain text.
    async Task Worker(int w)
    {
        while (true)
        {
            int turns;
            int seed;
            lock (gate) { turns = 1 + rng.Next(5); seed = rng.Next(); }
            var local = new Random(seed);
            string? conversationId = null;
            for (int t = 0; t < turns; t++)
            {
                int n = Interlocked.Increment(ref issued);
                if (n > requests) return;
                var chat = new ChatOptions { ConversationId = conversationId, Tools = [weather, light], MaxOutputTokens = answerTokens };
                int kind = local.Next(3);
                if (kind == 0)
                {
                    string call = $"<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"C{local.Next(1000)}\", \"days\": {1 + local.Next(7)}}}}}\n</tool_call><|end_of_text|>";
                    chat.MaxOutputTokens = 48;
                    chat.AdditionalProperties = new() { [GraniteChatClient.ForcedPrefixKey] = call };
                }
                else if (kind == 1)
                {
                    chat.ToolMode = ChatToolMode.RequireSpecific("set_light");
                    chat.AllowMultipleToolCalls = false;
                    chat.MaxOutputTokens = 32;
                }
                var message = new ChatMessage(ChatRole.User, $"Request {n} from worker {w}, turn {t}: {new string('x', local.Next(1, 200))}");
                try
                {
                    List<ChatMessage> send = conversationId is null ? [new ChatMessage(ChatRole.System, $"System {local.Next(4)}."), message] : [message];
                    var response = await client.GetResponseAsync(send, chat);
                    conversationId = response.ConversationId;
                    if (response.Messages.Any(m => m.Contents.OfType<FunctionResultContent>().Any())) Interlocked.Increment(ref toolTurns);
                }
                catch (Exception ex)
                {
                    Interlocked.Increment(ref failures);
                    Console.Error.WriteLine($"request {n} failed: {ex.GetType().Name}: {ex.Message}");
                    conversationId = null;
                }
                int d = Interlocked.Increment(ref done);
                if (d == warmup) MeasureOverhead();
                if (d % every == 0 || d == requests) Record(d);
            }
        }
    }

    void MeasureOverhead()
    {
        // Fixed overhead = RSS after the warm-up minus what the budgets account for right now (weights, resident experts,
        // stored snapshots; the active requests' states are bounded by the state budget, counted separately).
        lock (gate)
        {
            var s = MemorySample.Take(collect: true);
            double accounted = (parameterBytes + fileBytes + (experts?.ResidentBytes ?? 0) + engine.Sessions.StoredBytes) / 1048576.0;
            overheadMiB = s.RssMiB - accounted;
            boundMiB = (parameterBytes + fileBytes + expertBudgetBytes + sessionBudget + stateBudget) / 1048576.0 + overheadMiB;
            firstAfterWarmup = warmup;
            Console.WriteLine($"after {warmup} warm-up requests: RSS {s.RssMiB:F1} MiB, accounted {accounted:F1} MiB, fixed overhead {overheadMiB:F1} MiB, bound {boundMiB:F1} MiB");
        }
    }

    void Record(int d)
    {
        lock (gate)
        {
            var s = MemorySample.Take();
            long stored = engine.Sessions.StoredBytes;
            long resident = experts?.ResidentBytes ?? 0;
            var row = new Dictionary<string, double>
            {
                ["requests"] = d,
                ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 2),
                ["rss_mib"] = s.RssMiB,
                ["anon_mib"] = s.AnonMiB,
                ["file_mib"] = s.FileMiB,
                ["managed_mib"] = s.ManagedMiB,
                ["sessions_mib"] = Math.Round(stored / 1048576.0, 3),
                ["sessions_count"] = engine.Sessions.Count,
                ["experts_mib"] = Math.Round(resident / 1048576.0, 3),
                ["conversations"] = granite.StoredConversationCount,
                ["bound_mib"] = double.IsNaN(boundMiB) ? 0 : Math.Round(boundMiB, 1),
                ["load1"] = s.Load1,
            };
            rows.Add(row);
            if (stored > sessionBudget) violations.Add($"request {d}: session store holds {stored} bytes > budget {sessionBudget}");
            if (experts is not null && resident > expertBudgetBytes) violations.Add($"request {d}: experts resident {resident} bytes > budget {expertBudgetBytes}");
            if (!double.IsNaN(boundMiB) && d > warmup && s.RssMiB > boundMiB) violations.Add($"request {d}: RSS {s.RssMiB:F1} MiB > bound {boundMiB:F1} MiB");
            if (engine.Sessions.CheckConsistency() is { Count: > 0 } problems) violations.Add($"request {d}: session store inconsistent: {problems[0]}");
            Console.WriteLine($"{d,5} requests  {clock.Elapsed.TotalSeconds,7:F1} s  RSS {s.RssMiB,7:F1} MiB  sessions {stored / 1048576.0,6:F2} MiB ({engine.Sessions.Count})  experts {resident / 1048576.0:F2} MiB  load {s.Load1:F1}");
        }
    }

    Record(0);
    await Task.WhenAll(Enumerable.Range(0, Math.Max(1, concurrency)).Select(w => Task.Run(() => Worker(w))));
    double seconds = clock.Elapsed.TotalSeconds;

    var after = rows.Where(r => r["requests"] > firstAfterWarmup && firstAfterWarmup > 0).ToList();
    double slope = after.Count >= 2 ? Stats.Slope(after, "requests", "rss_mib") * 100 : double.NaN;
    double slopeAnon = after.Count >= 2 ? Stats.Slope(after, "requests", "anon_mib") * 100 : double.NaN;
    double slopeManaged = after.Count >= 2 ? Stats.Slope(after, "requests", "managed_mib") * 100 : double.NaN;
    if (failures > 0) violations.Add($"{failures} requests failed");
    var summary = new Dictionary<string, object?>
    {
        ["command"] = "soak " + string.Join(' ', args.Skip(1)),
        ["date_utc"] = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture),
        ["machine"] = Machine.Describe(),
        ["model"] = Path.GetFileName(Path.TrimEndingDirectorySeparator(model)),
        ["requests"] = requests,
        ["concurrency"] = concurrency,
        ["tool_turns"] = toolTurns,
        ["seconds"] = Math.Round(seconds, 1),
        ["weights_mib"] = Math.Round((parameterBytes + fileBytes) / 1048576.0, 2),
        ["session_budget_mib"] = Math.Round(sessionBudget / 1048576.0, 2),
        ["expert_budget_mib"] = Math.Round(expertBudgetBytes / 1048576.0, 3),
        ["state_budget_mib"] = Math.Round(stateBudget / 1048576.0, 2),
        ["fixed_overhead_mib"] = Math.Round(overheadMiB, 1),
        ["bound_mib"] = Math.Round(boundMiB, 1),
        ["rss_mib_max_after_warmup"] = after.Count > 0 ? after.Max(r => r["rss_mib"]) : double.NaN,
        ["rss_mib_first_after_warmup"] = after.Count > 0 ? after[0]["rss_mib"] : double.NaN,
        ["rss_mib_last"] = rows[^1]["rss_mib"],
        ["rss_slope_mib_per_100_requests"] = Math.Round(slope, 4),
        ["anon_slope_mib_per_100_requests"] = Math.Round(slopeAnon, 4),
        ["managed_slope_mib_per_100_requests"] = Math.Round(slopeManaged, 4),
        ["session_hits"] = engine.Sessions.Hits,
        ["session_misses"] = engine.Sessions.Misses,
        ["session_evictions"] = engine.Sessions.Evictions,
        ["expert_misses"] = experts?.Layers.Sum(l => l.Misses) ?? 0,
        ["expert_evictions"] = experts?.Layers.Sum(l => l.Evictions) ?? 0,
        ["load_average_min_max"] = new[] { rows.Min(r => r["load1"]), rows.Max(r => r["load1"]) },
        ["violations"] = violations,
    };
    return Finish("soak", rows, "requests", new[] { "rss_mib", "anon_mib", "bound_mib" }, summary, violations, $"1,000-request soak: RSS over requests ({Machine.Short()})");
}

int Finish(string name, List<Dictionary<string, double>> rows, string x, string[] ys, Dictionary<string, object?> summary, List<string>? violations, string title)
{
    string csv = Path.Combine(outDir, name + ".csv");
    Csv.Write(csv, rows);
    Svg.Write(Path.Combine(outDir, name + ".svg"), title, Csv.Read(csv), x, ys.Where(y => rows.Any(r => r[y] > 0)).ToArray(), summary);
    File.WriteAllText(Path.Combine(outDir, name + ".json"), JsonSerializer.Serialize(summary, jsonOptions));
    Console.WriteLine(JsonSerializer.Serialize(summary, jsonOptions));
    Console.WriteLine($"wrote {csv}, {name}.svg, {name}.json in {outDir}");
    if (violations is { Count: > 0 })
    {
        Console.Error.WriteLine($"FAILED: {violations.Count} violations; first: {violations[0]}");
        return 1;
    }
    return 0;
}
