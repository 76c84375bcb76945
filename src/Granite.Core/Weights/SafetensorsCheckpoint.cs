using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>Description of one tensor in a safetensors file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Stored element type.</param>
/// <param name="Shape">Shape.</param>
/// <param name="FilePath">The shard file holding it.</param>
/// <param name="DataOffset">Absolute byte offset of the data in the file.</param>
/// <param name="ByteLength">Byte length of the data.</param>
public sealed record SafetensorsTensorInfo(string Name, ScalarType DType, long[] Shape, string FilePath, long DataOffset, long ByteLength);

/// <summary>
/// A Hugging Face safetensors checkpoint (single file or index + shards). PROVISIONAL minimal reader: copies tensor bytes.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;

    private SafetensorsCheckpoint(Dictionary<string, SafetensorsTensorInfo> tensors) => _tensors = tensors;

    /// <summary>Names of all tensors.</summary>
    public IReadOnlyCollection<string> TensorNames => _tensors.Keys;

    /// <summary>Opens <c>model.safetensors</c> or <c>model.safetensors.index.json</c> in a folder.</summary>
    public static SafetensorsCheckpoint Open(string modelDir)
    {
        var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var index = Path.Combine(modelDir, "model.safetensors.index.json");
        IEnumerable<string> files;
        if (File.Exists(index))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            files = doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()!).Distinct().Select(f => Path.Combine(modelDir, f)).ToList();
        }
        else files = new[] { Path.Combine(modelDir, "model.safetensors") };
        foreach (var f in files) ReadHeader(f, tensors);
        return new SafetensorsCheckpoint(tensors);
    }

    private static void ReadHeader(string file, Dictionary<string, SafetensorsTensorInfo> into)
    {
        using var fs = File.OpenRead(file);
        var lenBytes = new byte[8];
        fs.ReadExactly(lenBytes);
        long n = BitConverter.ToInt64(lenBytes);
        var header = new byte[n];
        fs.ReadExactly(header);
        using var doc = JsonDocument.Parse(header);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            var dt = p.Value.GetProperty("dtype").GetString() switch
            {
                "F32" => ScalarType.Float32,
                "BF16" => ScalarType.BFloat16,
                "F16" => ScalarType.Float16,
                var other => throw new InvalidDataException($"{file}: tensor '{p.Name}' has unsupported dtype {other}"),
            };
            var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            into[p.Name] = new SafetensorsTensorInfo(p.Name, dt, shape, file, 8 + n + offs[0], offs[1] - offs[0]);
        }
    }

    /// <summary>Whether a tensor exists.</summary>
    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>Header information of a tensor.</summary>
    public SafetensorsTensorInfo GetInfo(string name) =>
        _tensors.TryGetValue(name, out var i) ? i : throw new KeyNotFoundException($"tensor '{name}' is not in the checkpoint");

    /// <summary>The tensor in its stored dtype on the CPU. The caller owns (disposes) the returned tensor.</summary>
    public Tensor GetTensor(string name)
    {
        var info = GetInfo(name);
        var bytes = new byte[info.ByteLength];
        using (var fs = File.OpenRead(info.FilePath))
        {
            fs.Position = info.DataOffset;
            fs.ReadExactly(bytes);
        }
        int count = (int)(info.ByteLength / (info.DType == ScalarType.Float32 ? 4 : 2));
        var floats = new float[count];
        for (int i = 0; i < count; i++)
        {
            floats[i] = info.DType switch
            {
                ScalarType.Float32 => BitConverter.ToSingle(bytes, 4 * i),
                ScalarType.BFloat16 => BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(bytes, 2 * i) << 16),
                _ => (float)BitConverter.ToHalf(bytes, 2 * i),
            };
        }
        using var t = torch.tensor(floats).reshape(info.Shape);
        return t.to_type(info.DType);
    }

    /// <inheritdoc />
    public void Dispose() { }
}
