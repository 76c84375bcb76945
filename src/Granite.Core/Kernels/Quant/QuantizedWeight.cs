using System.Runtime.InteropServices;
using Granite.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Kernels.Quant;

/// <summary>
/// A linear weight held as ggml blocks instead of a BF16/float32 tensor: <see cref="Rows"/> output rows of
/// <see cref="Cols"/> inputs each, every row <see cref="RowBytes"/> bytes of <see cref="Type"/> blocks, row-major from
/// <see cref="Data"/>. Routed experts are one weight of <see cref="Experts"/> × [Rows, Cols] with per-expert views
/// (<see cref="Expert"/>) over the same memory.
/// </summary>
/// <remarks>
/// The bytes live either in an owned native buffer (<see cref="Quantize"/>, freed by <see cref="Dispose"/>) or in memory
/// someone else owns, kept alive by a reference to its owner (<c>FromMemory</c>: e.g. blocks inside a memory-mapped GGUF
/// file, which is never written). Views (<see cref="Expert"/>) share the owner and own nothing.
/// </remarks>
internal sealed unsafe class QuantizedWeight : IDisposable
{
    private byte* _owned;
    private readonly IDisposable? _owner;

    private QuantizedWeight(QuantType type, int experts, long rows, long cols, byte* data, byte* owned, IDisposable? owner, byte* data2 = null, long splitRow = -1)
    {
        Type = type;
        Experts = experts;
        Rows = rows;
        Cols = cols;
        RowBytes = QuantFormat.RowBytes(type, cols);
        Data = data;
        Data2 = data2;
        SplitRow = data2 == null ? rows : splitRow;
        _owned = owned;
        _owner = owner;
    }

    /// <summary>
    /// Start of the second row segment (rows <see cref="SplitRow"/>.. of each matrix), or null when all rows follow
    /// <see cref="Data"/>. A GGUF stores a fused gate|up projection as two tensors (<c>ffn_gate*</c>, <c>ffn_up*</c>); the
    /// weight keeps both in place instead of copying them together.
    /// </summary>
    public byte* Data2 { get; }

    /// <summary>Rows of each matrix in the first segment (= <see cref="Rows"/> without a second segment).</summary>
    public long SplitRow { get; }

    /// <summary>First byte of row <paramref name="r"/> of a plain (non-expert) weight.</summary>
    public byte* RowPointer(long r) => r < SplitRow ? Data + r * RowBytes : Data2 + (r - SplitRow) * RowBytes;

    /// <summary>The block format.</summary>
    public QuantType Type { get; }

    /// <summary>Experts stacked in this weight (0: a plain [Rows, Cols] matrix).</summary>
    public int Experts { get; }

    /// <summary>Output rows (N) per matrix.</summary>
    public long Rows { get; }

    /// <summary>Inputs per row (K), a multiple of the block size.</summary>
    public long Cols { get; }

    /// <summary>Bytes per row.</summary>
    public long RowBytes { get; }

    /// <summary>First byte of the first row.</summary>
    public byte* Data { get; }

    /// <summary>Bytes of the whole weight (all experts).</summary>
    public long ByteLength => Math.Max(1, Experts) * Rows * RowBytes;

    /// <summary>The logical shape: [Rows, Cols] or [Experts, Rows, Cols].</summary>
    public long[] Shape => Experts == 0 ? new[] { Rows, Cols } : new[] { Experts, Rows, Cols };

    /// <summary>Whether <paramref name="cols"/> inputs fit whole blocks of <paramref name="type"/>.</summary>
    public static bool Fits(QuantType type, long cols) => cols > 0 && cols % QuantFormat.BlockElements(type) == 0;

    /// <summary>A view of expert <paramref name="e"/> ([Rows, Cols]) sharing this weight's memory (owns nothing).</summary>
    public QuantizedWeight Expert(int e)
    {
        if (Experts == 0) throw new InvalidOperationException("not an expert weight");
        ArgumentOutOfRangeException.ThrowIfNegative(e);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(e, Experts);
        if (Data2 == null) return new QuantizedWeight(Type, 0, Rows, Cols, Data + e * Rows * RowBytes, null, null);
        return new QuantizedWeight(Type, 0, Rows, Cols, Data + e * SplitRow * RowBytes, null, null, Data2 + e * (Rows - SplitRow) * RowBytes, SplitRow);
    }

