using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>
/// A weight file mapped copy-on-write, with a reference count shared by its owner (a checkpoint) and every zero-copy
/// tensor handed out. The mapping is released when the owner has released it and LibTorch has freed the storage of the
/// last tensor viewing it. Base of the safetensors and GGUF readers.
/// </summary>
/// <remarks>
/// The view is mapped <see cref="MemoryMappedFileAccess.CopyOnWrite"/> (<c>MAP_PRIVATE</c>): tensors are read-only by
/// contract, but an accidental in-place write only dirties a private page of this process; it never reaches the file
/// and does not fault.
/// </remarks>
internal abstract unsafe class MappedFile
{
    private static readonly object RegistryGate = new();
    private static readonly List<MappedFile> Live = new();

    private readonly MemoryMappedFile _mmf;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private int _refs = 1;

    /// <summary>Maps the open stream <paramref name="fs"/> (taken over) of <paramref name="path"/>.</summary>
    protected MappedFile(string path, FileStream fs)
    {
        Path = path;
        Length = fs.Length;
        _mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.CopyOnWrite, HandleInheritability.None, leaveOpen: false);
        try
        {
            _view = _mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.CopyOnWrite);
        }
        catch
        {
            _mmf.Dispose();
            throw;
        }
        if (_view.Capacity < Length)
        {
            _view.Dispose();
            _mmf.Dispose();
            throw new InvalidDataException($"{path}: mapped only {_view.Capacity} of {Length} bytes (file changed while opening?)");
        }
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        lock (RegistryGate) Live.Add(this);
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>File length in bytes.</summary>
    public long Length { get; }

    /// <summary>Whether the mapping is still in place (false once owner and all tensors released it).</summary>
    public bool IsMapped => Volatile.Read(ref _refs) > 0;

    /// <summary>Start address of the mapped file.</summary>
    public IntPtr BaseAddress => (IntPtr)_base;

    /// <summary>Number of live mapped files of this process (for tests and diagnostics).</summary>
    public static int LiveCount
    {
        get { lock (RegistryGate) return Live.Count; }
    }

    /// <summary>Whether this process currently maps <paramref name="path"/> (for tests).</summary>
    public static bool IsPathMapped(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        lock (RegistryGate) return Live.Any(f => f.Path == full);
    }

    /// <summary>The bytes at [<paramref name="offset"/>, +<paramref name="length"/>) (bounds are the caller's validated header).</summary>
    protected ReadOnlySpan<byte> Span(long offset, int length) => new(_base + offset, length);

    /// <summary>
    /// A tensor over the mapped bytes at <paramref name="offset"/> (zero-copy) or, for empty or misaligned data, an owned copy.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The mapping was already released.</exception>
    protected Tensor CreateTensorAt(long offset, long[] shape, ScalarType dtype, int elementSize, long byteLength, string name)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (count == 0) return empty(shape, dtype: dtype);
        var address = _base + offset;
        if ((long)address % elementSize != 0)
        {
            // Offsets that are not a multiple of the element size: LibTorch kernels expect natural alignment, so copy.
            var t = empty(shape, dtype: dtype);
            Buffer.MemoryCopy(address, (void*)TorchNative.DataPointer(t), byteLength, byteLength);
            return t;
        }
        if (!TryAddRef())
            throw new ObjectDisposedException(GetType().Name, $"{Path} is no longer mapped");
        var tensor = TorchNative.FromBlob((IntPtr)address, shape, dtype, &OnBlobFreed);
        if (tensor is null)
        {
            Release();
            TorchSharp.torch.CheckForErrors();
            throw new InvalidOperationException($"{Path}: LibTorch could not wrap tensor '{name}'");
        }
        return tensor;
    }

    /// <summary>Takes a reference unless the mapping is already gone.</summary>
    public bool TryAddRef()
    {
        while (true)
        {
            int r = Volatile.Read(ref _refs);
            if (r <= 0) return false;
            if (Interlocked.CompareExchange(ref _refs, r + 1, r) == r) return true;
        }
    }

    /// <summary>Drops a reference; the last one unmaps the file.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _refs) != 0) return;
        lock (RegistryGate) Live.Remove(this);
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mmf.Dispose();
    }

    /// <summary>LibTorch calls this (on whatever thread frees the storage) with the pointer given to from_blob.</summary>
    [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
    private static void OnBlobFreed(IntPtr data)
    {
        try
        {
            MappedFile? owner = null;
            lock (RegistryGate)
            {
                foreach (var f in Live)
                {
                    if ((byte*)data >= f._base && (byte*)data < f._base + f.Length)
                    {
                        owner = f;
                        break;
                    }
                }
            }
            owner?.Release();
        }
        catch
        {
            // Never let an exception cross into native code.
        }
    }
}
