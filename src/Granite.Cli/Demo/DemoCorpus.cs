using System.Globalization;
using System.Text.Json;
using Granite.Demo;
using Microsoft.Extensions.AI;

namespace Granite.Cli.Demo;

/// <summary>Which part of the template/value space a conversation is drawn from.</summary>
internal enum DemoSplit
{
    /// <summary>Training templates and training values.</summary>
    Train,

    /// <summary>Training templates, held-out values.</summary>
    SeenTemplateUnseenValue,

    /// <summary>Held-out templates and held-out values.</summary>
    UnseenTemplate,
}

/// <summary>A tool call a turn expects: the SK function name and the arguments as JSON values.</summary>
internal sealed record ExpectedCall(string Name, IReadOnlyDictionary<string, JsonElement> Arguments)
{
    /// <summary>Arguments as the M.E.AI dictionary FunctionCallContent carries.</summary>
    public Dictionary<string, object?> ArgumentObjects() => Arguments.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
}

/// <summary>One user turn: the question, the calls it needs (0–2), their real results, and the final answer.</summary>
internal sealed record DemoTurn(string Domain, string User, IReadOnlyList<ExpectedCall> Calls, IReadOnlyList<string> Results, string Answer);

/// <summary>A generated conversation (one or two turns) and the split it belongs to.</summary>
internal sealed record DemoConversation(string Kind, DemoSplit Split, IReadOnlyList<DemoTurn> Turns)
{
    /// <summary>The M.E.AI messages: system, then per turn user → [assistant calls → tool results] → assistant answer.</summary>
    public List<ChatMessage> Messages(int turns = int.MaxValue)
    {
        var list = new List<ChatMessage> { new(ChatRole.System, DemoAgent.SystemPrompt) };
        int id = 0;
        foreach (var t in Turns.Take(turns))
        {
            list.AddRange(TurnMessages(t, ref id, includeAnswer: true));
        }
        return list;
    }

    internal static IEnumerable<ChatMessage> TurnMessages(DemoTurn t, ref int id, bool includeAnswer)
    {
        var messages = new List<ChatMessage> { new(ChatRole.User, t.User) };
        if (t.Calls.Count > 0)
        {
            var ids = new List<string>();
            var calls = new List<AIContent>();
            foreach (var c in t.Calls)
            {
                string callId = "call_" + (id++).ToString(CultureInfo.InvariantCulture);
                ids.Add(callId);
                calls.Add(new FunctionCallContent(callId, c.Name, c.ArgumentObjects()));
            }
            messages.Add(new ChatMessage(ChatRole.Assistant, calls));
            messages.Add(new ChatMessage(ChatRole.Tool, t.Results.Select((r, i) => (AIContent)new FunctionResultContent(ids[i], r)).ToList()));
        }
        if (includeAnswer) messages.Add(new ChatMessage(ChatRole.Assistant, t.Answer));
        return messages;
    }
}

/// <summary>
/// Generates the demo tool-calling corpus: five domains (time, units, arithmetic, weather, files), many paraphrased
/// request templates and large value pools, 20% of the templates and 20% of the values held out for evaluation.
/// Tool results come from running the real plugin code (<see cref="DemoTools"/>). Deterministic for a seed.
/// </summary>
internal sealed class DemoCorpus
{
    private readonly DemoTools _tools;

    public DemoCorpus(DemoTools tools) => _tools = tools;

    private sealed record Template(string Domain, string Function, string Question, string Answer);

    // {x} placeholders: number/city/expression/pattern; {r} the tool result. Every 5th template of a function is held out.
    private static readonly Template[] Templates = Build();

