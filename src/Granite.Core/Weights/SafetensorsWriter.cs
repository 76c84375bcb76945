using System.Text.Json;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>Name, dtype and shape of a tensor to write.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type (F32, BF16, F16, or another type safetensors can hold).</param>
/// <param name="Shape">Shape.</param>
internal sealed record SafetensorsTensorSpec(string Name, ScalarType DType, long[] Shape)
{
    /// <summary>Bytes of data.</summary>
    public long ByteLength => checked(Shape.Aggregate(1L, (a, b) => checked(a * b)) * SafetensorsDTypes.SizeOf(DType));
}

/// <summary>
/// Writes valid safetensors checkpoints (single file, or shards + <c>model.safetensors.index.json</c>), streaming one
/// tensor at a time to disk: the header is computed from names/dtypes/shapes alone, then each tensor's bytes are copied
/// straight from its (CPU, contiguous) storage. Used by tests and benchmarks to generate checkpoints.
/// </summary>
internal static class SafetensorsWriter
{
    /// <summary>Writes tensors the caller owns (not disposed here) to one file, in enumeration order.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var map = list.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        Write(path, list.Select(kv => SpecOf(kv.Key, kv.Value)).ToList(), s => map[s.Name], disposeProduced: false, metadata);
    }

    /// <summary>
    /// Writes one file whose tensors are produced lazily, one at a time (each is disposed after it is written), so
    /// files far larger than memory can be generated.
    /// </summary>
    public static void Write(string path, IReadOnlyList<SafetensorsTensorSpec> specs, Func<SafetensorsTensorSpec, Tensor> produce,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, specs, produce, disposeProduced: true, metadata);

    /// <summary>Writes caller-owned tensors as shards of at most <paramref name="maxShardBytes"/> data bytes each (a larger tensor gets its own shard) plus the index.</summary>
    /// <returns>Full paths of the shard files.</returns>
    public static IReadOnlyList<string> WriteSharded(string directory, IEnumerable<KeyValuePair<string, Tensor>> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var map = list.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        return WriteSharded(directory, list.Select(kv => SpecOf(kv.Key, kv.Value)).ToList(), s => map[s.Name], maxShardBytes, disposeProduced: false, metadata);
    }

    /// <summary>Writes lazily produced tensors (disposed after writing) as shards plus the index.</summary>
    /// <returns>Full paths of the shard files.</returns>
    public static IReadOnlyList<string> WriteSharded(string directory, IReadOnlyList<SafetensorsTensorSpec> specs, Func<SafetensorsTensorSpec, Tensor> produce,
        long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteSharded(directory, specs, produce, maxShardBytes, disposeProduced: true, metadata);

    /// <summary>The header bytes (JSON padded with spaces to a multiple of 8, as the reference writer does) for the specs in order.</summary>
    public static byte[] BuildHeader(IReadOnlyList<SafetensorsTensorSpec> specs, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata) w.WriteString(kv.Key, kv.Value);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var s in specs)
            {
                if (s.Name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor");
                if (!names.Add(s.Name)) throw new ArgumentException($"tensor '{s.Name}' is listed twice");
                if (s.Shape.Any(d => d < 0)) throw new ArgumentException($"tensor '{s.Name}' has a negative dimension");
                long len = s.ByteLength;
                w.WriteStartObject(s.Name);
                w.WriteString("dtype", SafetensorsDTypes.NameOf(s.DType));
                w.WriteStartArray("shape");
                foreach (var d in s.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + len);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += len;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private static SafetensorsTensorSpec SpecOf(string name, Tensor t) => new(name, t.dtype, t.shape);

    private static void Write(string path, IReadOnlyList<SafetensorsTensorSpec> specs, Func<SafetensorsTensorSpec, Tensor> produce,
        bool disposeProduced, IReadOnlyDictionary<string, string>? metadata)
    {
        var header = BuildHeader(specs, metadata);
        var tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> prefix = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            fs.Write(prefix);
            fs.Write(header);
            foreach (var s in specs)
            {
                var t = produce(s);
                try
                {
                    WriteData(fs, s, t);
                }
                finally
                {
                    if (disposeProduced) t.Dispose();
                }
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    private static unsafe void WriteData(FileStream fs, SafetensorsTensorSpec s, Tensor t)
    {
        if (t.dtype != s.DType || !t.shape.SequenceEqual(s.Shape))
            throw new ArgumentException($"tensor '{s.Name}' is {t.dtype}[{string.Join(",", t.shape)}], expected {s.DType}[{string.Join(",", s.Shape)}]");
        long len = s.ByteLength;
        if (len == 0) return;
        using var cpu = t.device_type == TorchSharp.DeviceType.CPU ? t.alias() : t.cpu();
        using var c = cpu.contiguous();
        byte* p = (byte*)TorchNative.DataPointer(c);
        const int chunk = 1 << 30;
        for (long done = 0; done < len; done += chunk)
        {
            int n = (int)Math.Min(chunk, len - done);
            fs.Write(new ReadOnlySpan<byte>(p + done, n));
        }
    }

    private static IReadOnlyList<string> WriteSharded(string directory, IReadOnlyList<SafetensorsTensorSpec> specs, Func<SafetensorsTensorSpec, Tensor> produce,
        long maxShardBytes, bool disposeProduced, IReadOnlyDictionary<string, string>? metadata)
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), "must be positive");
        Directory.CreateDirectory(directory);
        var groups = new List<List<SafetensorsTensorSpec>>();
        long current = 0;
        foreach (var s in specs)
        {
            long len = s.ByteLength;
            if (groups.Count == 0 || (groups[^1].Count > 0 && current + len > maxShardBytes))
            {
                groups.Add(new List<SafetensorsTensorSpec>());
                current = 0;
            }
            groups[^1].Add(s);
            current += len;
        }
        if (groups.Count == 0) groups.Add(new List<SafetensorsTensorSpec>());

        var paths = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int k = 0; k < groups.Count; k++)
        {
            var fileName = $"model-{k + 1:D5}-of-{groups.Count:D5}.safetensors";
            var path = Path.GetFullPath(Path.Combine(directory, fileName));
            Write(path, groups[k], produce, disposeProduced, metadata);
            foreach (var s in groups[k]) weightMap[s.Name] = fileName;
            paths.Add(path);
        }

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", specs.Sum(s => s.ByteLength));
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var kv in weightMap) w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        File.WriteAllBytes(Path.Combine(directory, SafetensorsCheckpoint.IndexFileName), ms.ToArray());
        return paths;
    }
}
