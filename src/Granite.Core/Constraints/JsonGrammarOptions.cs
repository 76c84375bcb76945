using System.Diagnostics.CodeAnalysis;
using Granite.Core.Diagnostics;

namespace Granite.Core.Constraints;

/// <summary>Limits of the JSON grammar (all bounded so a model cannot pad or nest without end).</summary>
[Experimental(GraniteDiagnosticIds.ExperimentalConstraints, UrlFormat = GraniteDiagnosticIds.UrlFormat)]
public sealed record JsonGrammarOptions
{
    /// <summary>Most whitespace bytes (space or newline) between two JSON tokens. Default 1 (<c>{"a": 1, "b": [2]}</c>); 0 = compact.</summary>
    public int MaxWhitespace { get; init; } = 1;

    /// <summary>Deepest nesting of objects and arrays. Default 32; a schema that needs more is an error, and free
    /// values (any JSON) stop opening containers at this depth.</summary>
    public int MaxDepth { get; init; } = 32;

    /// <summary>Most digits of an <c>integer</c> (default 9: always fits a 32-bit int).</summary>
    public int MaxIntegerDigits { get; init; } = 9;

    /// <summary>Most digits before the decimal point of a <c>number</c> (default 15).</summary>
    public int MaxNumberDigits { get; init; } = 15;

    /// <summary>Most digits after the decimal point of a <c>number</c> (default 15).</summary>
    public int MaxFractionDigits { get; init; } = 15;

    /// <summary>When an object schema declares <c>properties</c> but says nothing about <c>additionalProperties</c>, also
    /// generate undeclared properties (default false: only declared ones, which still validates against the schema and
    /// keeps typed outputs to their members).</summary>
    public bool AllowUndeclaredProperties { get; init; }

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range (the parameter name is the option).</exception>
    public void Validate()
    {
        if (MaxWhitespace is < 0 or > 16) throw new ArgumentOutOfRangeException(nameof(MaxWhitespace), MaxWhitespace, "MaxWhitespace must be in [0, 16].");
        if (MaxDepth is < 1 or > 128) throw new ArgumentOutOfRangeException(nameof(MaxDepth), MaxDepth, "MaxDepth must be in [1, 128].");
        if (MaxIntegerDigits is < 1 or > 18) throw new ArgumentOutOfRangeException(nameof(MaxIntegerDigits), MaxIntegerDigits, "MaxIntegerDigits must be in [1, 18].");
        if (MaxNumberDigits is < 1 or > 18) throw new ArgumentOutOfRangeException(nameof(MaxNumberDigits), MaxNumberDigits, "MaxNumberDigits must be in [1, 18].");
        if (MaxFractionDigits is < 0 or > 18) throw new ArgumentOutOfRangeException(nameof(MaxFractionDigits), MaxFractionDigits, "MaxFractionDigits must be in [0, 18].");
    }
}
