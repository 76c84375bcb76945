using System.Buffers.Binary;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.State;

/// <summary>
/// An immutable, compact copy of an <see cref="InferenceState"/>: conv window and SSM state per Mamba layer, the keys and
/// values per attention layer trimmed to the cached length (no spare capacity), and the token ids covered.
/// Never handed out for mutation: <see cref="Restore"/> copies it into a fresh working state.
/// </summary>
internal sealed class StateSnapshot : IDisposable
{
    private const uint Magic = 0x54535247; // "GRST"
    private const int Version = 1;

    private readonly Tensor?[] _conv, _ssm, _keys, _values;
    private bool _disposed;

    private StateSnapshot(int[] tokens, Tensor?[] conv, Tensor?[] ssm, Tensor?[] keys, Tensor?[] values)
    {
        Tokens = tokens;
        _conv = conv;
        _ssm = ssm;
        _keys = keys;
        _values = values;
        long bytes = 0;
        foreach (var t in conv.Concat(ssm).Concat(keys).Concat(values)) if (t is not null) bytes += t.numel() * t.element_size();
        ByteSize = bytes;
    }

    /// <summary>The token ids the snapshot covers.</summary>
    public int[] Tokens { get; }

    /// <summary>Number of tokens covered.</summary>
    public int Length => Tokens.Length;

    /// <summary>Whether <see cref="Dispose"/> was called (the tensors are released).</summary>
    public bool IsDisposed => _disposed;

    /// <summary>Bytes held by the snapshot's tensors.</summary>
    public long ByteSize { get; }

    /// <summary>Device the tensors live on.</summary>
    public DeviceType DeviceType
    {
        get
        {
            foreach (var t in _conv.Concat(_keys)) if (t is not null) return t.device_type;
            return DeviceType.CPU;
        }
    }

    /// <summary>Copies <paramref name="state"/> (KV trimmed to its length; SSM state converted to <paramref name="dtype"/>).</summary>
    public static StateSnapshot Capture(InferenceState state, SnapshotStateDtype dtype = SnapshotStateDtype.Float32)
    {
        state.ThrowIfDisposed();
        int n = state.Mamba.Length;
        var conv = new Tensor?[n];
        var ssm = new Tensor?[n];
        var keys = new Tensor?[n];
        var values = new Tensor?[n];
        try
        {
            using var _ = torch.no_grad();
            for (int i = 0; i < n; i++)
            {
                if (state.Mamba[i] is { } m)
                {
                    conv[i] = m.Conv.clone().DetachFromDisposeScope();
                    ssm[i] = (dtype == SnapshotStateDtype.BFloat16 ? m.Ssm.to_type(ScalarType.BFloat16) : m.Ssm.clone()).DetachFromDisposeScope();
                }
                else if (state.Attention[i] is { Length: > 0 } a)
                {
                    using var k = a.Keys;
                    using var v = a.Values;
                    using var kc = k.contiguous();
                    using var vc = v.contiguous();
                    keys[i] = kc.clone().DetachFromDisposeScope();
                    values[i] = vc.clone().DetachFromDisposeScope();
                }
            }
        }
        catch
        {
            foreach (var t in conv.Concat(ssm).Concat(keys).Concat(values)) t?.Dispose();
            throw;
        }
        return new StateSnapshot(state.Tokens.ToArray(), conv, ssm, keys, values);
    }

    /// <summary>Copies the snapshot into a fresh state of <paramref name="model"/> (the snapshot stays unchanged).</summary>
    /// <exception cref="InvalidOperationException">The snapshot's layer layout does not match the model.</exception>
    public InferenceState Restore(Modeling.GraniteModel model)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var state = model.CreateState();
        try
        {
            if (state.Mamba.Length != _conv.Length)
                throw new InvalidOperationException($"Snapshot has {_conv.Length} layers; the model has {state.Mamba.Length}.");
            using var _ = torch.no_grad();
            for (int i = 0; i < _conv.Length; i++)
            {
                if (state.Mamba[i] is { } m)
                {
                    if (_conv[i] is null || _ssm[i] is null) throw new InvalidOperationException($"Snapshot layer {i} is not a Mamba layer.");
                    m.Conv.copy_(_conv[i]!); // in-place: TorchSharp returns the same tensor object
                    m.Ssm.copy_(_ssm[i]!); // converts a BF16 snapshot back to float32
                }
                else if (_keys[i] is { } k)
                {
                    var a = state.Attention[i] ?? throw new InvalidOperationException($"Snapshot layer {i} is not an attention layer.");
                    a.Append(k, _values[i]!);
                }
            }
            state.AppendTokens(Tokens);
            return state;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    /// <summary>A copy on <paramref name="device"/> (e.g. host memory for a device-resident snapshot).</summary>
    public StateSnapshot MoveTo(Device device)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        static Tensor?[] Move(Tensor?[] a, Device d) => a.Select(t => t?.to(d).DetachFromDisposeScope()).ToArray();
        return new StateSnapshot(Tokens, Move(_conv, device), Move(_ssm, device), Move(_keys, device), Move(_values, device));
    }

