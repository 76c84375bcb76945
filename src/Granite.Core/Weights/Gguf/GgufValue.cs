namespace Granite.Core.Weights.Gguf;

/// <summary>
/// One GGUF metadata value: a scalar, a string, or an array of one element type. <see cref="Value"/> holds a
/// <c>uint</c>/<c>int</c>/<c>ulong</c>/<c>long</c>/<c>float</c>/<c>double</c>/<c>bool</c>/<c>string</c> (or smaller
/// integers) for scalars, and a typed array (<c>int[]</c>, <c>string[]</c>, ...) for arrays.
/// </summary>
internal sealed record GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public static GgufValue U32(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue I32(int v) => new(GgufValueType.Int32, v);
    public static GgufValue U64(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue F32(float v) => new(GgufValueType.Float32, v);
    public static GgufValue F64(double v) => new(GgufValueType.Float64, v);
    public static GgufValue Bool(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Str(string v) => new(GgufValueType.String, v);
    public static GgufValue I32Array(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);
    public static GgufValue U32Array(uint[] v) => new(GgufValueType.Array, v, GgufValueType.UInt32);
    public static GgufValue F32Array(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);
    public static GgufValue StrArray(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);

    /// <summary>Number of elements of an array value (1 for scalars).</summary>
    public long Count => Value is Array a ? a.LongLength : 1;

    /// <summary>The value as an unsigned 32-bit integer when it is a non-negative integer scalar that fits; otherwise null.</summary>
    public uint? AsUInt32() => Value switch
    {
        uint u => u,
        int i when i >= 0 => (uint)i,
        ulong ul when ul <= uint.MaxValue => (uint)ul,
        long l when l >= 0 && l <= uint.MaxValue => (uint)l,
        ushort us => us,
        short s when s >= 0 => (uint)s,
        byte b => b,
        sbyte sb when sb >= 0 => (uint)sb,
        _ => null,
    };

    /// <summary>The value as a double when it is a numeric scalar; otherwise null.</summary>
    public double? AsDouble() => Value switch
    {
        float f => f,
        double d => d,
        _ when Type != GgufValueType.Bool && Type != GgufValueType.String && Type != GgufValueType.Array && AsInt64() is long l => l,
        _ => null,
    };

    /// <summary>The value as a signed 64-bit integer when it is an integer scalar that fits; otherwise null.</summary>
    public long? AsInt64() => Value switch
    {
        uint u => u,
        int i => i,
        ulong ul when ul <= long.MaxValue => (long)ul,
        long l => l,
        ushort us => us,
        short s => s,
        byte b => b,
        sbyte sb => sb,
        _ => null,
    };

    /// <summary>Short description for error messages.</summary>
    public string Describe() => Type == GgufValueType.Array ? $"array of {Count} {ElementType}" : $"{Type} {Value}";
}
