using System.Globalization;

namespace Granite.Cli;

/// <summary>A usage error: printed as one line on stderr, exit code 2.</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>Minimal GNU-style argument reader: <c>--name value</c>, <c>--name=value</c> and boolean flags.</summary>
internal sealed class CliArgs
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public CliArgs(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            var a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
                throw new CliUsageException($"unexpected argument '{a}'");
            string name, value;
            int eq = a.IndexOf('=');
            if (eq > 0) { name = a[2..eq]; value = a[(eq + 1)..]; }
            else if (flags.Contains(a[2..])) { name = a[2..]; value = "true"; }
            else
            {
                name = a[2..];
                if (i + 1 >= list.Count) throw new CliUsageException($"option --{name} needs a value");
                value = list[++i];
            }
            if (_values.ContainsKey(name)) throw new CliUsageException($"option --{name} given twice");
            _values[name] = value;
        }
    }

    public bool Flag(string name) { _used.Add(name); return _values.TryGetValue(name, out var v) && v is "true" or "1"; }

    public string? Get(string name) { _used.Add(name); return _values.TryGetValue(name, out var v) ? v : null; }

    public string Require(string name) => Get(name) ?? throw new CliUsageException($"option --{name} is required");

    public int? Int(string name, int min = int.MinValue)
    {
        var s = Get(name);
        if (s is null) return null;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min)
            throw new CliUsageException($"option --{name} must be an integer{(min > int.MinValue ? $" >= {min}" : "")} (got '{s}')");
        return v;
    }

    public double? Double(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || double.IsNaN(v))
            throw new CliUsageException($"option --{name} must be a number (got '{s}')");
        return v;
    }

    public int[]? Ids(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        try
        {
            var ids = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => int.Parse(x, NumberStyles.Integer, CultureInfo.InvariantCulture)).ToArray();
            if (ids.Length == 0) throw new CliUsageException($"option --{name} needs at least one token id");
            return ids;
        }
        catch (FormatException) { throw new CliUsageException($"option --{name} must be a comma-separated list of integers (got '{s}')"); }
        catch (OverflowException) { throw new CliUsageException($"option --{name} has a token id out of range (got '{s}')"); }
    }

    /// <summary>Rejects options that no command read.</summary>
    public void EnsureAllUsed()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new CliUsageException($"unknown option --{unknown[0]}");
    }
}
