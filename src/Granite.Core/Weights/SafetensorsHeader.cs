using System.Text.Json;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>One validated tensor entry of a safetensors header.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DTypeName">The dtype as spelled in the header (e.g. <c>BF16</c>).</param>
/// <param name="DType">The TorchSharp type.</param>
/// <param name="ElementSize">Bytes per element.</param>
/// <param name="Shape">Shape (each dimension ≥ 0).</param>
/// <param name="Begin">Start offset relative to the data section.</param>
/// <param name="End">End offset (exclusive) relative to the data section.</param>
internal sealed record SafetensorsEntry(string Name, string DTypeName, ScalarType DType, int ElementSize, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Byte length of the data.</summary>
    public long ByteLength => End - Begin;
}

/// <summary>Strict parser for the JSON header of one safetensors file.</summary>
internal sealed class SafetensorsHeader
{
    /// <summary>Upper bound on the header size (the reference implementation uses the same 100 MB limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private SafetensorsHeader(IReadOnlyList<SafetensorsEntry> entries, IReadOnlyDictionary<string, string> metadata, long headerLength)
    {
        Entries = entries;
        Metadata = metadata;
        HeaderLength = headerLength;
    }

    /// <summary>Tensor entries in header order.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    /// <summary>The <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Length of the JSON header in bytes (excluding the 8-byte length prefix).</summary>
    public long HeaderLength { get; }

