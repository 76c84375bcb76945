using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Granite.Core.Experts;
using Granite.Core.Modeling;

namespace Granite.Cli;

/// <summary>A usage error found after parsing (e.g. a missing model folder): printed as one line on stderr, exit code 2.</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>
/// Option factories shared by the commands. System.CommandLine generates usage, help and the structural errors
/// (unknown options and commands, missing values, required options); the value parsers here keep the CLI's messages,
/// which name the option and quote the value: <c>option --NAME must be ... (got 'VALUE')</c>.
/// </summary>
internal static class CliOptions
{
    public static Option<string> Model(string description = "checkpoint folder (config.json, safetensors, tokenizer), or a GGUF file (imported once into a cached folder)") =>
        new("--model") { Description = description, HelpName = "DIR", Required = true };

    public static Option<bool> Flag(string name, string description) => new(name) { Description = description };

    public static Option<string> Text(string name, string helpName, string description, bool required = false) =>
        new(name) { Description = description, HelpName = helpName, Required = required };

    /// <summary>A string option with a default (shown in help) and a check that returns an error message or null.</summary>
    public static Option<string> Text(string name, string helpName, string description, string defaultValue, Func<string, string?> check) =>
        new(name)
        {
            Description = description,
            HelpName = helpName,
            DefaultValueFactory = _ => defaultValue,
            CustomParser = r => Checked(r, SingleValue(r, name), check) ?? defaultValue,
        };

    /// <summary>An integer option with a default (shown in help), a lower bound and an optional further check.</summary>
    public static Option<int> Int(string name, string helpName, string description, int defaultValue, int min = int.MinValue, Func<int, string?>? check = null) =>
        new(name)
        {
            Description = description,
            HelpName = helpName,
            DefaultValueFactory = _ => defaultValue,
            CustomParser = r => Checked(r, ParseInt(r, name, min), check) ?? defaultValue,
        };

    /// <summary>An integer option that is absent (null) unless given.</summary>
    public static Option<int?> OptionalInt(string name, string helpName, string description, int min = int.MinValue, int max = int.MaxValue) =>
        new(name)
        {
            Description = description,
            HelpName = helpName,
            CustomParser = r =>
            {
                var v = ParseInt(r, name, min);
                if (v > max) r.AddError($"{name} is at most {max}");
                return v;
            },
        };

    /// <summary>
    /// A number option with a default, written into the description in the invariant culture (System.CommandLine's own
    /// <c>[default: ...]</c> would follow the current culture); read it with <c>?? defaultValue</c>.
    /// </summary>
    public static Option<double?> Number(string name, string helpName, string description, double defaultValue, Func<double, string?>? check = null) =>
        new(name)
        {
            Description = $"{description} [default: {defaultValue.ToString(CultureInfo.InvariantCulture)}]",
            HelpName = helpName,
            CustomParser = r => Checked(r, ParseDouble(r, name), check),
        };

    /// <summary>A number option that is absent (null) unless given.</summary>
    public static Option<double?> OptionalNumber(string name, string helpName, string description) =>
        new(name) { Description = description, HelpName = helpName, CustomParser = r => ParseDouble(r, name) };

    /// <summary><c>--ids 1,2,3</c>: one token, a comma-separated list of token ids.</summary>
    public static Option<int[]> Ids(string description, bool required) =>
        new("--ids")
        {
            Description = description,
            HelpName = "1,2,3",
            Required = required,
            Arity = ArgumentArity.ExactlyOne,
            CustomParser = ParseIds,
        };

    /// <summary><c>--dtype f32|bf16|q8_0</c> (also float32, bfloat16, stored); the default depends on the command.</summary>
    public static Option<string> Dtype(string description) =>
        new("--dtype")
        {
            Description = description,
            HelpName = "f32|bf16|q8_0",
            CustomParser = r =>
            {
                var s = SingleValue(r, "--dtype");
                if (s is null or "f32" or "float32" or "bf16" or "bfloat16" or "stored" or "q8_0") return s;
                r.AddError($"option --dtype must be f32, bf16 or q8_0 (got '{s}')");
                return null;
            },
        };

    /// <summary><c>--threads N</c> for commands that load a model: 1 .. <see cref="GraniteModelOptions.MaxThreads"/>.</summary>
    public static Option<int?> Threads() =>
        new("--threads")
        {
            Description = "LibTorch intra-op and managed-kernel threads (at most 4 per CPU; 64 is always allowed); default: LibTorch's (the core count)",
            HelpName = "N",
            CustomParser = r =>
            {
                var v = ParseInt(r, "--threads", 1);
                if (v > GraniteModelOptions.MaxThreads)
                    r.AddError($"option --threads must be at most {GraniteModelOptions.MaxThreads} on this machine ({Environment.ProcessorCount} CPUs; got {v})");
                return v;
            },
        };