    private static Template[] Build()
    {
        var t = new List<Template>();
        void Add(string domain, string fn, string answer, params string[] questions)
        {
            foreach (var q in questions) t.Add(new Template(domain, fn, q, answer));
        }
        Add("time", "Time_GetUtcTime", "It is {r}.",
            "What time is it in UTC?", "What is the current UTC time?", "Tell me the time in UTC.", "What's the UTC time right now?",
            "Could you give me the current time in UTC?", "UTC time please.", "What is the date and time in UTC?", "I need the current UTC time.",
            "Do you know what time it is in UTC?", "What's the time, in UTC?");
        Add("time", "Time_GetTimeInCity", "It is {r}.",
            "What time is it in {x}?", "What is the local time in {x}?", "Tell me the current time in {x}.", "What's the time in {x} right now?",
            "Could you check the time in {x}?", "I need the local time in {x}.", "Current time in {x}?", "Do you know what time it is in {x}?",
            "What time is it now in {x}?", "How late is it in {x}?");
        Add("units", "Units_MilesToKilometres", "{x} miles is {r}.",
            "How many kilometres are {x} miles?", "Convert {x} miles to kilometres.", "What is {x} miles in km?", "How far is {x} miles in kilometres?",
            "Please convert {x} miles into km.", "{x} miles in kilometres?", "I ran {x} miles. How many km is that?", "What's {x} mi in kilometres?",
            "Can you turn {x} miles into kilometres?", "How many km is {x} miles?");
        Add("units", "Units_CelsiusToFahrenheit", "{x} degrees Celsius is {r}.",
            "What is {x} degrees Celsius in Fahrenheit?", "Convert {x} C to Fahrenheit.", "How much is {x} degrees Celsius in Fahrenheit?",
            "It is {x} degrees Celsius here. What is that in Fahrenheit?", "Please convert {x} Celsius to Fahrenheit.", "{x} C in F?",
            "What's {x} degrees C in Fahrenheit?", "Can you convert {x} degrees Celsius into Fahrenheit?", "Fahrenheit for {x} degrees Celsius?",
            "How hot is {x} Celsius in Fahrenheit?");
        Add("units", "Units_KilogramsToPounds", "{x} kg is {r}.",
            "How many pounds are {x} kg?", "Convert {x} kilograms to pounds.", "What is {x} kg in pounds?", "My bag weighs {x} kg. How many pounds is that?",
            "Please convert {x} kilograms into pounds.", "{x} kg in lb?", "What's {x} kilograms in pounds?", "Can you turn {x} kg into pounds?",
            "How heavy is {x} kg in pounds?", "Pounds for {x} kilograms?");
        Add("math", "Math_Calculate", "The result is {r}.",
            "What is {x}?", "Calculate {x}.", "How much is {x}?", "Please compute {x}.", "What's {x}?", "Can you work out {x}?",
            "Evaluate {x}.", "I need the value of {x}.", "Compute {x} for me.", "What do you get for {x}?");
        Add("weather", "Weather_GetWeather", "The weather in {x}: {r}.",
            "What is the weather in {x}?", "How is the weather in {x}?", "What's the weather like in {x} today?", "Is it sunny in {x}?",
            "Tell me the weather in {x}.", "Weather in {x}?", "Could you check the weather in {x}?", "What's it like outside in {x}?",
            "Do I need an umbrella in {x}?", "How warm is it in {x}?");
        Add("files", "Files_FindFiles", "Files matching {x}: {r}.",
            "Find the files matching {x}.", "Which files match {x}?", "List the files that match {x}.", "Search for {x} files.",
            "Are there any files matching {x}?", "Show me files like {x}.", "Look for files named {x}.", "Find {x}.",
            "Can you find files matching {x}?", "Which files fit the pattern {x}?");
        return t.ToArray();
    }

    private static readonly (string User, string Answer)[] SmallTalk =
    {
        ("Hello!", "Hello! How can I help you today?"),
        ("Hi there.", "Hi! What can I do for you?"),
        ("Thanks a lot!", "You're welcome!"),
        ("Good morning.", "Good morning! How can I help?"),
        ("Who are you?", "I am an assistant that can tell the time, convert units, calculate, check the weather and find files."),
        ("What can you do?", "I can tell the time, convert units, calculate, check the weather and find files."),
        ("Tell me a joke.", "I only help with times, unit conversions, arithmetic, weather and file searches."),
        ("What is the capital of France?", "I only help with times, unit conversions, arithmetic, weather and file searches."),
        ("Write me a poem about the sea.", "I only help with times, unit conversions, arithmetic, weather and file searches."),
        ("How are you?", "I am fine, thank you. How can I help?"),
        ("Goodbye.", "Goodbye!"),
        ("Thank you, that is all.", "You're welcome. Goodbye!"),
        ("Can you book a flight for me?", "I cannot book flights. I only help with times, unit conversions, arithmetic, weather and file searches."),
        ("Who won the last football world cup?", "I only help with times, unit conversions, arithmetic, weather and file searches."),
        ("Nice to meet you.", "Nice to meet you too! How can I help?"),
    };