    /// <summary>
    /// Wraps two row segments someone else owns as one weight of <paramref name="shape"/> ([N, K] or [E, N, K]): per matrix,
    /// rows 0..<paramref name="splitRow"/> from <paramref name="first"/> and the rest from <paramref name="second"/> (each
    /// segment stacked over the experts on its own). <paramref name="owner"/> keeps the memory alive.
    /// </summary>
    /// <exception cref="ArgumentException">The shape does not fit the format, or the split is outside the rows.</exception>
    public static QuantizedWeight FromMemory(QuantType type, IReadOnlyList<long> shape, byte* first, byte* second, long splitRow, IDisposable? owner)
    {
        var (e, n, k) = Dims(shape);
        if (!Fits(type, k)) throw new ArgumentException($"{type} needs rows of a multiple of {QuantFormat.BlockElements(type)} weights, not {k}", nameof(shape));
        if (splitRow <= 0 || splitRow >= n) throw new ArgumentOutOfRangeException(nameof(splitRow), splitRow, $"the split must be inside the {n} rows");
        return new QuantizedWeight(type, e, n, k, first, null, owner, second, splitRow);
    }

    /// <summary>
    /// Wraps blocks someone else owns (e.g. a mapped file) as a weight of <paramref name="shape"/> ([N, K] or [E, N, K]);
    /// <paramref name="owner"/> keeps the memory alive and is disposed with this weight.
    /// </summary>
    /// <exception cref="ArgumentException">The shape does not fit the format or <paramref name="bytes"/>.</exception>
    public static QuantizedWeight FromMemory(QuantType type, IReadOnlyList<long> shape, byte* data, long bytes, IDisposable? owner)
    {
        var (e, n, k) = Dims(shape);
        if (!Fits(type, k)) throw new ArgumentException($"{type} needs rows of a multiple of {QuantFormat.BlockElements(type)} weights, not {k}", nameof(shape));
        long need = Math.Max(1, e) * n * QuantFormat.RowBytes(type, k);
        if (bytes != need) throw new ArgumentException($"a {type} weight [{string.Join(", ", shape)}] is {need} bytes, not {bytes}", nameof(bytes));
        return new QuantizedWeight(type, e, n, k, data, null, owner);
    }

    /// <summary>
    /// Quantizes a float tensor (any float dtype, CPU; [N, K] or [E, N, K]) into an owned buffer, rows split over
    /// <paramref name="workers"/> (one row at a time is widened to float32).
    /// </summary>
    /// <exception cref="ArgumentException">The tensor's last dimension does not fit whole blocks, or it is not 2-D/3-D.</exception>
    public static QuantizedWeight Quantize(Tensor w, QuantType type, KernelWorkers workers)
    {
        var (e, n, k) = Dims(w.shape);
        if (!Fits(type, k)) throw new ArgumentException($"{type} needs rows of a multiple of {QuantFormat.BlockElements(type)} weights, not {k}", nameof(w));
        long rowBytes = QuantFormat.RowBytes(type, k);
        long totalRows = Math.Max(1, e) * n;
        byte* buf = (byte*)NativeMemory.AlignedAlloc((nuint)(totalRows * rowBytes), 64);
        try
        {
            using var scope = torch.NewDisposeScope();
            var src = w.device_type == DeviceType.CPU ? w : w.cpu();
            // Rows are widened to float32 in chunks (bounded transient memory), quantized in parallel.
            long chunk = Math.Max(1, (1L << 22) / k);
            var flat = src.reshape(totalRows, k);
            for (long r0 = 0; r0 < totalRows; r0 += chunk)
            {
                long rows = Math.Min(chunk, totalRows - r0);
                using var part = flat.narrow(0, r0, rows).to_type(ScalarType.Float32).contiguous();
                float* xp = (float*)TorchNative.DataPointer(part);
                workers.For(checked((int)rows), new QuantizeRows(type, xp, k, buf + r0 * rowBytes, rowBytes));
            }
        }
        catch
        {
            NativeMemory.AlignedFree(buf);
            throw;
        }
        return new QuantizedWeight(type, e, n, k, buf, buf, null);
    }

