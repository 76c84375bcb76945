using System.Text.Json;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>Description of one tensor in a safetensors file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Shape">Shape.</param>
/// <param name="FilePath">The shard file holding it.</param>
/// <param name="DataOffset">Absolute byte offset of the data in the file.</param>
/// <param name="ByteLength">Byte length of the data.</param>
internal sealed record SafetensorsTensorInfo(string Name, ScalarType DType, long[] Shape, string FilePath, long DataOffset, long ByteLength)
{
    /// <summary>Number of elements (product of <see cref="Shape"/>).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A Hugging Face safetensors checkpoint: <c>model.safetensors</c>, or <c>model.safetensors.index.json</c> plus shards.
/// Files are memory-mapped and <see cref="GetTensor(string)"/> returns zero-copy CPU views of the mapped bytes.
/// </summary>
/// <remarks>
/// <para>Headers are validated strictly when the checkpoint is opened (offsets in bounds, no overlaps, dtype × shape equals the
/// byte length, index consistent with the shards); any problem raises <see cref="InvalidDataException"/> naming the file
/// and the tensor.</para>
/// <para>Tensors are read-only by contract. Files are mapped copy-on-write, so an in-place operation never changes the
/// file, but it does change what later <see cref="GetTensor(string)"/> calls for that tensor return in this process.
/// Clone a tensor before mutating it.</para>
/// <para>Lifetime: every returned tensor keeps its file mapped until LibTorch frees its storage, so tensors (and modules
/// whose parameters alias them) stay valid after <see cref="Dispose"/>; the mapping goes away once the checkpoint is
/// disposed and the last such tensor is disposed. Methods of a disposed checkpoint throw <see cref="ObjectDisposedException"/>.
/// Thread-safe.</para>
/// </remarks>
internal sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>File name of a single-file checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>File name of the shard index.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, (MappedSafetensorsFile File, SafetensorsEntry Entry)> _tensors;
    private readonly List<MappedSafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsTensorInfo> _infos;
    private int _disposed;

