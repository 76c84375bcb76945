namespace Granite.Core.Constraints;

/// <summary>A compiled schema: the value is accepted if any branch accepts it (types, enum literals, anyOf alternatives).</summary>
internal sealed class SchemaNode
{
    public Branch[] Branches = Array.Empty<Branch>();
}

internal abstract class Branch
{
}

/// <summary>An object. Property names are kept as their canonical JSON string bytes (without quotes), sorted.</summary>
internal sealed class ObjectBranch : Branch
{
    /// <summary>Encoded names sorted by bytes; <see cref="Values"/>, <see cref="Declared"/> in the same order.</summary>
    public byte[][] Names = Array.Empty<byte[]>();
    public SchemaNode[] Values = Array.Empty<SchemaNode>();
    /// <summary>Declaration index of each sorted property (used when <see cref="Ordered"/>).</summary>
    public int[] Declared = Array.Empty<int>();
    public ulong Required;
    /// <summary>Schema of other properties; null = no other properties.</summary>
    public SchemaNode? Additional;
    /// <summary>Properties must appear in declaration order (tool-call envelopes: "name" before "arguments").</summary>
    public bool Ordered;
}

internal sealed class ArrayBranch : Branch
{
    public SchemaNode Items = null!;
    public int Min;
    public int Max = int.MaxValue;
}

internal sealed class StringBranch : Branch
{
    public int Min;
    public int Max = int.MaxValue;
}

internal sealed class NumberBranch : Branch
{
    public bool Integer;
    public decimal? Lo;
    public bool LoExclusive;
    public decimal? Hi;
    public bool HiExclusive;
    /// <summary>Most digits before the decimal point.</summary>
    public int IntDigits = 15;
    /// <summary>Most digits after the decimal point (0 for integers).</summary>
    public int FracDigits = 15;
    /// <summary>Exponent notation only without bounds (bounds are checked on plain decimals).</summary>
    public bool AllowExponent => !Integer && Lo is null && Hi is null;
}

/// <summary>One of a fixed set of exact byte strings (enum/const values in canonical compact JSON, true/false/null).</summary>
internal sealed class LiteralBranch : Branch
{
    /// <summary>Sorted by bytes, distinct.</summary>
    public byte[][] Literals = Array.Empty<byte[]>();
}