    /// <summary>
    /// An owned copy of a plain [N, K] weight with its rows reordered: row i of the copy is row <paramref name="map"/>[i] of
    /// <paramref name="source"/> (e.g. undoing the RoPE row permutation a GGUF applies to q/k; blocks are copied, not requantized).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="map"/> is not a permutation-sized index list in range.</exception>
    public static QuantizedWeight CopyRows(QuantizedWeight source, IReadOnlyList<long> map)
    {
        if (source.Experts != 0) throw new ArgumentException("row copies take a plain [N, K] weight", nameof(source));
        if (map.Count != source.Rows) throw new ArgumentException($"{map.Count} row indices for {source.Rows} rows", nameof(map));
        byte* buf = (byte*)NativeMemory.AlignedAlloc((nuint)(source.Rows * source.RowBytes), 64);
        for (int i = 0; i < map.Count; i++)
        {
            if (map[i] < 0 || map[i] >= source.Rows)
            {
                NativeMemory.AlignedFree(buf);
                throw new ArgumentException($"row index {map[i]} outside the {source.Rows} rows", nameof(map));
            }
            Buffer.MemoryCopy(source.RowPointer(map[i]), buf + i * source.RowBytes, source.RowBytes, source.RowBytes);
        }
        return new QuantizedWeight(source.Type, 0, source.Rows, source.Cols, buf, buf, null);
    }

    private readonly struct QuantizeRows(QuantType type, float* x, long k, byte* dst, long rowBytes) : IKernelLoop
    {
        public void Run(int index) => QuantFormat.QuantizeRow(type, x + index * k, dst + index * rowBytes, k);
    }

    /// <summary>The weight as float32 ([Rows, Cols], or all experts [E, Rows, Cols]); rows split over <paramref name="workers"/> when given.</summary>
    public Tensor Dequantize(KernelWorkers? workers = null)
    {
        var y = torch.empty(Shape, ScalarType.Float32);
        float* yp = (float*)TorchNative.DataPointer(y);
        long total = Math.Max(1, Experts) * Rows;
        int chunks = (int)Math.Min(total, 64);
        var job = new DequantizeRows(this, yp, total, chunks);
        if (workers is null) for (int c = 0; c < chunks; c++) job.Run(c);
        else workers.For(chunks, job);
        return y;
    }

    private readonly struct DequantizeRows(QuantizedWeight w, float* y, long total, int chunks) : IKernelLoop
    {
        public void Run(int index)
        {
            long from = total * index / chunks, to = total * (index + 1) / chunks;
            for (long g = from; g < to; g++)
            {
                long e = w.Experts == 0 ? 0 : g / w.Rows, r = w.Experts == 0 ? g : g % w.Rows;
                byte* row = w.Experts == 0 ? w.RowPointer(r) : w.ExpertRow((int)e, r);
                QuantFormat.DequantizeRow(w.Type, row, y + g * w.Cols, w.Cols);
            }
        }
    }

    /// <summary>First byte of row <paramref name="r"/> of expert <paramref name="e"/>.</summary>
    private byte* ExpertRow(int e, long r) =>
        r < SplitRow ? Data + (e * SplitRow + r) * RowBytes : Data2 + (e * (Rows - SplitRow) + r - SplitRow) * RowBytes;

    /// <summary>Frees the owned buffer (views and borrowed memory: releases the owner).</summary>
    public void Dispose()
    {
        if (_owned != null)
        {
            NativeMemory.AlignedFree(_owned);
            _owned = null;
        }
        _owner?.Dispose();
    }

    private static (int E, long N, long K) Dims(IReadOnlyList<long> shape) => shape.Count switch
    {
        2 => (0, shape[0], shape[1]),
        3 => (checked((int)shape[0]), shape[1], shape[2]),
        _ => throw new ArgumentException($"a quantized weight is [N, K] or [E, N, K], not [{string.Join(", ", shape)}]", nameof(shape)),
    };
}

/// <summary>
/// A linear weight as the modules hand it to <see cref="GraniteKernels"/>: the dense tensor, or (when set) its
/// quantized form, which then is what is computed on (the dense tensor is a shape-only placeholder).
/// </summary>
internal readonly record struct LinearWeight(Tensor? Dense, QuantizedWeight? Quantized)
{
    /// <summary>A dense weight.</summary>
    public static implicit operator LinearWeight(Tensor dense) => new(dense, null);
}