    private static readonly string[] Connectors = { "{0} Also, {1}", "{0} And {1}", "Two questions. {0} {1}", "{0} Then tell me: {1}", "{0} Plus, {1}" };

    private static readonly string[] Extensions = { "json", "cs", "md", "txt", "dll", "csproj", "safetensors", "log", "xml", "yaml", "py", "sh", "toml", "ini", "csv" };

    private static readonly string[] Stems = { "config", "model", "tokenizer", "Program", "Demo", "Granite", "README", "notes", "test", "data", "report", "build", "app", "index", "main", "setup", "log", "cache", "plugin", "sample" };

    /// <summary>Share of training city questions about a made-up place instead of a table city.</summary>
    internal const double MadeUpCityShare = 0.3;

    /// <summary>Whether template <paramref name="index"/> (within its function's list) is held out.</summary>
    private static bool HeldOutTemplate(int index) => index % 5 == 4;

    /// <summary>Stable 20% hold-out of values, by a hash of their text.</summary>
    internal static bool HeldOutValue(string value)
    {
        uint h = 2166136261;
        foreach (char c in value.ToLowerInvariant()) h = (h ^ c) * 16777619;
        return h % 5 == 0;
    }

    /// <summary>
    /// A seed for <see cref="Random"/> from the parts, the same in every process (SplitMix64 steps; unlike
    /// <see cref="HashCode"/>, which is randomised per process).
    /// </summary>
    internal static int StableSeed(params long[] parts)
    {
        ulong h = 0x9E3779B97F4A7C15UL;
        foreach (long p in parts)
        {
            h ^= unchecked((ulong)p);
            h += 0x9E3779B97F4A7C15UL;
            h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
            h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
            h ^= h >> 31;
        }
        return (int)(h & 0x7FFFFFFF);
    }

    /// <summary>Generates conversation <paramref name="index"/> of <paramref name="split"/> for <paramref name="seed"/>.</summary>
    public DemoConversation Generate(long seed, DemoSplit split, long index)
    {
        var rng = new Random(StableSeed(seed, (long)split, index));
        double kind = rng.NextDouble();
        _tools.SetClock(RandomTime(rng));
        if (kind < 0.55) return new DemoConversation("single", split, new[] { ToolTurn(rng, split) });
        if (kind < 0.70) return new DemoConversation("parallel", split, new[] { ParallelTurn(rng, split) });
        if (kind < 0.85) return new DemoConversation("no-tool", split, new[] { TalkTurn(rng, split) });
        var first = rng.NextDouble() < 0.8 ? ToolTurn(rng, split) : TalkTurn(rng, split);
        return new DemoConversation("follow-up", split, new[] { first, ToolTurn(rng, split) });
    }

    /// <summary>A conversation of a given kind (for evaluation sets with fixed proportions).</summary>
    public DemoConversation Generate(long seed, DemoSplit split, long index, string kind)
    {
        var rng = new Random(StableSeed(seed, (long)split, index, kind.Length));
        _tools.SetClock(RandomTime(rng));
        return kind switch
        {
            "single" => new DemoConversation(kind, split, new[] { ToolTurn(rng, split) }),
            "parallel" => new DemoConversation(kind, split, new[] { ParallelTurn(rng, split) }),
            "no-tool" => new DemoConversation(kind, split, new[] { TalkTurn(rng, split) }),
            _ => throw new ArgumentException($"unknown conversation kind '{kind}'", nameof(kind)),
        };
    }

    private static DateTimeOffset RandomTime(Random rng) =>
        new DateTimeOffset(2024, 1, 1, 0, 0, 0, TimeSpan.Zero).AddMinutes(rng.Next(0, 3 * 365 * 24 * 60));

    private DemoTurn TalkTurn(Random rng, DemoSplit split)
    {
        var pool = SmallTalk.Where((_, i) => HeldOutTemplate(i) == (split == DemoSplit.UnseenTemplate)).ToArray();
        var (user, answer) = pool[rng.Next(pool.Length)];
        return new DemoTurn("none", user, Array.Empty<ExpectedCall>(), Array.Empty<string>(), answer);
    }

