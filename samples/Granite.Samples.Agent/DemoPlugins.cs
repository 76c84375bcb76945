using System.ComponentModel;
using System.Globalization;
using System.Text;
using Microsoft.SemanticKernel;

namespace Granite.Demo;

/// <summary>
/// The agent's tools, shared by the sample and by <c>granite train-demo</c> (which renders exactly these declarations
/// into its training corpus and runs this code for the tool results).
/// </summary>
internal static class DemoAgent
{
    /// <summary>The sample's system prompt (also the training corpus's).</summary>
    public const string SystemPrompt = "You are a precise assistant. Use the tools for times, unit conversions, arithmetic, weather and file searches.";

    /// <summary>Registers the five plugins (Time, Units, Math, Weather, Files) under their plugin names.</summary>
    public static void AddPlugins(IKernelBuilderPlugins plugins, DemoToolContext context)
    {
        ArgumentNullException.ThrowIfNull(plugins);
        ArgumentNullException.ThrowIfNull(context);
        plugins.AddFromObject(new TimePlugin(context), "Time");
        plugins.AddFromObject(new UnitsPlugin(context), "Units");
        plugins.AddFromObject(new MathPlugin(context), "Math");
        plugins.AddFromObject(new WeatherPlugin(context), "Weather");
        plugins.AddFromObject(new FilesPlugin(context), "Files");
    }
}

/// <summary>What the tools read (clock, file folder) and a log of the calls they served.</summary>
internal sealed class DemoToolContext
{
    private readonly List<string> _calls = new();

    public DemoToolContext(TimeProvider clock, string filesRoot)
    {
        Clock = clock;
        FilesRoot = filesRoot;
    }

    public TimeProvider Clock { get; }

    /// <summary>The folder <c>Files.FindFiles</c> searches.</summary>
    public string FilesRoot { get; }

    /// <summary>Calls served, as <c>Plugin.Function(args)</c>.</summary>
    public IReadOnlyList<string> Calls { get { lock (_calls) return _calls.ToArray(); } }

    internal void Record(string call) { lock (_calls) _calls.Add(call); }

    internal static string Number(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
}

/// <summary>Built-in city table: UTC offset (minutes, no daylight saving) and a fixed weather report.</summary>
internal static class DemoCities
{
    /// <summary>(name, UTC offset in minutes, condition, °C).</summary>
    public static readonly IReadOnlyList<(string Name, int OffsetMinutes, string Condition, int Celsius)> All = new (string, int, string, int)[]
    {
        ("London", 0, "cloudy", 9), ("Paris", 60, "sunny", 14), ("Berlin", 60, "rainy", 7), ("Madrid", 60, "sunny", 19),
        ("Rome", 60, "sunny", 17), ("Athens", 120, "windy", 16), ("Cairo", 120, "sunny", 27), ("Moscow", 180, "snowy", -4),
        ("Dubai", 240, "sunny", 31), ("Karachi", 300, "hazy", 26), ("Delhi", 330, "hazy", 24), ("Dhaka", 360, "humid", 28),
        ("Bangkok", 420, "humid", 32), ("Jakarta", 420, "rainy", 29), ("Beijing", 480, "cloudy", 6), ("Singapore", 480, "rainy", 30),
        ("Perth", 480, "sunny", 25), ("Tokyo", 540, "cloudy", 11), ("Seoul", 540, "windy", 5), ("Sydney", 600, "sunny", 23),
        ("Auckland", 720, "windy", 18), ("Honolulu", -600, "sunny", 27), ("Anchorage", -540, "snowy", -8), ("Seattle", -480, "rainy", 8),
        ("Vancouver", -480, "rainy", 7), ("Denver", -420, "snowy", -2), ("Chicago", -360, "windy", 3), ("Houston", -360, "humid", 22),
        ("Mexico City", -360, "sunny", 21), ("Toronto", -300, "cloudy", 2), ("New York", -300, "cloudy", 6), ("Miami", -300, "humid", 27),
        ("Lima", -300, "foggy", 19), ("Bogota", -300, "rainy", 14), ("Santiago", -240, "sunny", 24), ("Caracas", -240, "humid", 28),
        ("Buenos Aires", -180, "sunny", 26), ("Sao Paulo", -180, "rainy", 23), ("Reykjavik", 0, "snowy", -1), ("Lisbon", 0, "sunny", 16),
        ("Dublin", 0, "rainy", 8), ("Oslo", 60, "snowy", -3), ("Stockholm", 60, "cloudy", 0), ("Vienna", 60, "foggy", 4),
        ("Warsaw", 60, "cloudy", 2), ("Istanbul", 180, "rainy", 12), ("Nairobi", 180, "sunny", 22), ("Lagos", 60, "humid", 31),
        ("Johannesburg", 120, "sunny", 25), ("Tehran", 210, "sunny", 13), ("Kathmandu", 345, "foggy", 10), ("Manila", 480, "humid", 30),
    };

    public static (string Name, int OffsetMinutes, string Condition, int Celsius)? Find(string city)
    {
        foreach (var c in All)
            if (string.Equals(c.Name, city?.Trim(), StringComparison.OrdinalIgnoreCase)) return c;
        return null;
    }
}

/// <summary>Time and date functions.</summary>
internal sealed class TimePlugin(DemoToolContext context)
{
    [KernelFunction, Description("Returns the current date and time in UTC.")]
    public string GetUtcTime()
    {
        context.Record("Time.GetUtcTime()");
        return context.Clock.GetUtcNow().ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture);
    }

