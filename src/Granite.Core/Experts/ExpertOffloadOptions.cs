using System.Globalization;

namespace Granite.Core.Experts;

/// <summary>
/// Expert offload for MoE models (<see cref="Modeling.GraniteModelOptions.ExpertOffload"/>): the routed experts stay in the
/// memory-mapped checkpoint and only a hot set per layer is materialised in the compute dtype on the compute device,
/// bounded by a byte budget. Results are bit-identical to offload off. See docs/expert-offload.md.
/// </summary>
/// <remarks>
/// Defaults: <see cref="Off"/> (every expert is loaded like any other weight). When <see cref="Enabled"/> and neither
/// <see cref="BudgetBytes"/> nor <see cref="BudgetFraction"/> is set, the budget is <see cref="DefaultFraction"/> of the
/// expert bytes. The budget is split evenly over the MoE layers; <see cref="MaxResidentExpertsPerLayer"/> caps it further.
/// A budget below one expert per layer is rejected at load time; a budget below top-k experts per layer is allowed:
/// experts that find no free slot are streamed through a transient copy for that step.
/// </remarks>
public sealed record ExpertOffloadOptions
{
    /// <summary>Budget used when offload is enabled without an explicit budget: 25 % of the expert bytes.</summary>
    public const double DefaultFraction = 0.25;

    /// <summary>Offload disabled (the default).</summary>
    public static ExpertOffloadOptions Off { get; } = new();

    /// <summary>Whether experts are offloaded.</summary>
    public bool Enabled { get; init; }

    /// <summary>Resident budget in bytes (compute dtype) over all layers; takes precedence over <see cref="BudgetFraction"/>.</summary>
    public long? BudgetBytes { get; init; }

    /// <summary>Resident budget as a fraction (0, 1] of all expert bytes in the compute dtype.</summary>
    public double? BudgetFraction { get; init; }

    /// <summary>Upper bound of resident experts per layer (applied after the byte budget).</summary>
    public int? MaxResidentExpertsPerLayer { get; init; }

    /// <summary>
    /// Eviction policy; default <see cref="ExpertEvictionPolicy.LfuDecay"/> (higher hit rate than LRU at every partial
    /// budget in the benchmark, see docs/expert-offload.md).
    /// </summary>
    public ExpertEvictionPolicy Policy { get; init; } = ExpertEvictionPolicy.LfuDecay;

    /// <summary>Per-step decay of the use counts of <see cref="ExpertEvictionPolicy.LfuDecay"/>, in (0, 1]; default 0.95.</summary>
    public double LfuDecay { get; init; } = 0.95;

    /// <summary>Offload with a budget in bytes.</summary>
    public static ExpertOffloadOptions WithBudget(long bytes) => new() { Enabled = true, BudgetBytes = bytes };

    /// <summary>Offload with a budget as a fraction of the expert bytes.</summary>
    public static ExpertOffloadOptions WithFraction(double fraction) => new() { Enabled = true, BudgetFraction = fraction };

    /// <summary>
    /// Parses <c>off</c>, a byte count (<c>123456789</c>, optionally with a K/M/G suffix, powers of 1024) or a percentage
    /// of the expert bytes (<c>25%</c>).
    /// </summary>
    /// <exception cref="FormatException">The text is none of these, or the value is not positive.</exception>
    public static ExpertOffloadOptions Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var s = text.Trim();
        if (s.Equals("off", StringComparison.OrdinalIgnoreCase)) return Off;
        if (s.EndsWith('%'))
        {
            if (!double.TryParse(s[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var pct) || !(pct > 0) || pct > 100)
                throw new FormatException($"expert budget '{text}' must be a percentage in (0, 100]");
            return WithFraction(pct / 100);
        }
        long mult = 1;
        char last = s.Length > 0 ? char.ToUpperInvariant(s[^1]) : ' ';
        if (last is 'K' or 'M' or 'G')
        {
            mult = last switch { 'K' => 1L << 10, 'M' => 1L << 20, _ => 1L << 30 };
            s = s[..^1];
        }
        if (!long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n <= 0 || n > long.MaxValue / mult)
            throw new FormatException($"expert budget '{text}' must be 'off', a positive byte count (optionally K/M/G) or a percentage like 25%");
        return WithBudget(n * mult);
    }

    /// <summary>Checks the values; throws <see cref="ArgumentException"/> naming the property.</summary>
    public void Validate()
    {
        if (BudgetBytes is <= 0) throw new ArgumentException($"ExpertOffload.BudgetBytes must be positive (got {BudgetBytes}).");
        if (BudgetFraction is { } f && !(f > 0 && f <= 1)) throw new ArgumentException($"ExpertOffload.BudgetFraction must be in (0, 1] (got {f}).");
        if (MaxResidentExpertsPerLayer is <= 0) throw new ArgumentException($"ExpertOffload.MaxResidentExpertsPerLayer must be positive (got {MaxResidentExpertsPerLayer}).");
        if (!(LfuDecay > 0 && LfuDecay <= 1)) throw new ArgumentException($"ExpertOffload.LfuDecay must be in (0, 1] (got {LfuDecay}).");
        if (!Enum.IsDefined(Policy)) throw new ArgumentException($"ExpertOffload.Policy {Policy} is not defined.");
    }

    /// <inheritdoc/>
    public override string ToString() => !Enabled ? "off"
        : BudgetBytes is { } b ? $"{b} bytes"
        : $"{(BudgetFraction ?? DefaultFraction) * 100:0.###}%";
}
