using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Text.Json;
using Granite.Core;

namespace Granite.Cli;

/// <summary>
/// The <c>granite</c> command line: the command tree (System.CommandLine generates usage, help and parse errors), and
/// the error policy: one line on stderr (<c>granite: ...</c>), exit code 2; no stack trace unless <c>--verbose</c>.
/// </summary>
internal static partial class GraniteCli
{
    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Width at which help text wraps (fixed, so <c>--help</c> and docs/cli.md do not depend on the terminal).</summary>
    internal const int HelpWidth = 120;

    /// <summary>Values are taken literally: no <c>@file</c> response files (a prompt may start with '@').</summary>
    private static readonly ParserConfiguration Parsing = new() { ResponseFileTokenReplacer = null };

    /// <summary>The root command and its global <c>--verbose</c> option.</summary>
    internal sealed record CliTree(RootCommand Root, Option<bool> Verbose);

    /// <summary>Builds the command tree: every command, its options (names, placeholders, defaults, descriptions) and action.</summary>
    internal static CliTree CreateCommandLine()
    {
        var verbose = new Option<bool>("--verbose") { Description = "print stack traces and the native-loading report on errors", Recursive = true };
        var root = new RootCommand("Inspect, tokenize, run, benchmark and export IBM Granite 4.0 checkpoints in-process on TorchSharp.")
        {
            HelpName = "granite",
        };
        root.Options.Add(verbose);
        foreach (var command in new[]
        {
            InspectCommand(), LogitsCommand(), GenerateCommand(), TokenizeCommand(), DetokenizeCommand(), PromptCommand(),
            BenchCommand(), ExportGgufCommand(), ChatCommand(), Demo.DemoCommands.TrainCommand(), Demo.DemoCommands.EvalCommand(),
            DocsCommand(),
        })
            root.Subcommands.Add(command);
        foreach (var help in root.Options.OfType<HelpOption>())
            if (help.Action is HelpAction action) action.MaxWidth = HelpWidth;
        return new CliTree(root, verbose);
    }

    /// <summary>Parses <paramref name="args"/>, runs the command, and maps failures to one line on stderr and exit code 2.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        if (args is ["help", .. var rest]) args = [.. rest, "--help"];
        var cli = CreateCommandLine();
        var parsed = cli.Root.Parse(args, Parsing);
        bool verbose = parsed.GetValue(cli.Verbose);
        var invocation = new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null, // Ctrl+C ends the process as before
        };
        if (parsed.Action is CommandLineAction { ClearsParseErrors: true }) // --help, --version
            return await parsed.InvokeAsync(invocation, cancellationToken);
        if (parsed.CommandResult.Command == cli.Root && parsed.UnmatchedTokens.Count == 0)
        {
            await cli.Root.Parse(["--help"], Parsing).InvokeAsync(invocation, cancellationToken); // no command: the help, exit code 2
            return 2;
        }
        if (parsed.Errors.Count > 0)
        {
            stderr.WriteLine("granite: " + OneLine(ParseErrorMessage(parsed, cli.Root)));
            return 2;
        }
        try
        {
            if (parsed.CommandResult.Command.Name != DocsCommandName)
            {
                GraniteRuntime.EnsureLoaded();
                if (verbose) stderr.WriteLine("native: " + GraniteRuntime.LoadReport);
            }
            return await parsed.InvokeAsync(invocation, cancellationToken);
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

    /// <summary>
    /// The first parse error as one sentence: unknown commands and options and missing required options in the CLI's
    /// words (<c>unknown option --x</c>, <c>option --x is required</c>), value errors as their parsers wrote them.
    /// </summary>
    internal static string ParseErrorMessage(ParseResult parsed, RootCommand root)
    {
        var command = parsed.CommandResult.Command;
        if (parsed.UnmatchedTokens.Count > 0)
        {
            var token = parsed.UnmatchedTokens[0];
            if (command == root) return $"unknown command '{token}' (try 'granite --help')";
            if (token.StartsWith('-') && token.Length > 1)
            {
                int eq = token.IndexOf('=', StringComparison.Ordinal);
                return $"unknown option {(eq > 0 ? token[..eq] : token)}";
            }
            return $"unexpected argument '{token}'";
        }
        foreach (var result in parsed.CommandResult.Children.OfType<OptionResult>().Where(r => !r.Implicit))
        {
            if (result.Option.Arity.MinimumNumberOfValues > 0 && result.Tokens.Count == 0) return $"option {result.Option.Name} needs a value";
            if (result.IdentifierTokenCount > 1 && result.Option.Arity.MaximumNumberOfValues == 1) return $"option {result.Option.Name} given twice";
        }
        foreach (var option in command.Options)
            if (option.Required && parsed.GetResult(option) is not { Implicit: false })
                return $"option {option.Name} is required";
        return parsed.Errors[0].Message;
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

    /// <summary>The checkpoint folder named by <c>--model</c>: a folder with config.json, or a GGUF file imported into one.</summary>
    internal static string ModelDir(string dir)
    {
        if (File.Exists(dir)) dir = Granite.Core.Weights.Gguf.GgufImporter.ResolveModelPath(dir); // GGUF file (or Ollama blob) → imported folder
        if (!Directory.Exists(dir)) throw new CliUsageException($"model folder not found: {dir}");
        if (!File.Exists(Path.Combine(dir, "config.json"))) throw new CliUsageException($"not a Granite checkpoint folder (no config.json): {dir}");
        return dir;
    }
}