    [KernelFunction, Description("Returns the current local time in a city.")]
    public string GetTimeInCity([Description("city name")] string city)
    {
        context.Record($"Time.GetTimeInCity({city})");
        if (DemoCities.Find(city) is not { } c) return $"unknown city: {city}";
        var local = context.Clock.GetUtcNow().ToOffset(TimeSpan.FromMinutes(c.OffsetMinutes));
        return local.ToString("HH:mm", CultureInfo.InvariantCulture) + " in " + c.Name;
    }
}

/// <summary>Unit conversions.</summary>
internal sealed class UnitsPlugin(DemoToolContext context)
{
    [KernelFunction, Description("Converts a distance in miles to kilometres.")]
    public string MilesToKilometres([Description("distance in miles")] double miles)
    {
        context.Record($"Units.MilesToKilometres({DemoToolContext.Number(miles)})");
        return DemoToolContext.Number(miles * 1.609344) + " km";
    }

    [KernelFunction, Description("Converts a temperature in degrees Celsius to Fahrenheit.")]
    public string CelsiusToFahrenheit([Description("temperature in degrees Celsius")] double celsius)
    {
        context.Record($"Units.CelsiusToFahrenheit({DemoToolContext.Number(celsius)})");
        return DemoToolContext.Number(celsius * 9 / 5 + 32) + " F";
    }

    [KernelFunction, Description("Converts a weight in kilograms to pounds.")]
    public string KilogramsToPounds([Description("weight in kilograms")] double kilograms)
    {
        context.Record($"Units.KilogramsToPounds({DemoToolContext.Number(kilograms)})");
        return DemoToolContext.Number(kilograms * 2.20462262) + " lb";
    }
}

/// <summary>A calculator.</summary>
internal sealed class MathPlugin(DemoToolContext context)
{
    [KernelFunction, Description("Evaluates an arithmetic expression with + - * / and parentheses.")]
    public string Calculate([Description("the expression, e.g. (2 + 3) * 4")] string expression)
    {
        context.Record($"Math.Calculate({expression})");
        try
        {
            var p = new ExpressionParser(expression ?? "");
            double v = p.Parse();
            return double.IsFinite(v) ? DemoToolContext.Number(v) : "undefined";
        }
        catch (FormatException ex)
        {
            return "error: " + ex.Message;
        }
    }

    /// <summary>expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*; factor := number | '(' expr ')' | '-' factor.</summary>
    private sealed class ExpressionParser(string text)
    {
        private int _pos;

        public double Parse()
        {
            double v = Expr();
            Skip();
            if (_pos != text.Length) throw new FormatException($"unexpected '{text[_pos]}'");
            return v;
        }

        private void Skip() { while (_pos < text.Length && char.IsWhiteSpace(text[_pos])) _pos++; }

        private double Expr()
        {
            double v = Term();
            for (Skip(); _pos < text.Length && (text[_pos] == '+' || text[_pos] == '-'); Skip())
                v = text[_pos++] == '+' ? v + Term() : v - Term();
            return v;
        }

        private double Term()
        {
            double v = Factor();
            for (Skip(); _pos < text.Length && (text[_pos] == '*' || text[_pos] == '/' || text[_pos] == 'x'); Skip())
                v = text[_pos++] == '/' ? v / Factor() : v * Factor();
            return v;
        }

        private double Factor()
        {
            Skip();
            if (_pos >= text.Length) throw new FormatException("expression ends early");
            if (text[_pos] == '-') { _pos++; return -Factor(); }
            if (text[_pos] == '(')
            {
                _pos++;
                double v = Expr();
                Skip();
                if (_pos >= text.Length || text[_pos] != ')') throw new FormatException("missing ')'");
                _pos++;
                return v;
            }
            int start = _pos;
            while (_pos < text.Length && (char.IsAsciiDigit(text[_pos]) || text[_pos] == '.')) _pos++;
            if (start == _pos) throw new FormatException($"unexpected '{text[_pos]}'");
            return double.Parse(text.AsSpan(start, _pos - start), NumberStyles.Float, CultureInfo.InvariantCulture);
        }
    }
}

/// <summary>Weather from the built-in city table.</summary>
internal sealed class WeatherPlugin(DemoToolContext context)
{
    [KernelFunction, Description("Returns the current weather in a city.")]
    public string GetWeather([Description("city name")] string city)
    {
        context.Record($"Weather.GetWeather({city})");
        return DemoCities.Find(city) is { } c ? $"{c.Condition}, {c.Celsius} C" : $"unknown city: {city}";
    }
}

/// <summary>File search in one folder tree.</summary>
internal sealed class FilesPlugin(DemoToolContext context)
{
    [KernelFunction, Description("Finds files whose names match a glob pattern such as *.json.")]
    public string FindFiles([Description("glob pattern with * and ?")] string pattern)
    {
        context.Record($"Files.FindFiles({pattern})");
        if (string.IsNullOrWhiteSpace(pattern) || !Directory.Exists(context.FilesRoot)) return "no files";
        var names = Directory.EnumerateFiles(context.FilesRoot, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetFileName(f))
            .Where(n => Glob(pattern.Trim(), n))
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToList();
        if (names.Count == 0) return "no files";
        var sb = new StringBuilder();
        foreach (var n in names.Take(4)) sb.Append(sb.Length == 0 ? "" : ", ").Append(n);
        if (names.Count > 4) sb.Append($" and {names.Count - 4} more");
        return sb.ToString();
    }

    /// <summary>Case-insensitive glob over a file name: * any run, ? one character.</summary>
    public static bool Glob(string pattern, string name)
    {
        int p = 0, n = 0, star = -1, mark = 0;
        while (n < name.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || char.ToLowerInvariant(pattern[p]) == char.ToLowerInvariant(name[n]))) { p++; n++; }
            else if (p < pattern.Length && pattern[p] == '*') { star = p++; mark = n; }
            else if (star >= 0) { p = star + 1; n = ++mark; }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}
