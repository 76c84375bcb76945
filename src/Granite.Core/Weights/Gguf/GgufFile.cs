using System.Buffers.Binary;
using System.Text;
using Granite.Core.Diagnostics;
using static TorchSharp.torch;

namespace Granite.Core.Weights.Gguf;

/// <summary>One tensor of a GGUF file.</summary>
/// <param name="Name">GGUF name.</param>
/// <param name="Type">Element type.</param>
/// <param name="Shape">Row-major shape (the reverse of the file's ggml <c>ne</c> order).</param>
/// <param name="Offset">Absolute byte offset of the data in the file.</param>
/// <param name="ByteLength">Bytes of data.</param>
internal sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Shape, long Offset, long ByteLength)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A GGUF v3 (little-endian) file, memory-mapped copy-on-write, with strictly validated header: magic and version, key
/// and string lengths within the file, known value and tensor types, no duplicate keys or tensor names, at most 4
/// dimensions, the innermost dimension a multiple of the type's block size, data offsets aligned, in bounds and not
/// overlapping. Every problem raises <see cref="InvalidDataException"/> naming the file and the key or tensor.
/// </summary>
/// <remarks>Lifetime as <see cref="SafetensorsCheckpoint"/>: tensors from <see cref="GetTensor"/> are zero-copy views
/// (read-only by contract) that keep the mapping alive after <see cref="Dispose"/>.</remarks>
internal sealed class GgufFile : MappedFile, IDisposable
{
    private readonly Dictionary<string, GgufValue> _kv;
    private readonly Dictionary<string, GgufTensorInfo> _byName;
    private int _disposed;

    private GgufFile(string path, FileStream fs, GgufHeader h) : base(path, fs)
    {
        Version = h.Version;
        Alignment = h.Alignment;
        DataStart = h.DataStart;
        Metadata = h.Metadata;
        Tensors = h.Tensors;
        _kv = h.Metadata.ToDictionary(k => k.Key, k => k.Value, StringComparer.Ordinal);
        _byName = h.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>File format version (3).</summary>
    public uint Version { get; }

    /// <summary>Data alignment (<c>general.alignment</c> or 32).</summary>
    public int Alignment { get; }

    /// <summary>Absolute offset of the data section.</summary>
    public long DataStart { get; }

    /// <summary>Metadata in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata { get; }

    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    /// <summary>Whether <paramref name="path"/> is a file that starts with the GGUF magic (any extension, e.g. an Ollama blob).</summary>
    public static bool HasMagic(string path)
    {
        if (!File.Exists(path)) return false;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1);
            Span<byte> b = stackalloc byte[4];
            return fs.Read(b) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(b) == Gguf.Magic;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Opens, validates and maps a GGUF file. Nothing stays mapped when validation fails.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not a valid GGUF v3 file; the message names the file and the key or tensor.</exception>
    public static GgufFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new FileNotFoundException($"GGUF file not found: {full}", full);
        var fs = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, FileOptions.RandomAccess);
        try
        {
            var header = GgufHeader.Read(fs, full);
            return new GgufFile(full, fs, header);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    /// <summary>Whether a key exists.</summary>
    public bool Contains(string key) => _kv.ContainsKey(key);

    /// <summary>The value of a key, or null.</summary>
    public GgufValue? Get(string key) => _kv.TryGetValue(key, out var v) ? v : null;

    /// <summary>A required string value.</summary>
    public string GetString(string key) =>
        Require(key).Value as string ?? throw new InvalidDataException($"{Path}: metadata '{key}' is {Require(key).Describe()}, expected a string");

    /// <summary>A required non-negative integer value that fits in 32 bits.</summary>
    public uint GetUInt32(string key) =>
        Require(key).AsUInt32() ?? throw new InvalidDataException($"{Path}: metadata '{key}' is {Require(key).Describe()}, expected an unsigned 32-bit integer");

    /// <summary>A required non-negative integer value that fits in a signed 32-bit integer (sizes and counts).</summary>
    public int GetInt32(string key) =>
        Require(key).AsInt64() is long l && l >= 0 && l <= int.MaxValue
            ? (int)l
            : throw new InvalidDataException($"{Path}: metadata '{key}' is {Require(key).Describe()}, expected a non-negative integer below 2^31");

    /// <summary>A required numeric value.</summary>
    public double GetDouble(string key) =>
        Require(key).AsDouble() ?? throw new InvalidDataException($"{Path}: metadata '{key}' is {Require(key).Describe()}, expected a number");

    /// <summary>A required value.</summary>
    public GgufValue Require(string key) =>
        _kv.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"{Path}: metadata '{key}' is missing");