    private DemoTurn ParallelTurn(Random rng, DemoSplit split)
    {
        var a = ToolTurn(rng, split);
        DemoTurn b;
        do b = ToolTurn(rng, split); while (b.Calls[0].Name == a.Calls[0].Name);
        string connector = Connectors[rng.Next(Connectors.Length)];
        string second = connector.EndsWith("{1}", StringComparison.Ordinal) && !connector.EndsWith(". {1}", StringComparison.Ordinal) && !connector.EndsWith(": {1}", StringComparison.Ordinal)
            ? char.ToLowerInvariant(b.User[0]) + b.User[1..] : b.User;
        string user = string.Format(CultureInfo.InvariantCulture, connector, a.User, second);
        return new DemoTurn(a.Domain + "+" + b.Domain, user, a.Calls.Concat(b.Calls).ToArray(), a.Results.Concat(b.Results).ToArray(), a.Answer + " " + b.Answer);
    }

    private DemoTurn ToolTurn(Random rng, DemoSplit split)
    {
        var functions = Templates.Select(t => t.Function).Distinct().ToArray();
        string fn = functions[rng.Next(functions.Length)];
        var all = Templates.Where(t => t.Function == fn).ToArray();
        var pool = all.Where((_, i) => HeldOutTemplate(i) == (split == DemoSplit.UnseenTemplate)).ToArray();
        var template = pool[rng.Next(pool.Length)];
        bool heldValue = split != DemoSplit.Train;
        string? value = null;
        Dictionary<string, JsonElement> args = new();
        switch (fn)
        {
            case "Time_GetUtcTime":
                break;
            case "Time_GetTimeInCity":
            case "Weather_GetWeather":
                // Training also asks about made-up places (the real tool answers "unknown city: X"), so a city name
                // has to be copied from the question rather than recalled from the table's 52 names.
                value = !heldValue && rng.NextDouble() < MadeUpCityShare
                    ? Pick(rng, heldOut: false, () => RandomName(rng))
                    : Pick(rng, heldValue, () => DemoCities.All[rng.Next(DemoCities.All.Count)].Name);
                args["city"] = Str(value);
                break;
            case "Units_MilesToKilometres":
                value = Pick(rng, heldValue, () => RandomNumber(rng, maxDigits: 4, negativeShare: 0, maxDecimals: 2));
                args["miles"] = Num(value);
                break;
            case "Units_CelsiusToFahrenheit":
                value = Pick(rng, heldValue, () => RandomNumber(rng, maxDigits: 2, negativeShare: 0.3, maxDecimals: 1));
                args["celsius"] = Num(value);
                break;
            case "Units_KilogramsToPounds":
                value = Pick(rng, heldValue, () => RandomNumber(rng, maxDigits: 3, negativeShare: 0, maxDecimals: 2));
                args["kilograms"] = Num(value);
                break;
            case "Math_Calculate":
                value = Pick(rng, heldValue, () => RandomExpression(rng));
                args["expression"] = Str(value);
                break;
            case "Files_FindFiles":
                value = Pick(rng, heldValue, () => RandomPattern(rng));
                args["pattern"] = Str(value);
                break;
            default:
                throw new InvalidOperationException($"no generator for {fn}");
        }
        string question = template.Question.Replace("{x}", value ?? "");
        var call = new ExpectedCall(fn, args);
        string result = _tools.Invoke(call);
        string answer = result.StartsWith("unknown city", StringComparison.Ordinal)
            ? "Sorry, " + result + "."
            : template.Answer.Replace("{x}", value ?? "").Replace("{r}", result);
        return new DemoTurn(template.Domain, question, new[] { call }, new[] { result }, answer);
    }

    private static string Pick(Random rng, bool heldOut, Func<string> draw)
    {
        for (int i = 0; i < 10_000; i++)
        {
            string v = draw();
            if (HeldOutValue(v) == heldOut) return v;
        }
        throw new InvalidOperationException("value pool exhausted");
    }

