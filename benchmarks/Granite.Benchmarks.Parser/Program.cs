// Tool-call parser throughput (issue #14): streamed output in pieces of 1-8 chars, as the chat client feeds it, and
// Parse of many calls. Sizes interleaved over rounds; the median of each is reported. Usage:
//   dotnet run -c Release --project benchmarks/Granite.Benchmarks.Parser -- [--rounds 3] [--sizes 1,2,5,10] [--json out.json]
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;

int rounds = 3;
double[] sizes = [1, 2, 5, 10];
string? jsonOut = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--sizes": sizes = args[++i].Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray(); break;
        case "--json": jsonOut = args[++i]; break;
        default: throw new ArgumentException($"unknown argument {args[i]}");
    }
}

const int Mb = 1 << 20;
var scenarios = new (string Name, Func<int, string> Make)[]
{
    // One call whose string argument fills the output (the 400 KB case took a minute before the fix).
    ("one-large-argument", n => "<tool_call>\n{\"name\": \"write\", \"arguments\": {\"text\": \"" + Filler(n - 80) + "\"}}\n</tool_call>"),
    // Text and calls interleaved, ~200 chars per call.
    ("mixed-text-and-calls", n => Repeat("Let me look that up for you now.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Boston\", \"unit\": \"celsius\"}}\n</tool_call>\n", n)),
    // A closed call followed by whitespace only (100 KB took 7 s before the fix).
    ("whitespace-after-call", n => "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>" + new string(' ', n - 60) + "done"),
};

var results = new List<Dictionary<string, object>>();
var timings = new Dictionary<(string, double), List<(double Seconds, long Allocated, long Retained)>>();
Console.WriteLine($"rounds {rounds}, sizes {string.Join(",", sizes)} MB, pieces of 1-8 chars (seeded), .NET {Environment.Version}");
for (int round = 0; round < rounds; round++)
{
    foreach (double size in sizes)
    {
        foreach (var (name, make) in scenarios)
        {
            string text = make((int)(size * Mb));
            var r = Stream(text, seed: round);
            if (!timings.TryGetValue((name, size), out var list)) timings[(name, size)] = list = new();
            list.Add(r);
        }
    }
}

Console.WriteLine($"{"scenario",-24} {"MB",5} {"median s",9} {"MB/s",8} {"alloc MB/MB",11} {"retained KB",12}");
foreach (var ((name, size), list) in timings.OrderBy(k => k.Key.Item1).ThenBy(k => k.Key.Item2))
{
    var secs = list.Select(x => x.Seconds).Order().ToArray();
    double median = secs[secs.Length / 2];
    long alloc = list.Select(x => x.Allocated).Order().ElementAt(list.Count / 2);
    long retained = list.Select(x => x.Retained).Order().ElementAt(list.Count / 2);
    Console.WriteLine($"{name,-24} {size,5} {median,9:F3} {size / median,8:F1} {alloc / (size * Mb),11:F1} {retained / 1024.0,12:F0}");
    results.Add(new()
    {
        ["scenario"] = name, ["megabytes"] = size, ["median_seconds"] = median, ["seconds"] = secs, ["mb_per_s"] = size / median,
        ["allocated_bytes"] = alloc, ["retained_bytes_at_end"] = retained
    });
}

// Parse of many calls at once (33 s for 16,000 before the fix).
var parseTimes = new List<double>();
string many = string.Concat(Enumerable.Repeat("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"i\": 1}}\n</tool_call>\n", 16_000));
for (int round = 0; round < rounds; round++)
{
    var sw = Stopwatch.StartNew();
    var parsed = GraniteToolCallParser.Parse(many);
    sw.Stop();
    if (parsed.ToolCalls.Count != 16_000) throw new InvalidOperationException("wrong call count");
    parseTimes.Add(sw.Elapsed.TotalSeconds);
}
double parseMedian = parseTimes.Order().ElementAt(parseTimes.Count / 2);
Console.WriteLine($"Parse of 16,000 calls ({many.Length / 1024} KB): median {parseMedian:F3} s");
results.Add(new() { ["scenario"] = "parse-16000-calls", ["chars"] = many.Length, ["median_seconds"] = parseMedian, ["seconds"] = parseTimes.ToArray() });

if (jsonOut is not null) File.WriteAllText(jsonOut, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
return 0;

static (double Seconds, long Allocated, long Retained) Stream(string text, int seed)
{
    var random = new Random(seed);
    // Pieces are cut up front so that the timed loop measures the parser, not Substring.
    var pieces = new List<string>(text.Length / 4);
    for (int i = 0; i < text.Length;)
    {
        int n = Math.Min(text.Length - i, random.Next(1, 9));
        pieces.Add(text.Substring(i, n));
        i += n;
    }

    GC.Collect();
    GC.WaitForPendingFinalizers();
    long before = GC.GetTotalMemory(forceFullCollection: true);
    long allocBefore = GC.GetAllocatedBytesForCurrentThread();
    var parser = new GraniteToolCallParser();
    int calls = 0;
    var sw = Stopwatch.StartNew();
    foreach (string piece in pieces)
    {
        foreach (AIContent c in parser.Push(piece))
            if (c is FunctionCallContent) calls++;
    }

    sw.Stop();
    long alloc = GC.GetAllocatedBytesForCurrentThread() - allocBefore;
    long retained = GC.GetTotalMemory(forceFullCollection: true) - before; // what the live parser still holds
    GC.KeepAlive(pieces);
    foreach (AIContent c in parser.Complete())
        if (c is FunctionCallContent) calls++;
    GC.KeepAlive(parser);
    if (calls == 0) throw new InvalidOperationException("no call parsed");
    return (sw.Elapsed.TotalSeconds, alloc, retained);
}

static string Filler(int n)
{
    var sb = new StringBuilder(n);
    for (int i = 0; sb.Length < n; i++) sb.Append("word").Append(i % 1000).Append(' ');
    return sb.ToString(0, n);
}

static string Repeat(string unit, int n)
{
    var sb = new StringBuilder(n + unit.Length);
    while (sb.Length < n) sb.Append(unit);
    return sb.ToString();
}