    /// <summary><c>--expert-budget off|BYTES|PERCENT%</c> (absent = off).</summary>
    public static Option<ExpertOffloadOptions> ExpertBudget() =>
        new("--expert-budget")
        {
            Description = "MoE expert offload: bytes of routed experts kept resident, as off, BYTES (K/M/G suffix allowed) or PERCENT% of the expert bytes",
            HelpName = "off|BYTES|N%",
            DefaultValueFactory = _ => ExpertOffloadOptions.Off,
            CustomParser = r =>
            {
                var s = SingleValue(r, "--expert-budget");
                if (s is null) return ExpertOffloadOptions.Off;
                try { return ExpertOffloadOptions.Parse(s); }
                catch (FormatException ex)
                {
                    r.AddError("option --" + ex.Message.Replace("expert budget", "expert-budget", StringComparison.Ordinal));
                    return ExpertOffloadOptions.Off;
                }
            },
        };

    /// <summary>The one value token of a single-value option, or null after recording an error.</summary>
    internal static string? SingleValue(ArgumentResult r, string name)
    {
        if (r.Tokens.Count == 1) return r.Tokens[0].Value;
        r.AddError(r.Tokens.Count == 0 ? $"option {name} needs a value" : $"option {name} given twice");
        return null;
    }

    /// <summary>The value, or null after recording the error <paramref name="check"/> returns for it.</summary>
    private static T? Checked<T>(ArgumentResult r, T? value, Func<T, string?>? check) where T : struct
    {
        if (value is not { } v || check?.Invoke(v) is not { } error) return value;
        r.AddError(error);
        return null;
    }

    private static string? Checked(ArgumentResult r, string? value, Func<string, string?> check)
    {
        if (value is null || check(value) is not { } error) return value;
        r.AddError(error);
        return null;
    }

    private static int? ParseInt(ArgumentResult r, string name, int min)
    {
        var s = SingleValue(r, name);
        if (s is null) return null;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min)
        {
            r.AddError($"option {name} must be an integer{(min > int.MinValue ? $" >= {min}" : "")} (got '{s}')");
            return null;
        }
        return v;
    }

    private static double? ParseDouble(ArgumentResult r, string name)
    {
        var s = SingleValue(r, name);
        if (s is null) return null;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || double.IsNaN(v))
        {
            r.AddError($"option {name} must be a number (got '{s}')");
            return null;
        }
        return v;
    }

    private static int[]? ParseIds(ArgumentResult r)
    {
        var s = SingleValue(r, "--ids");
        if (s is null) return null;
        try
        {
            var ids = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => int.Parse(x, NumberStyles.Integer, CultureInfo.InvariantCulture)).ToArray();
            if (ids.Length == 0) r.AddError("option --ids needs at least one token id");
            return ids;
        }
        catch (FormatException) { r.AddError($"option --ids must be a comma-separated list of integers (got '{s}')"); }
        catch (OverflowException) { r.AddError($"option --ids has a token id out of range (got '{s}')"); }
        return null;
    }
}

/// <summary>The options that choose how a model is loaded (<c>logits</c>, <c>generate</c>, <c>chat</c>, <c>bench</c>).</summary>
internal sealed class ModelLoadOptions
{
    public ModelLoadOptions(string dtypeDescription) => Dtype = CliOptions.Dtype(dtypeDescription);

    public Option<string> Dtype { get; }

    public Option<int?> Threads { get; } = CliOptions.Threads();

    public Option<ExpertOffloadOptions> ExpertBudget { get; } = CliOptions.ExpertBudget();

    public Option<bool> CheckWeights { get; } = CliOptions.Flag("--check-weights", "read every weight once and refuse NaN or Inf, naming the tensor");

    public Option<bool> Int8Head { get; } = CliOptions.Flag("--int8-head", "compute the LM head from an int8 copy with per-row scales (GraniteModelOptions.Int8LmHead; see docs/benchmarks.md)");

    public IReadOnlyList<Option> All => [Dtype, Threads, ExpertBudget, CheckWeights, Int8Head];

    public void AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
    }

    public GraniteModelOptions Read(ParseResult r, WeightDtypePolicy defaultPolicy) => new()
    {
        WeightDtype = r.GetValue(Dtype) switch
        {
            null => defaultPolicy,
            "f32" or "float32" => WeightDtypePolicy.Float32,
            "q8_0" => WeightDtypePolicy.Q8_0,
            _ => WeightDtypePolicy.AsStored,
        },
        Threads = r.GetValue(Threads) ?? 0,
        ExpertOffload = r.GetValue(ExpertBudget) ?? ExpertOffloadOptions.Off,
        CheckFiniteWeights = r.GetValue(CheckWeights),
        Int8LmHead = r.GetValue(Int8Head),
    };
}