    private SafetensorsCheckpoint(string source, List<MappedSafetensorsFile> files,
        Dictionary<string, (MappedSafetensorsFile File, SafetensorsEntry Entry)> tensors)
    {
        Source = source;
        _files = files;
        _tensors = tensors;
        _infos = tensors.ToDictionary(kv => kv.Key, kv => new SafetensorsTensorInfo(kv.Key, kv.Value.Entry.DType,
            kv.Value.Entry.Shape, kv.Value.File.Path, kv.Value.File.Header.DataStart + kv.Value.Entry.Begin, kv.Value.Entry.ByteLength),
            StringComparer.Ordinal);
        Metadata = files.Count == 1 ? files[0].Header.Metadata : files.SelectMany(f => f.Header.Metadata)
            .GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.First().Value);
    }

    /// <summary>The file or index the checkpoint was opened from.</summary>
    public string Source { get; }

    /// <summary>Names of all tensors.</summary>
    public IReadOnlyCollection<string> TensorNames => _tensors.Keys;

    /// <summary>Full paths of the safetensors files (one, or the shards in index order).</summary>
    public IReadOnlyList<string> Files => _files.Select(f => f.Path).ToList();

    /// <summary>The <c>__metadata__</c> strings of the file(s) (first shard wins on conflicts).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Total bytes of tensor data.</summary>
    public long TotalDataBytes => _infos.Values.Sum(i => i.ByteLength);

    /// <summary>
    /// Opens a checkpoint: a folder with <c>model.safetensors</c> (preferred, as in Hugging Face transformers) or
    /// <c>model.safetensors.index.json</c>; or directly a <c>.safetensors</c> file or an index <c>.json</c> file.
    /// </summary>
    /// <exception cref="FileNotFoundException">No checkpoint file found.</exception>
    /// <exception cref="InvalidDataException">A header or the index is invalid; the message names the file and tensor.</exception>
    public static SafetensorsCheckpoint Open(string modelDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDir);
        GraniteRuntime.EnsureLoaded();
        if (File.Exists(modelDir))
        {
            return modelDir.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(modelDir) : OpenSingle(modelDir);
        }
        if (!Directory.Exists(modelDir))
            throw new FileNotFoundException($"checkpoint folder or file '{modelDir}' does not exist", modelDir);
        var single = Path.Combine(modelDir, SingleFileName);
        if (File.Exists(single)) return OpenSingle(single);
        var index = Path.Combine(modelDir, IndexFileName);
        if (File.Exists(index)) return OpenIndex(index);
        throw new FileNotFoundException($"{Path.GetFullPath(modelDir)}: neither {SingleFileName} nor {IndexFileName} found", single);
    }

    private static SafetensorsCheckpoint OpenSingle(string file)
    {
        var f = MappedSafetensorsFile.Open(file);
        var tensors = new Dictionary<string, (MappedSafetensorsFile, SafetensorsEntry)>(StringComparer.Ordinal);
        foreach (var e in f.Header.Entries) tensors[e.Name] = (f, e);
        return new SafetensorsCheckpoint(f.Path, new List<MappedSafetensorsFile> { f }, tensors);
    }

    private static SafetensorsCheckpoint OpenIndex(string indexPath)
    {
        var index = Path.GetFullPath(indexPath);
        var dir = Path.GetDirectoryName(index)!;
        var weightMap = ReadWeightMap(index, dir);

        var files = new List<MappedSafetensorsFile>();
        try
        {
            var byShard = new Dictionary<string, MappedSafetensorsFile>(StringComparer.Ordinal);
            foreach (var (tensor, shard) in weightMap)
            {
                if (byShard.ContainsKey(shard)) continue;
                if (!File.Exists(shard))
                    throw new InvalidDataException($"{index}: tensor '{tensor}' maps to shard '{Path.GetFileName(shard)}', which does not exist");
                var f = MappedSafetensorsFile.Open(shard);
                files.Add(f);
                byShard[shard] = f;
            }

            var tensors = new Dictionary<string, (MappedSafetensorsFile, SafetensorsEntry)>(StringComparer.Ordinal);
            foreach (var f in files)
            {
                foreach (var e in f.Header.Entries)
                {
                    if (tensors.TryGetValue(e.Name, out var prior))
                        throw new InvalidDataException(
                            $"{index}: tensor '{e.Name}' is stored in two shards: '{Path.GetFileName(prior.Item1.Path)}' and '{Path.GetFileName(f.Path)}'");
                    tensors[e.Name] = (f, e);
                }
            }
            foreach (var (tensor, shard) in weightMap)
            {
                if (!tensors.TryGetValue(tensor, out var held) || held.Item1.Path != shard)
                    throw new InvalidDataException(
                        $"{index}: tensor '{tensor}' is mapped to shard '{Path.GetFileName(shard)}', but that shard does not contain it");
            }
            return new SafetensorsCheckpoint(index, files, tensors);
        }
        catch
        {
            foreach (var f in files) f.Release();
            throw;
        }
    }

    private static List<(string Tensor, string Shard)> ReadWeightMap(string index, string dir)
    {
        ReadOnlyMemory<byte> bytes = Granite.Core.Diagnostics.CheckedFile.ReadAllBytes(index);
        if (bytes.Span.StartsWith("\uFEFF"u8)) bytes = bytes[3..]; // tolerate a UTF-8 byte order mark
        if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
            throw new InvalidDataException($"{index}: not valid JSON (invalid UTF-8)");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{index}: {Granite.Core.Diagnostics.ErrorText.JsonSyntax(ex)}", ex);
        }
        using (doc)
        {
            try
            {
                return ReadWeightMap(doc.RootElement, index, dir);
            }
            catch (InvalidOperationException ex)
            {
                throw new InvalidDataException($"{index}: weight_map has a tensor or shard name that is not valid text (an escaped unpaired surrogate such as \\ud800)", ex);
            }
        }
    }

    private static List<(string Tensor, string Shard)> ReadWeightMap(JsonElement root, string index, string dir)
    {
        static string E(string? s) => Granite.Core.Diagnostics.ErrorText.Excerpt(s, 200);
        {
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{index}: must be a JSON object");
            if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{index}: weight_map is missing or not an object");
            var dirPrefix = Path.TrimEndingDirectorySeparator(dir) + Path.DirectorySeparatorChar;
            var list = new List<(string, string)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (!seen.Add(p.Name))
                    throw new InvalidDataException($"{index}: tensor '{E(p.Name)}' appears twice in weight_map");
                if (p.Value.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(p.Value.GetString()))
                    throw new InvalidDataException($"{index}: tensor '{E(p.Name)}': shard file name must be a non-empty string");
                if (p.Value.GetString()!.Contains('\0'))
                    throw new InvalidDataException($"{index}: tensor '{E(p.Name)}': shard file name '{E(p.Value.GetString())}' contains a NUL character");
                var shard = Path.GetFullPath(Path.Combine(dir, p.Value.GetString()!));
                if (!shard.StartsWith(dirPrefix, StringComparison.Ordinal))
                    throw new InvalidDataException($"{index}: tensor '{E(p.Name)}': shard '{E(p.Value.GetString())}' lies outside the checkpoint folder");
                list.Add((p.Name, shard));
            }
            if (list.Count == 0) throw new InvalidDataException($"{index}: weight_map is empty");
            return list;
        }
    }

    /// <summary>Whether a tensor exists.</summary>
    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>Header information of a tensor.</summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name) =>
        _infos.TryGetValue(name, out var i) ? i : throw new KeyNotFoundException($"{Source}: tensor '{name}' is not in the checkpoint");

    /// <summary>
    /// The tensor in its stored dtype on the CPU: a zero-copy view of the mapped file (read-only by contract).
    /// The caller owns (disposes) the returned tensor object; it stays valid after the checkpoint is disposed.
    /// </summary>
    /// <exception cref="KeyNotFoundException">No such tensor.</exception>
    /// <exception cref="ObjectDisposedException">The checkpoint was disposed.</exception>
    public Tensor GetTensor(string name)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!_tensors.TryGetValue(name, out var t))
            throw new KeyNotFoundException($"{Source}: tensor '{name}' is not in the checkpoint");
        return t.File.CreateTensor(t.Entry);
    }

    /// <summary>
    /// The tensor converted to <paramref name="dtype"/>: the zero-copy view when it is already stored so, otherwise a
    /// new owned tensor. The caller disposes the result.
    /// </summary>
    public Tensor GetTensor(string name, ScalarType dtype)
    {
        var t = GetTensor(name);
        if (t.dtype == dtype) return t;
        using (t) return t.to_type(dtype);
    }

    /// <summary>Compares the checkpoint's names with the names a model expects.</summary>
    /// <param name="expectedNames">Every tensor name the model can load.</param>
    /// <param name="isOptional">True for expected names that may be absent (e.g. a tied <c>lm_head.weight</c>).</param>
    public CheckpointReport Compare(IEnumerable<string> expectedNames, Func<string, bool> isOptional)
    {
        ArgumentNullException.ThrowIfNull(expectedNames);
        ArgumentNullException.ThrowIfNull(isOptional);
        var expected = new HashSet<string>(expectedNames, StringComparer.Ordinal);
        var missing = new List<string>();
        var missingOptional = new List<string>();
        foreach (var n in expected.Order(StringComparer.Ordinal))
        {
            if (_tensors.ContainsKey(n)) continue;
            (isOptional(n) ? missingOptional : missing).Add(n);
        }
        var unexpected = _tensors.Keys.Where(n => !expected.Contains(n)).Order(StringComparer.Ordinal).ToList();
        return new CheckpointReport(missing, missingOptional, unexpected);
    }

    /// <summary>Address of a tensor's first byte inside its mapped file (tests and diagnostics).</summary>
    internal IntPtr MappedAddressOf(string name)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var t = _tensors.TryGetValue(name, out var v) ? v : throw new KeyNotFoundException($"{Source}: tensor '{name}' is not in the checkpoint");
        return t.File.AddressOf(t.Entry);
    }

    /// <summary>Number of this checkpoint's files still mapped (by the checkpoint or by tensors it handed out).</summary>
    internal int MappedFileCount => _files.Count(f => f.IsMapped);

    /// <summary>Releases the checkpoint's hold on the mappings (tensors already handed out keep theirs).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var f in _files) f.Release();
    }
}
