using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>The safetensors dtype names this reader understands, with their TorchSharp type and element size.</summary>
internal static class SafetensorsDTypes
{
    private static readonly (string Name, ScalarType Type, int Size)[] Table =
    {
        ("F32", ScalarType.Float32, 4),
        ("BF16", ScalarType.BFloat16, 2),
        ("F16", ScalarType.Float16, 2),
        ("F64", ScalarType.Float64, 8),
        ("I64", ScalarType.Int64, 8),
        ("I32", ScalarType.Int32, 4),
        ("I16", ScalarType.Int16, 2),
        ("I8", ScalarType.Int8, 1),
        ("U8", ScalarType.Byte, 1),
        ("BOOL", ScalarType.Bool, 1),
    };

    /// <summary>All dtype names accepted in a header.</summary>
    public static IEnumerable<string> Names => Table.Select(t => t.Name);

    /// <summary>Looks up a header dtype name (case-sensitive, as the format requires).</summary>
    public static bool TryParse(string name, out ScalarType type, out int elementSize)
    {
        foreach (var t in Table)
        {
            if (t.Name == name)
            {
                type = t.Type;
                elementSize = t.Size;
                return true;
            }
        }
        type = default;
        elementSize = 0;
        return false;
    }

    /// <summary>The header name of a TorchSharp type.</summary>
    /// <exception cref="NotSupportedException">The type has no safetensors spelling here.</exception>
    public static string NameOf(ScalarType type)
    {
        foreach (var t in Table)
            if (t.Type == type) return t.Name;
        throw new NotSupportedException($"dtype {type} cannot be stored in safetensors by this writer");
    }

    /// <summary>Bytes per element of a TorchSharp type.</summary>
    public static int SizeOf(ScalarType type)
    {
        foreach (var t in Table)
            if (t.Type == type) return t.Size;
        throw new NotSupportedException($"dtype {type} is not supported");
    }
}