    /// <summary>Writes the snapshot to <paramref name="path"/> (raw tensor bytes with a small binary header); returns the file length.</summary>
    public unsafe long WriteTo(string path)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        using (var w = new BinaryWriter(fs))
        {
            w.Write(Magic);
            w.Write(Version);
            w.Write(Tokens.Length);
            foreach (var t in Tokens) w.Write(t);
            w.Write(_conv.Length);
            foreach (var arr in new[] { _conv, _ssm, _keys, _values })
            {
                foreach (var t in arr)
                {
                    if (t is null) { w.Write((sbyte)-1); continue; }
                    w.Write((sbyte)t.dtype);
                    w.Write(t.shape.Length);
                    foreach (var d in t.shape) w.Write(d);
                    using var cpu = t.device_type == DeviceType.CPU ? t.alias() : t.cpu();
                    using var c = cpu.contiguous();
                    long len = c.numel() * c.element_size();
                    byte* p = (byte*)TorchNative.DataPointer(c);
                    for (long done = 0; done < len; done += 1 << 30)
                        w.Write(new ReadOnlySpan<byte>(p + done, (int)Math.Min(1 << 30, len - done)));
                }
            }
        }
        File.Move(tmp, path, overwrite: true);
        return new FileInfo(path).Length;
    }

    /// <summary>Reads a snapshot written by <see cref="WriteTo"/> onto <paramref name="device"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a snapshot file or is truncated; the message names it.</exception>
    public static unsafe StateSnapshot ReadFrom(string path, Device device)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        using var r = new BinaryReader(fs);
        var created = new List<Tensor>();
        try
        {
            if (r.ReadUInt32() != Magic || r.ReadInt32() != Version) throw new InvalidDataException($"'{path}' is not a Granite session snapshot file.");
            int nTokens = r.ReadInt32();
            if (nTokens < 0) throw new InvalidDataException($"'{path}': negative token count.");
            var tokens = new int[nTokens];
            for (int i = 0; i < nTokens; i++) tokens[i] = r.ReadInt32();
            int layers = r.ReadInt32();
            if (layers is < 0 or > 100_000) throw new InvalidDataException($"'{path}': invalid layer count {layers}.");
            var arrays = new Tensor?[4][];
            for (int a = 0; a < 4; a++)
            {
                arrays[a] = new Tensor?[layers];
                for (int i = 0; i < layers; i++)
                {
                    sbyte dt = r.ReadSByte();
                    if (dt == -1) continue;
                    int rank = r.ReadInt32();
                    if (rank is < 0 or > 8) throw new InvalidDataException($"'{path}': invalid tensor rank {rank}.");
                    var shape = new long[rank];
                    for (int d = 0; d < rank; d++) shape[d] = r.ReadInt64();
                    var t = torch.empty(shape, (ScalarType)dt, CPU).DetachFromDisposeScope();
                    created.Add(t);
                    long len = t.numel() * t.element_size();
                    byte* p = (byte*)TorchNative.DataPointer(t);
                    for (long done = 0; done < len;)
                    {
                        int n = fs.Read(new Span<byte>(p + done, (int)Math.Min(1 << 30, len - done)));
                        if (n == 0) throw new InvalidDataException($"'{path}' is truncated.");
                        done += n;
                    }
                    arrays[a][i] = t;
                }
            }
            var snap = new StateSnapshot(tokens, arrays[0], arrays[1], arrays[2], arrays[3]);
            if (device.type == DeviceType.CPU) return snap;
            using (snap) return snap.MoveTo(device);
        }
        catch (EndOfStreamException ex)
        {
            foreach (var t in created) t.Dispose();
            throw new InvalidDataException($"'{path}' is truncated.", ex);
        }
        catch
        {
            foreach (var t in created) t.Dispose();
            throw;
        }
    }

    /// <summary>Releases the tensors.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _conv.Concat(_ssm).Concat(_keys).Concat(_values)) t?.Dispose();
    }
}