    /// <summary>Whether a tensor exists.</summary>
    public bool ContainsTensor(string name) => _byName.ContainsKey(name);

    /// <summary>A tensor's header information.</summary>
    public GgufTensorInfo GetInfo(string name) =>
        _byName.TryGetValue(name, out var t) ? t : throw new InvalidDataException($"{Path}: tensor '{name}' is missing");

    /// <summary>
    /// The tensor's values in row-major shape: a zero-copy view for F32/F16/BF16 and, as a first step for quantized
    /// files, a Float32 copy dequantized at load for the block types of <see cref="GgufQuantization.Dequantizer"/>.
    /// Other types raise <see cref="NotSupportedException"/> naming it.
    /// </summary>
    public Tensor GetTensor(string name)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var t = GetInfo(name);
        switch (t.Type)
        {
            case GgmlType.F32: return CreateTensorAt(t.Offset, t.Shape, ScalarType.Float32, 4, t.ByteLength, t.Name);
            case GgmlType.F16: return CreateTensorAt(t.Offset, t.Shape, ScalarType.Float16, 2, t.ByteLength, t.Name);
            case GgmlType.BF16: return CreateTensorAt(t.Offset, t.Shape, ScalarType.BFloat16, 2, t.ByteLength, t.Name);
            default:
                if (GgufQuantization.Dequantizer(t.Type) is { } dequantizeRow) return Dequantize(t, dequantizeRow);
                throw new NotSupportedException($"{Path}: tensor '{name}' has type {t.Type}, which this reader does not run ({GgufQuantization.ReadableTypes})");
        }
    }

    /// <summary>Whether <paramref name="type"/> is a block format the quantized kernels run in place (Q8_0, Q4_0, Q4_K, Q5_K,
    /// Q6_K; other readable block types, e.g. llama.cpp's Q5_0 fallback, are dequantized at load).</summary>
    public static bool IsQuantized(GgmlType type) => Kernels.Quant.QuantFormat.IsQuantType((uint)type);

    /// <summary>A Float32 copy of a block-quantized tensor, dequantized in runs of whole blocks (rows are runs of blocks).</summary>
    private unsafe Tensor Dequantize(GgufTensorInfo t, GgufDequantizeRow dequantizeRow)
    {
        var (be, bb) = Gguf.BlockLayout(t.Type);
        long blocks = t.ByteLength / bb;
        var result = empty(t.Shape, dtype: ScalarType.Float32);
        float* dst = (float*)TorchNative.DataPointer(result);
        const int chunk = 1 << 14;
        for (long b0 = 0; b0 < blocks; b0 += chunk)
        {
            int n = (int)Math.Min(chunk, blocks - b0);
            dequantizeRow(Span(t.Offset + b0 * bb, n * bb), new Span<float>(dst + b0 * be, n * be));
        }
        return result;
    }

    /// <summary>
    /// A quantized tensor as blocks in place (zero-copy: the weight points into the mapping, which it keeps alive until it
    /// is disposed). <paramref name="second"/>: a tensor of the same type whose rows follow this one's in each matrix
    /// (<c>ffn_up*</c> after <c>ffn_gate*</c>), giving one [.., rows + rows2, K] weight without a copy.
    /// </summary>
    /// <exception cref="NotSupportedException">The tensor's type is not a block format the kernels run.</exception>
    public unsafe Kernels.Quant.QuantizedWeight GetQuantized(string name, string? second = null)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var t = GetInfo(name);
        if (!IsQuantized(t.Type)) throw new NotSupportedException($"{Path}: tensor '{name}' has type {t.Type}, not a quantized block format");
        var type = (Kernels.Quant.QuantType)(uint)t.Type;
        var u = second is null ? null : GetInfo(second);
        if (u is not null && (u.Type != t.Type || !u.Shape.SequenceEqual(t.Shape)))
            throw new InvalidDataException($"{Path}: tensors '{name}' ({t.Type} [{string.Join(",", t.Shape)}]) and '{second}' ({u.Type} [{string.Join(",", u.Shape)}]) must share type and shape");
        if (!TryAddRef()) throw new ObjectDisposedException(GetType().Name, $"{Path} is no longer mapped");
        var lease = new Lease(this);
        try
        {
            byte* b = (byte*)BaseAddress;
            if (u is null) return Kernels.Quant.QuantizedWeight.FromMemory(type, t.Shape, b + t.Offset, t.ByteLength, lease);
            var shape = (long[])t.Shape.Clone();
            shape[^2] *= 2;
            return Kernels.Quant.QuantizedWeight.FromMemory(type, shape, b + t.Offset, b + u.Offset, t.Shape[^2], lease);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary>One reference on the mapping, released once.</summary>
    private sealed class Lease(MappedFile file) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) file.Release();
        }
    }

    /// <summary>Releases the file's hold on the mapping (tensors already handed out keep theirs).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Release();
    }

    /// <summary>The parsed and validated header.</summary>
    private sealed record GgufHeader(uint Version, int Alignment, long DataStart, IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata, IReadOnlyList<GgufTensorInfo> Tensors)
    {
        private const int MaxDims = 4;
        private const int MaxTensorNameBytes = 63;
        private const long MaxStringBytes = 1L << 30;

        public static GgufHeader Read(FileStream fs, string path)
        {
            long length = fs.Length;
            var r = new Reader(fs, path, length);
            if (length < 24) throw r.Error($"is {length} bytes, too short for a GGUF header");
            uint magic = r.U32("magic");
            if (magic != Gguf.Magic) throw r.Error($"is not a GGUF file (magic 0x{magic:X8}, expected 0x{Gguf.Magic:X8} \"GGUF\")");
            uint version = r.U32("version");
            if (version != Gguf.Version) throw r.Error($"has GGUF version {version}; only version {Gguf.Version} is supported");
            ulong nTensors = r.U64("tensor count"), nKv = r.U64("metadata count");
            // Every key/value needs at least 12 bytes and every tensor info at least 24: reject absurd counts before allocating.
            if (nKv > (ulong)(length / 12)) throw r.Error($"declares {nKv} metadata entries, more than the file can hold");
            if (nTensors > (ulong)(length / 24)) throw r.Error($"declares {nTensors} tensors, more than the file can hold");

            var kv = new List<KeyValuePair<string, GgufValue>>((int)Math.Min(nKv, 4096));
            var keys = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < nKv; i++)
            {
                string key = r.Str($"metadata key #{i}");
                if (key.Length == 0) throw r.Error($"has an empty metadata key (#{i})");
                if (!keys.Add(key)) throw r.Error($"has metadata '{key}' twice");
                kv.Add(new(key, r.Value(key)));
            }
            int alignment = Gguf.DefaultAlignment;
            var align = kv.FirstOrDefault(k => k.Key == Gguf.General.Alignment).Value;
            if (align is not null)
            {
                if (align.Type != GgufValueType.UInt32 || align.AsUInt32() is not uint a || a == 0 || (a & (a - 1)) != 0 || a > (1 << 20))
                    throw r.Error($"metadata '{Gguf.General.Alignment}' is {align.Describe()}, expected a power-of-two uint32");
                alignment = (int)a;
            }

            var infos = new List<(string Name, GgmlType Type, long[] Shape, ulong Offset, long Bytes)>((int)Math.Min(nTensors, 4096));
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (ulong i = 0; i < nTensors; i++)
            {
                string name = r.Str($"tensor name #{i}");
                // ggml's GGML_MAX_NAME (64, with the terminating NUL): llama.cpp refuses longer names.
                if (name.Length == 0 || Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
                    throw r.Error($"tensor #{i} has a name of {Encoding.UTF8.GetByteCount(name)} bytes (1..{MaxTensorNameBytes} allowed): '{ErrorText.Excerpt(name)}'");
                if (!names.Add(name)) throw r.Error($"has tensor '{name}' twice");
                uint nDims = r.U32($"tensor '{name}' dimension count");
                if (nDims == 0 || nDims > MaxDims) throw r.Error($"tensor '{name}' has {nDims} dimensions (1..{MaxDims} allowed)");
                var ne = new long[nDims];
                for (int d = 0; d < nDims; d++)
                {
                    ulong v = r.U64($"tensor '{name}' dimension {d}");
                    if (v == 0 || v > long.MaxValue / 2) throw r.Error($"tensor '{name}' has dimension {d} = {v}");
                    ne[d] = (long)v;
                }
                uint rawType = r.U32($"tensor '{name}' type");
                var type = (GgmlType)rawType;
                if (!Enum.IsDefined(type) || Gguf.BlockLayout(type).BlockElements == 0)
                    throw r.Error(Gguf.KnownTypeName(rawType) is string known
                        ? $"tensor '{name}' has ggml type {rawType} ({known}), which this reader does not support"
                        : $"tensor '{name}' has unknown ggml type {rawType}");
                ulong offset = r.U64($"tensor '{name}' offset");
                var shape = ne.Reverse().ToArray();
                long bytes;
                try { bytes = Gguf.ByteCount(type, shape); }
                catch (OverflowException) { throw r.Error($"tensor '{name}' has a shape [{string.Join(",", shape)}] too large to address"); }
                if (bytes < 0) throw r.Error($"tensor '{name}' of type {type} has innermost dimension {ne[0]}, not a multiple of the block size {Gguf.BlockLayout(type).BlockElements}");
                if (offset % (ulong)alignment != 0) throw r.Error($"tensor '{name}' has offset {offset}, not a multiple of the alignment {alignment}");
                infos.Add((name, type, shape, offset, bytes));
            }
            long dataStart = Gguf.Align(fs.Position, alignment);
            if (dataStart > length && infos.Count > 0) throw r.Error($"ends inside the header (data would start at {dataStart}, file is {length} bytes)");
            long dataBytes = length - dataStart;
            var tensors = new List<GgufTensorInfo>(infos.Count);
            foreach (var (name, type, shape, offset, bytes) in infos)
            {
                if (offset > (ulong)dataBytes || (ulong)bytes > (ulong)dataBytes - offset)
                    throw r.Error($"tensor '{name}' data [{offset}, {offset + (ulong)bytes}) lies outside the data section ({dataBytes} bytes): truncated file or wrong offset");
                tensors.Add(new GgufTensorInfo(name, type, shape, dataStart + (long)offset, bytes));
            }
            var sorted = tensors.OrderBy(t => t.Offset).ToList();
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i].Offset < sorted[i - 1].Offset + sorted[i - 1].ByteLength)
                    throw r.Error($"tensors '{sorted[i - 1].Name}' and '{sorted[i].Name}' overlap");
            return new GgufHeader(version, alignment, dataStart, kv, tensors);
        }

        /// <summary>Bounds-checked little-endian reader over the header.</summary>
        private sealed class Reader(FileStream fs, string path, long length)
        {
            private readonly byte[] _buf = new byte[8];

            public InvalidDataException Error(string problem) => new($"{path}: {problem}");

            private ReadOnlySpan<byte> Take(int n, string what)
            {
                if (fs.Position + n > length) throw Error($"is truncated (reading {what} at byte {fs.Position})");
                fs.ReadExactly(_buf, 0, n);
                return _buf.AsSpan(0, n);
            }

            public uint U32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
            public ulong U64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

            public string Str(string what)
            {
                ulong n = U64(what + " length");
                if (n > (ulong)(length - fs.Position) || n > MaxStringBytes) throw Error($"{what} has length {n}, past the end of the file");
                var bytes = new byte[n];
                fs.ReadExactly(bytes);
                try { return new UTF8Encoding(false, true).GetString(bytes); }
                catch (DecoderFallbackException) { throw Error($"{what} is not valid UTF-8"); }
            }

            public GgufValue Value(string key)
            {
                uint rawType = U32($"metadata '{key}' type");
                var type = (GgufValueType)rawType;
                if (type == GgufValueType.Array)
                {
                    uint rawElem = U32($"metadata '{key}' element type");
                    var elem = (GgufValueType)rawElem;
                    if (!Enum.IsDefined(elem)) throw Error($"metadata '{key}' is an array of unknown type {rawElem}");
                    if (elem == GgufValueType.Array) throw Error($"metadata '{key}' is an array of arrays, which is not supported");
                    ulong count = U64($"metadata '{key}' element count");
                    long min = elem == GgufValueType.String ? 8 : ElementSize(elem);
                    if (count > (ulong)((length - fs.Position) / min)) throw Error($"metadata '{key}' declares {count} elements, past the end of the file");
                    if (count > (ulong)Array.MaxLength) throw Error($"metadata '{key}' declares {count} elements, more than an array can hold");
                    int n = (int)count;
                    string what = $"metadata '{key}'";
                    Array arr = elem switch
                    {
                        GgufValueType.String => Strings(n, what),
                        GgufValueType.Int32 => Bulk<int>(n, what),
                        GgufValueType.UInt32 => Bulk<uint>(n, what),
                        GgufValueType.Float32 => Bulk<float>(n, what),
                        GgufValueType.Bool => Bools(n, what),
                        GgufValueType.UInt8 => Bulk<byte>(n, what),
                        GgufValueType.Int8 => Bulk<sbyte>(n, what),
                        GgufValueType.UInt16 => Bulk<ushort>(n, what),
                        GgufValueType.Int16 => Bulk<short>(n, what),
                        GgufValueType.UInt64 => Bulk<ulong>(n, what),
                        GgufValueType.Int64 => Bulk<long>(n, what),
                        GgufValueType.Float64 => Bulk<double>(n, what),
                        _ => throw Error($"metadata '{key}' has element type {elem}"),
                    };
                    return new GgufValue(GgufValueType.Array, arr, elem);
                }
                if (!Enum.IsDefined(type)) throw Error($"metadata '{key}' has unknown value type {rawType}");
                return new GgufValue(type, Scalar(key, type));
            }

            private string[] Strings(int n, string what)
            {
                var a = new string[n];
                for (int i = 0; i < n; i++) a[i] = Str(what);
                return a;
            }

            /// <summary>An array of little-endian primitives read in one go (the count was checked against the file).</summary>
            private T[] Bulk<T>(int n, string what) where T : unmanaged
            {
                var a = new T[n];
                var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan());
                if (fs.Position + bytes.Length > length) throw Error($"is truncated (reading {what} at byte {fs.Position})");
                fs.ReadExactly(bytes);
                if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("GGUF files are read on little-endian hosts only");
                return a;
            }

            private bool[] Bools(int n, string what)
            {
                var raw = Bulk<byte>(n, what);
                var a = new bool[n];
                for (int i = 0; i < n; i++)
                    a[i] = raw[i] <= 1 ? raw[i] == 1 : throw Error($"{what} element {i} is a bool with byte value {raw[i]}");
                return a;
            }

            private static int ElementSize(GgufValueType t) => t switch
            {
                GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
                GgufValueType.UInt16 or GgufValueType.Int16 => 2,
                GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
                _ => 8,
            };

            private object Scalar(string key, GgufValueType t)
            {
                string what = $"metadata '{key}'";
                switch (t)
                {
                    case GgufValueType.UInt8: return Take(1, what)[0];
                    case GgufValueType.Int8: return (sbyte)Take(1, what)[0];
                    case GgufValueType.UInt16: return BinaryPrimitives.ReadUInt16LittleEndian(Take(2, what));
                    case GgufValueType.Int16: return BinaryPrimitives.ReadInt16LittleEndian(Take(2, what));
                    case GgufValueType.UInt32: return BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));
                    case GgufValueType.Int32: return BinaryPrimitives.ReadInt32LittleEndian(Take(4, what));
                    case GgufValueType.Float32: return BinaryPrimitives.ReadSingleLittleEndian(Take(4, what));
                    case GgufValueType.UInt64: return BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));
                    case GgufValueType.Int64: return BinaryPrimitives.ReadInt64LittleEndian(Take(8, what));
                    case GgufValueType.Float64: return BinaryPrimitives.ReadDoubleLittleEndian(Take(8, what));
                    case GgufValueType.Bool:
                        byte b = Take(1, what)[0];
                        return b <= 1 ? b == 1 : throw Error($"{what} is a bool with byte value {b}");
                    case GgufValueType.String: return Str(what);
                    default: throw Error($"{what} has value type {t}");
                }
            }
        }
    }
}