    /// <summary>
    /// A number of 1..<paramref name="maxDigits"/> integer digits (uniform length, no leading zero), negative with
    /// probability <paramref name="negativeShare"/>, with 0..<paramref name="maxDecimals"/> decimals (the last one non-zero,
    /// so the text is the number's shortest form). Lengths and digits are drawn fresh, so values cannot be memorised.
    /// </summary>
    internal static string RandomNumber(Random rng, int maxDigits, double negativeShare, int maxDecimals)
    {
        var sb = new System.Text.StringBuilder();
        if (negativeShare > 0 && rng.NextDouble() < negativeShare) sb.Append('-');
        int digits = 1 + rng.Next(maxDigits);
        sb.Append((char)('1' + rng.Next(9)));
        for (int i = 1; i < digits; i++) sb.Append((char)('0' + rng.Next(10)));
        int decimals = rng.Next(maxDecimals + 1);
        if (decimals > 0)
        {
            sb.Append('.');
            for (int i = 1; i < decimals; i++) sb.Append((char)('0' + rng.Next(10)));
            sb.Append((char)('1' + rng.Next(9)));
        }
        return sb.ToString();
    }

    private static string RandomExpression(Random rng)
    {
        string N() => RandomNumber(rng, maxDigits: rng.NextDouble() < 0.5 ? 2 : 4, negativeShare: 0, maxDecimals: rng.NextDouble() < 0.15 ? 1 : 0);
        string Op() => "+-*/"[rng.Next(4)].ToString();
        return rng.Next(4) switch
        {
            0 or 1 => $"{N()} {Op()} {N()}",
            2 => $"{N()} {Op()} {N()} {Op()} {N()}",
            _ => $"({N()} {Op()} {N()}) {Op()} {N()}",
        };
    }

    private static string RandomPattern(Random rng)
    {
        string ext = rng.NextDouble() < 0.85 ? Extensions[rng.Next(Extensions.Length)] : RandomLetters(rng, 2, 4);
        string stem = rng.NextDouble() < 0.6 ? Stems[rng.Next(Stems.Length)] : RandomLetters(rng, 3, 8);
        return rng.Next(4) switch
        {
            0 or 1 => "*." + ext,
            2 => stem + "*",
            _ => stem + "*." + ext,
        };
    }

    private const string Consonants = "bcdfghjklmnprstvwz";
    private const string Vowels = "aeiou";

    /// <summary>A random lower-case string of <paramref name="min"/>..<paramref name="max"/> letters.</summary>
    internal static string RandomLetters(Random rng, int min, int max)
    {
        int n = min + rng.Next(max - min + 1);
        var sb = new System.Text.StringBuilder(n);
        for (int i = 0; i < n; i++) sb.Append((char)('a' + rng.Next(26)));
        return sb.ToString();
    }

    /// <summary>A pronounceable made-up name of 2..4 syllables, capitalised (one or two words).</summary>
    internal static string RandomName(Random rng)
    {
        string Word()
        {
            var sb = new System.Text.StringBuilder();
            int syllables = 2 + rng.Next(3);
            for (int i = 0; i < syllables; i++) sb.Append(Consonants[rng.Next(Consonants.Length)]).Append(Vowels[rng.Next(Vowels.Length)]);
            if (rng.Next(3) == 0) sb.Append(Consonants[rng.Next(Consonants.Length)]);
            sb[0] = char.ToUpperInvariant(sb[0]);
            return sb.ToString();
        }
        return rng.Next(5) == 0 ? Word() + " " + Word() : Word();
    }

    // ----- Copy curriculum -----------------------------------------------------------------------------------------

    private static readonly string[] CopyKeys = { "city", "miles", "celsius", "kilograms", "expression", "pattern", "value", "name", "text" };

    /// <summary>
    /// A random value for the copy curriculum: digit strings of random length, decimals, negative numbers, made-up
    /// names, random words, glob patterns, times, date-times and expressions — drawn fresh every time (never from a pool)
    /// and never a held-out value.
    /// </summary>
    internal static string CopyValue(Random rng) => Pick(rng, heldOut: false, () => rng.Next(10) switch
    {
        0 => RandomNumber(rng, maxDigits: 8, negativeShare: 0, maxDecimals: 0),
        1 => RandomNumber(rng, maxDigits: 4, negativeShare: 0, maxDecimals: 3),
        2 => RandomNumber(rng, maxDigits: 3, negativeShare: 1, maxDecimals: 2),
        3 or 4 => RandomName(rng),
        5 => RandomLetters(rng, 3, 9),
        6 => RandomPattern(rng),
        7 => $"{rng.Next(24):00}:{rng.Next(60):00}",
        8 => $"{2020 + rng.Next(10)}-{1 + rng.Next(12):00}-{1 + rng.Next(28):00} {rng.Next(24):00}:{rng.Next(60):00} UTC",
        _ => RandomExpression(rng),
    });

