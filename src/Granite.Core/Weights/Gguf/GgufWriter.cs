using System.Text;
using static TorchSharp.torch;

namespace Granite.Core.Weights.Gguf;

/// <summary>One tensor to write: its GGUF name, element type, row-major shape (outermost first, as in PyTorch; the file
/// stores the reverse, ggml's <c>ne</c> order) and a producer of its bytes.</summary>
/// <param name="Name">GGUF tensor name, e.g. <c>blk.0.ssm_in.weight</c>.</param>
/// <param name="Type">Stored element type.</param>
/// <param name="Shape">Row-major shape.</param>
/// <param name="Produce">Returns a CPU tensor whose raw bytes are the stored data (any dtype whose byte size matches:
/// e.g. a Float32 tensor for F32, BFloat16 for BF16, Byte for block types). Called once, while writing; the result is disposed.</param>
internal sealed record GgufTensorSpec(string Name, GgmlType Type, long[] Shape, Func<Tensor> Produce)
{
    /// <summary>Bytes of the stored data.</summary>
    public long ByteLength => Gguf.ByteCount(Type, Shape) is var n && n >= 0
        ? n
        : throw new ArgumentException($"tensor '{Name}': shape [{string.Join(",", Shape)}] does not fit type {Type}");
}

/// <summary>
/// Writes GGUF v3 files (little-endian): header, metadata in insertion order, tensor infos, then the tensor data, each
/// tensor aligned to <see cref="Gguf.DefaultAlignment"/> (or <c>general.alignment</c>). Tensors are produced and written one at a
/// time, so a multi-GB model converts in bounded memory. The file is written to a temporary name and renamed at the end.
/// </summary>
internal sealed class GgufWriter
{
    private readonly List<KeyValuePair<string, GgufValue>> _kv = new();
    private readonly Dictionary<string, int> _kvIndex = new(StringComparer.Ordinal);
    private readonly List<GgufTensorSpec> _tensors = new();
    private readonly HashSet<string> _tensorNames = new(StringComparer.Ordinal);

    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata => _kv;

    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<GgufTensorSpec> Tensors => _tensors;

    /// <summary>Sets a key. Setting an existing key replaces its value and keeps its position (as gguf-py's writer does,
    /// e.g. for the per-layer <c>head_count_kv</c> array written after the scalar).</summary>
    public void Set(string key, GgufValue value)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(value);
        if (_kvIndex.TryGetValue(key, out var i)) _kv[i] = new(key, value);
        else
        {
            _kvIndex[key] = _kv.Count;
            _kv.Add(new(key, value));
        }
    }

    /// <summary>Adds a tensor; names must be unique.</summary>
    public void AddTensor(GgufTensorSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (!_tensorNames.Add(spec.Name)) throw new ArgumentException($"duplicate tensor name '{spec.Name}'");
        _ = spec.ByteLength; // validates shape vs type
        _tensors.Add(spec);
    }

    private int Alignment => _kvIndex.TryGetValue(Gguf.General.Alignment, out var i) && _kv[i].Value.AsUInt32() is uint a && a > 0 && (a & (a - 1)) == 0
        ? (int)a : Gguf.DefaultAlignment;

    /// <summary>Writes the file. Returns the number of bytes written.</summary>
    public long Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var tmp = full + ".tmp";
        int alignment = Alignment;
        try
        {
            long total;
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                using (var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true))
                {
                    w.Write(Gguf.Magic);
                    w.Write(Gguf.Version);
                    w.Write((ulong)_tensors.Count);
                    w.Write((ulong)_kv.Count);
                    foreach (var kv in _kv)
                    {
                        WriteString(w, kv.Key);
                        WriteValue(w, kv.Key, kv.Value);
                    }
                    long offset = 0;
                    foreach (var t in _tensors)
                    {
                        WriteString(w, t.Name);
                        w.Write((uint)t.Shape.Length);
                        for (int d = t.Shape.Length - 1; d >= 0; d--) w.Write((ulong)t.Shape[d]);
                        w.Write((uint)t.Type);
                        w.Write((ulong)offset);
                        offset = Gguf.Align(offset + t.ByteLength, alignment);
                    }
                    w.Flush();
                }
                Pad(fs, alignment);
                foreach (var t in _tensors)
                {
                    WriteTensorData(fs, t);
                    Pad(fs, alignment);
                }
                total = fs.Length;
            }
            File.Move(tmp, full, overwrite: true);
            return total;
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private static void Pad(Stream s, int alignment)
    {
        long pad = Gguf.Align(s.Position, alignment) - s.Position;
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    private static unsafe void WriteTensorData(FileStream fs, GgufTensorSpec spec)
    {
        long len = spec.ByteLength;
        using var scope = NewDisposeScope();
        var t = spec.Produce();
        long actual = t.numel() * t.element_size();
        if (actual != len)
            throw new InvalidOperationException($"tensor '{spec.Name}': produced {actual} bytes ({t.dtype}[{string.Join(",", t.shape)}]), expected {len} for {spec.Type}[{string.Join(",", spec.Shape)}]");
        if (len == 0) return;
        var cpu = t.device_type == TorchSharp.DeviceType.CPU ? t : t.cpu();
        var c = cpu.contiguous();
        byte* p = (byte*)TorchNative.DataPointer(c);
        const int chunk = 1 << 30;
        for (long done = 0; done < len; done += chunk)
        {
            int n = (int)Math.Min(chunk, len - done);
            fs.Write(new ReadOnlySpan<byte>(p + done, n));
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, string key, GgufValue v)
    {
        w.Write((uint)v.Type);
        if (v.Type == GgufValueType.Array)
        {
            var a = v.Value as Array ?? throw new ArgumentException($"metadata '{key}': array value expected");
            w.Write((uint)v.ElementType);
            w.Write((ulong)a.LongLength);
            foreach (var e in a) WriteScalar(w, key, v.ElementType, e!);
        }
        else WriteScalar(w, key, v.Type, v.Value);
    }

    private static void WriteScalar(BinaryWriter w, string key, GgufValueType type, object value)
    {
        try
        {
            switch (type)
            {
                case GgufValueType.UInt8: w.Write(Convert.ToByte(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Int8: w.Write(Convert.ToSByte(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.UInt16: w.Write(Convert.ToUInt16(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Int16: w.Write(Convert.ToInt16(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.UInt32: w.Write(Convert.ToUInt32(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Int32: w.Write(Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.UInt64: w.Write(Convert.ToUInt64(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Int64: w.Write(Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Float32: w.Write(Convert.ToSingle(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Float64: w.Write(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                case GgufValueType.Bool: w.Write((bool)value ? (byte)1 : (byte)0); break;
                case GgufValueType.String: WriteString(w, (string)value); break;
                default: throw new ArgumentException($"metadata '{key}': cannot write a value of type {type}");
            }
        }
        catch (Exception ex) when (ex is InvalidCastException or OverflowException or FormatException)
        {
            throw new ArgumentException($"metadata '{key}': value {value} does not fit {type}", ex);
        }
    }
}