    /// <summary>Absolute file offset of the data section.</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>Reads and validates the header of an open file.</summary>
    /// <exception cref="InvalidDataException">Any structural problem; the message names the file and the tensor.</exception>
    public static SafetensorsHeader Read(Stream stream, string file)
    {
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw new InvalidDataException($"{file}: not a safetensors file: {fileLength} bytes is shorter than the 8-byte header length prefix");
        Span<byte> prefix = stackalloc byte[8];
        stream.Position = 0;
        stream.ReadExactly(prefix);
        ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > (ulong)MaxHeaderBytes)
            throw new InvalidDataException($"{file}: header length {n} is larger than the {MaxHeaderBytes}-byte limit (corrupt length prefix?)");
        if ((long)n > fileLength - 8)
            throw new InvalidDataException($"{file}: header length {n} exceeds the file size ({fileLength} bytes; truncated file or corrupt length prefix)");
        if (n < 2)
            throw new InvalidDataException($"{file}: header length {n} is too small to hold a JSON object");
        var json = new byte[n];
        stream.ReadExactly(json);
        return Parse(json, fileLength - 8 - (long)n, file);
    }

    /// <summary>Validates header JSON against a data section of <paramref name="dataLength"/> bytes.</summary>
    public static SafetensorsHeader Parse(ReadOnlyMemory<byte> json, long dataLength, string file)
    {
        if (!System.Text.Unicode.Utf8.IsValid(json.Span))
            throw new InvalidDataException($"{file}: header is not valid JSON (invalid UTF-8)");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{file}: header is {Granite.Core.Diagnostics.ErrorText.JsonSyntax(ex)}", ex);
        }

        using (doc)
        {
            try
            {
                return ParseRoot(doc.RootElement, json.Length, dataLength, file);
            }
            catch (InvalidOperationException ex)
            {
                // JsonElement.GetString / JsonProperty.Name cannot represent an escaped unpaired surrogate.
                throw new InvalidDataException($"{file}: header has a tensor name or string that is not valid text (an escaped unpaired surrogate such as \\ud800)", ex);
            }
        }
    }

    private static SafetensorsHeader ParseRoot(JsonElement root, int headerLength, long dataLength, string file)
    {
        {
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{file}: header must be a JSON object, found {root.ValueKind}");

            var entries = new List<SafetensorsEntry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
            {
                if (!seen.Add(p.Name))
                    throw new InvalidDataException($"{file}: tensor '{Granite.Core.Diagnostics.ErrorText.Excerpt(p.Name, 200)}' appears twice in the header");
                if (p.Name == "__metadata__")
                {
                    ReadMetadata(p.Value, metadata, file);
                    continue;
                }
                entries.Add(ReadEntry(p.Name, p.Value, dataLength, file));
            }
            CheckOverlaps(entries, file);
            return new SafetensorsHeader(entries, metadata, headerLength);
        }
    }

    private static void ReadMetadata(JsonElement e, Dictionary<string, string> into, string file)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{file}: __metadata__ must be an object of strings, found {e.ValueKind}");
        foreach (var m in e.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{file}: __metadata__ value '{Granite.Core.Diagnostics.ErrorText.Excerpt(m.Name)}' must be a string, found {m.Value.ValueKind}");
            into[m.Name] = m.Value.GetString()!;
        }
    }

    private static SafetensorsEntry ReadEntry(string name, JsonElement e, long dataLength, string file)
    {
        string Where() => $"{file}: tensor '{Granite.Core.Diagnostics.ErrorText.Excerpt(name, 200)}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException($"{Where()}: entry must be an object with dtype, shape and data_offsets, found {e.ValueKind}");

        if (!e.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw new InvalidDataException($"{Where()}: dtype is missing or not a string");
        var dtypeName = dtypeEl.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype, out var elementSize))
            throw new InvalidDataException($"{Where()}: unknown dtype '{Granite.Core.Diagnostics.ErrorText.Excerpt(dtypeName)}' (supported: {string.Join(", ", SafetensorsDTypes.Names)})");

        if (!e.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{Where()}: shape is missing or not a list of non-negative integers");
        var shape = new long[shapeEl.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw new InvalidDataException($"{Where()}: shape must be a list of non-negative integers, found {Granite.Core.Diagnostics.ErrorText.Excerpt(d.GetRawText())} at position {i}");
            shape[i++] = v;
        }

        if (!e.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw new InvalidDataException($"{Where()}: data_offsets must be a list [begin, end]");
        var offs = new long[2];
        i = 0;
        foreach (var d in offEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw new InvalidDataException($"{Where()}: data_offsets must be non-negative integers [begin, end], found {Granite.Core.Diagnostics.ErrorText.Excerpt(d.GetRawText())}");
            offs[i++] = v;
        }
        long begin = offs[0], end = offs[1];
        if (begin > end)
            throw new InvalidDataException($"{Where()}: data_offsets [{begin}, {end}] have begin > end");
        if (end > dataLength)
            throw new InvalidDataException(
                $"{Where()}: data_offsets [{begin}, {end}] lie outside the data section of {dataLength} bytes (file truncated or offsets corrupt)");

        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (a, b) => checked(a * b)) * elementSize);
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{Where()}: shape [{string.Join(", ", shape)}] is too large (element count overflows)");
        }
        if (expected != end - begin)
            throw new InvalidDataException(
                $"{Where()}: byte length {end - begin} from data_offsets does not match dtype {dtypeName} × shape [{string.Join(", ", shape)}] = {expected} bytes");

        return new SafetensorsEntry(name, dtypeName, dtype, elementSize, shape, begin, end);
    }

    private static void CheckOverlaps(List<SafetensorsEntry> entries, string file)
    {
        var sorted = entries.Where(x => x.End > x.Begin).OrderBy(x => x.Begin).ThenBy(x => x.End).ToList();
        for (int k = 1; k < sorted.Count; k++)
        {
            var a = sorted[k - 1];
            var b = sorted[k];
            if (b.Begin < a.End)
                throw new InvalidDataException(
                    $"{file}: tensor '{Granite.Core.Diagnostics.ErrorText.Excerpt(b.Name, 200)}' data_offsets [{b.Begin}, {b.End}] overlap tensor '{Granite.Core.Diagnostics.ErrorText.Excerpt(a.Name, 200)}' [{a.Begin}, {a.End}]");
        }
    }
}