    private static bool IsJsonNumber(string v) => System.Text.RegularExpressions.Regex.IsMatch(v, @"^-?[1-9][0-9]*(\.[0-9]+)?$|^-?0\.[0-9]+$");

    /// <summary>The value as the template writes it inside tool-call arguments (numbers bare, text quoted).</summary>
    private static string ArgumentJson(string v) => IsJsonNumber(v) ? v : "\"" + v + "\"";

    /// <summary>
    /// Copy-curriculum conversation <paramref name="index"/> of <paramref name="stream"/>: 1–3 turns whose answers must
    /// echo values that appear only in the user text (plainly, inside a sentence, or as a JSON field like a tool call's
    /// arguments). The copied values are the turns' <see cref="DemoTurn.Results"/>. Rendered without the tool block,
    /// so these sequences are short.
    /// </summary>
    public DemoConversation CopyConversation(long seed, long stream, long index)
    {
        var rng = new Random(StableSeed(seed, 1_000 + stream, index));
        int turns = 1 + rng.Next(3);
        var list = new DemoTurn[turns];
        for (int t = 0; t < turns; t++) list[t] = CopyTurn(rng);
        return new DemoConversation("copy", DemoSplit.Train, list);
    }

    private static DemoTurn CopyTurn(Random rng)
    {
        string a = CopyValue(rng), b = CopyValue(rng);
        string key = CopyKeys[rng.Next(CopyKeys.Length)], key2 = CopyKeys[rng.Next(CopyKeys.Length)];
        if (key2 == key) key2 = "other";
        string Field(string k, string v) => "\"" + k + "\": " + ArgumentJson(v);
        (string User, string Answer, string[] Values) turn = rng.Next(10) switch
        {
            0 => ($"Repeat exactly: {a}", a, new[] { a }),
            1 => ($"Say {a} back to me.", a, new[] { a }),
            2 => ($"Copy this value: {a}", a, new[] { a }),
            3 => ($"Put {a} in the field {key} as JSON.", "{" + Field(key, a) + "}", new[] { a }),
            4 => ($"Write JSON with {key} = {a} and {key2} = {b}.", "{" + Field(key, a) + ", " + Field(key2, b) + "}", new[] { a, b }),
            5 => ($"Repeat {a} and then {b}.", $"{a} and then {b}", new[] { a, b }),
            6 => ($"The result was {a}. What was the result?", $"The result was {a}.", new[] { a }),
            7 => ($"I said {a}. What did I say?", $"You said {a}.", new[] { a }),
            8 => ($"Which is first: {a} or {b}? Answer with the first one.", a, new[] { a }),
            _ => ($"Echo {a}, please.", a, new[] { a }),
        };
        return new DemoTurn("copy", turn.User, Array.Empty<ExpectedCall>(), turn.Values, turn.Answer);
    }

    private static JsonElement Str(string s) => JsonSerializer.SerializeToElement(s);

    private static JsonElement Num(string s) => JsonDocument.Parse(s).RootElement.Clone();

    /// <summary>File names the corpus's file-search folder holds (the sample's own kinds of files plus generated ones).</summary>
    internal static IEnumerable<string> FolderFiles(long seed)
    {
        string[] fixedNames =
        {
            "Program.cs", "DemoPlugins.cs", "Granite.Samples.Agent.csproj", "Granite.Samples.Agent.dll", "Granite.Core.dll",
            "Granite.Extensions.AI.dll", "Granite.SemanticKernel.dll", "TorchSharp.dll", "Microsoft.SemanticKernel.Core.dll",
            "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "appsettings.json", "Granite.Samples.Agent.runtimeconfig.json", "Granite.Samples.Agent.deps.json",
        };
        foreach (var n in fixedNames) yield return n;
        var rng = new Random((int)(seed % int.MaxValue) ^ 0x5eed);
        for (int i = 0; i < 40; i++) yield return Stems[rng.Next(Stems.Length)] + (rng.Next(3) == 0 ? "_" + rng.Next(1, 20).ToString(CultureInfo.InvariantCulture) : "") + "." + Extensions[rng.Next(Extensions.Length)];
    }
}
