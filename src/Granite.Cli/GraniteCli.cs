using System.Text.Json;
using Granite.Core;

namespace Granite.Cli;

/// <summary>The <c>granite</c> command line: dispatch, error policy (one line on stderr, exit code 2).</summary>
internal static partial class GraniteCli
{
    internal const string Usage = """
        usage: granite <command> [options]

        commands:
          inspect    --model DIR [--json] [--expert-budget B [--dtype f32|bf16]]  config summary, parameter counts, weight and state bytes
          logits     --model DIR --ids 1,2,3 [--greedy N] [--dtype f32|bf16] [--expert-budget B] --json
          generate   --model DIR (--ids 1,2,3 | --prompt TEXT) [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--special] [--expert-budget B] [--json]
          tokenize   --model DIR --text T [--json]
          detokenize --model DIR --ids 1,2,3
          prompt     --model DIR --conversation FILE.json [--json]
          bench      (--model DIR | --synthetic h-tiny [--layers N]) [--prompt-tokens N] [--decode-tokens N] [--dtype f32|bf16] [--expert-budget off|BYTES|N%] [--sessions K [--prefill-chunk N]] [--profile] [--json]
          bench      --tokenizer --model DIR [--megabytes N] [--json]
          export-gguf --model DIR --out FILE.gguf [--type bf16|f16|f32] [--json]   write a llama.cpp GGUF v3 file (default type: as stored)
          train-demo --out DIR [--seed S] [--minutes M] [--json] [--steps N] [--batch B] [--hidden H] [--layers mmamma] [--eval N]
                     train the demo tool-calling model (resumes from DIR/checkpoint); writes a Hugging Face folder to DIR
          eval-demo  --model DIR [--seed S] [--count N] [--json]   held-out tool-calling accuracy through GraniteChatClient
          chat       --model DIR --script FILE [--json] [--no-reuse] [--store-conversations] [--max-tokens N] [--system TEXT]   replay user turns (JSON list or one per line; stateless resend unless --store-conversations)

        common options: --verbose (stack traces on errors), --threads N (at most 4 per CPU, min 64),
          --check-weights (logits/generate/chat/bench: refuse weights holding NaN or Inf, naming the tensor)
        --expert-budget B: MoE expert offload budget: off (default), BYTES (K/M/G suffix allowed) or PERCENT% of the expert bytes
        """;

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        bool verbose = args.Contains("--verbose");
        var rest = args.Where(a => a != "--verbose").ToArray();
        if (rest.Length == 0 || rest[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine(Usage);
            return rest.Length == 0 ? 2 : 0;
        }
        try
        {
            GraniteRuntime.EnsureLoaded();
            if (verbose) stderr.WriteLine("native: " + GraniteRuntime.LoadReport);
            string command = rest[0];
            var tail = rest.Skip(1);
            return command switch
            {
                "inspect" => Inspect(new CliArgs(tail, new HashSet<string> { "json" }), stdout),
                _ => await RunMoreAsync(command, tail, stdout, stderr, cancellationToken),
            };
        }
        catch (CliUsageException ex)
        {
            stderr.WriteLine("granite: " + OneLine(ex.Message));
            return 2;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("granite: cancelled");
            return 130;
        }
        catch (Exception ex) when (ex is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or NotSupportedException or InvalidOperationException or KeyNotFoundException or IOException or JsonException or InsufficientMemoryException or System.Runtime.InteropServices.ExternalException or UnauthorizedAccessException)
        {
            stderr.WriteLine("granite: " + OneLine(ex.Message));
            if (verbose) stderr.WriteLine(ex.ToString());
            return 2;
        }
    }

    static partial void RunMore(string command, IEnumerable<string> args, TextWriter stdout, TextWriter stderr, CancellationToken ct, ref Task<int>? result);

    private static Task<int> RunMoreAsync(string command, IEnumerable<string> args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        Task<int>? result = null;
        RunMore(command, args, stdout, stderr, ct, ref result);
        return result ?? throw new CliUsageException($"unknown command '{command}' (try 'granite --help')");
    }

    /// <summary>Longest error line printed (a message quoting a huge value is cut).</summary>
    internal const int MaxErrorChars = 1000;

    /// <summary>The message as one line: line breaks become spaces, other control characters (terminal escapes included)
    /// are shown escaped, and it is cut at <see cref="MaxErrorChars"/>.</summary>
    internal static string OneLine(string message)
    {
        var joined = string.Join(' ', message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var sb = new System.Text.StringBuilder(Math.Min(joined.Length, MaxErrorChars + 32));
        for (int i = 0; i < joined.Length; i++)
        {
            if (sb.Length >= MaxErrorChars)
            {
                sb.Append($"… ({joined.Length - i} more chars)");
                break;
            }
            char c = joined[i];
            if (char.IsHighSurrogate(c) && i + 1 < joined.Length && char.IsLowSurrogate(joined[i + 1]))
            {
                sb.Append(c).Append(joined[++i]);
                continue;
            }
            if (c == '\t') sb.Append(' ');
            else if (c < 0x20 || c is (>= '\u007f' and <= '\u009f') or '\u2028' or '\u2029' || char.IsSurrogate(c))
                sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.ToString();
    }

    internal static string ModelDir(CliArgs a)
    {
        var dir = a.Require("model");
        if (File.Exists(dir)) dir = Granite.Core.Weights.Gguf.GgufImporter.ResolveModelPath(dir); // GGUF file (or Ollama blob) → imported folder
        if (!Directory.Exists(dir)) throw new CliUsageException($"model folder not found: {dir}");
        if (!File.Exists(Path.Combine(dir, "config.json"))) throw new CliUsageException($"not a Granite checkpoint folder (no config.json): {dir}");
        return dir;
    }
}
