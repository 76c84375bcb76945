// Fuzz targets for hostile checkpoint files and model output (issue #14); see docs/reliability.md.
//   afl:    AFL_SKIP_BIN_CHECK=1 afl-fuzz -i corpus/<target> -o findings/<target> -t 5000 -m none -- dotnet Granite.Fuzz.dll <target>
//   replay: dotnet Granite.Fuzz.dll <target> --replay <file-or-folder>...   (runs inputs once, in process; exit 1 on a crash)
//   random: dotnet Granite.Fuzz.dll <target> --random <seconds> [--seed N] [--corpus DIR]   (managed mutation driver)
// A target "crashes" when the code under test throws anything but its documented error types, or breaks an invariant.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Granite.Fuzz;

// Nothing from the (instrumented) Granite assemblies may run before SharpFuzz has mapped AFL's shared memory: their
// module initializers are instrumented too. So only names are known here; Targets is touched inside the callback.
string[] names = ["safetensors", "index", "config", "tokenizer", "toolcall-stream", "conversation", "gguf"];
if (args.Length == 0 || !names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: Granite.Fuzz <{string.Join("|", names)}> [--replay PATH... | --random SECONDS [--seed N] [--corpus DIR]]");
    return 2;
}

if (args.Length == 1)
{
    string name = args[0];
    bool configured = false;
    SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
    {
        if (!configured) { FuzzTargets.ConfigureForFuzzing(); configured = true; }
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        FuzzTargets.All[name](ms.ToArray());
    });
    return 0;
}

FuzzTargets.ConfigureForFuzzing();
Action<byte[]> target = FuzzTargets.All[args[0]];
if (args.Length >= 2 && args[1] == "--replay")
{
    int failures = 0, count = 0;
    foreach (string path in args.Skip(2).SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToArray() : new[] { p }))
    {
        count++;
        try { target(File.ReadAllBytes(path)); }
        catch (Exception ex)
        {
            failures++;
            Console.Error.WriteLine($"CRASH {path}: {ex.GetType().Name}: {ex.Message}");
            Console.Error.WriteLine(string.Join('\n', (ex.StackTrace ?? "").Split('\n').Take(4)));
        }
    }

    Console.WriteLine($"{args[0]}: replayed {count} inputs, {failures} crashes");
    return failures == 0 ? 0 : 1;
}

if (args.Length >= 2 && args[1] == "--random")
{
    double seconds = double.Parse(args[2], CultureInfo.InvariantCulture);
    int seed = Array.IndexOf(args, "--seed") is int s and > 0 ? int.Parse(args[s + 1], CultureInfo.InvariantCulture) : 1;
    string? corpus = Array.IndexOf(args, "--corpus") is int c and > 0 ? args[c + 1] : null;
    return MutationDriver.Run(args[0], target, seconds, seed, corpus);
}

Console.Error.WriteLine("expected --replay or --random");
return 2;

/// <summary>
/// Fallback when no coverage-guided fuzzer is at hand: mutates corpus inputs (bit flips, byte/boundary values,
/// block duplication/deletion, splicing, JSON-token insertion) in process for a fixed time, and saves any crashing
/// input under <c>crashes/</c>. Not coverage-guided.
/// </summary>
internal static class MutationDriver
{
    private static readonly string[] Tokens =
    [
        "{", "}", "[", "]", "\"", ":", ",", "\\", "\\ud800", "\\udfff", "\\u0000", "1e999", "-1", "2147483647", "4294967296",
        "9223372036854775807", "null", "true", "NaN", "Infinity", "<tool_call>", "</tool_call>", "<|start_of_role|>", "\u001b[2J",
        "\"name\"", "\"arguments\"", "\"vocab_size\"", "\"num_hidden_layers\"", "\"layer_types\"", "\"added_tokens\"", "\"Regex\"", "(a+)+$",
        "\"dtype\": \"I16\"", "\"shape\"", "\"data_offsets\"", "\"weight_map\"", "../", "\0",
    ];

    public static int Run(string name, Action<byte[]> target, double seconds, int seed, string? corpusDir)
    {
        var random = new Random(seed);
        var corpus = corpusDir is not null && Directory.Exists(corpusDir)
            ? Directory.GetFiles(corpusDir).Select(File.ReadAllBytes).ToList()
            : new List<byte[]> { Array.Empty<byte>() };
        string crashes = Path.Combine("crashes", name);
        var sw = Stopwatch.StartNew();
        long execs = 0, crashCount = 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            byte[] input = Mutate(corpus[random.Next(corpus.Count)], corpus, random);
            execs++;
            try
            {
                target(input);
            }
            catch (Exception ex)
            {
                string key = ex.GetType().FullName + ":" + (ex.StackTrace?.Split('\n').FirstOrDefault() ?? "");
                crashCount++;
                if (seen.Add(key))
                {
                    Directory.CreateDirectory(crashes);
                    string file = Path.Combine(crashes, $"crash-{seen.Count:D3}.bin");
                    File.WriteAllBytes(file, input);
                    Console.Error.WriteLine($"CRASH {file}: {ex.GetType().Name}: {ex.Message.Split('\n')[0]}");
                }
            }

            if (execs % 200 == 0 && random.Next(4) == 0 && corpus.Count < 2000) corpus.Add(input); // keep some variety
        }

        Console.WriteLine($"{name}: {execs} execs in {sw.Elapsed.TotalSeconds:F0} s, {crashCount} crashing inputs, {seen.Count} distinct");
        return seen.Count == 0 ? 0 : 1;
    }

    private static byte[] Mutate(byte[] source, List<byte[]> corpus, Random r)
    {
        var data = new List<byte>(source);
        int rounds = 1 + r.Next(8);
        for (int k = 0; k < rounds; k++)
        {
            int pos = data.Count == 0 ? 0 : r.Next(data.Count);
            switch (r.Next(8))
            {
                case 0 when data.Count > 0: data[pos] ^= (byte)(1 << r.Next(8)); break;
                case 1 when data.Count > 0: data[pos] = (byte)new[] { 0, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x7D, 0x30, 0x39, 0x0A }[r.Next(11)]; break;
                case 2 when data.Count > 0: data.RemoveRange(pos, Math.Min(data.Count - pos, 1 + r.Next(16))); break;
                case 3 when data.Count > 0:
                {
                    int len = Math.Min(data.Count - pos, 1 + r.Next(64));
                    data.InsertRange(r.Next(data.Count + 1), data.GetRange(pos, len));
                    break;
                }
                case 4:
                {
                    byte[] other = corpus[r.Next(corpus.Count)];
                    if (other.Length > 0)
                    {
                        int start = r.Next(other.Length);
                        data.InsertRange(pos, other.AsSpan(start, Math.Min(other.Length - start, 1 + r.Next(256))).ToArray());
                    }

                    break;
                }
                case 5 when data.Count >= 8:
                {
                    // Overwrite a little-endian u64 (safetensors length prefix or an offset) with a boundary value.
                    ulong v = new ulong[] { 0, 1, 7, 8, ulong.MaxValue, long.MaxValue, 100_000_001, (ulong)data.Count }[r.Next(8)];
                    int at = r.Next(2) == 0 ? 0 : r.Next(data.Count - 7);
                    for (int i = 0; i < 8; i++) data[at + i] = (byte)(v >> (8 * i));
                    break;
                }

                default:
                    data.InsertRange(pos, Encoding.UTF8.GetBytes(Tokens[r.Next(Tokens.Length)]));
                    break;
            }
        }

        return data.ToArray();
    }
}
