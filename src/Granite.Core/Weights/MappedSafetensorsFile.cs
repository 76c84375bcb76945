using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>
/// One safetensors file mapped copy-on-write, with a reference count shared by its owner (the checkpoint) and every
/// zero-copy tensor handed out. The mapping is released when the owner has released it and LibTorch has freed the
/// storage of the last tensor viewing it.
/// </summary>
/// <remarks>
/// The view is mapped <see cref="MemoryMappedFileAccess.CopyOnWrite"/> (<c>MAP_PRIVATE</c>): tensors are read-only by
/// contract, but an accidental in-place write only dirties a private page of this process; it never reaches the file
/// and does not fault.
/// </remarks>
internal sealed unsafe class MappedSafetensorsFile
{
    private static readonly object RegistryGate = new();
    private static readonly List<MappedSafetensorsFile> Live = new();

    private readonly MemoryMappedFile _mmf;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private int _refs = 1;

    private MappedSafetensorsFile(string path, SafetensorsHeader header, long length, MemoryMappedFile mmf, MemoryMappedViewAccessor view)
    {
        Path = path;
        Header = header;
        Length = length;
        _mmf = mmf;
        _view = view;
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + view.PointerOffset;
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>The validated header.</summary>
    public SafetensorsHeader Header { get; }

    /// <summary>File length in bytes.</summary>
    public long Length { get; }

    /// <summary>Whether the mapping is still in place (false once owner and all tensors released it).</summary>
    public bool IsMapped => Volatile.Read(ref _refs) > 0;

    /// <summary>Number of live files mapped by this process through this class (for tests and diagnostics).</summary>
    public static int LiveCount
    {
        get { lock (RegistryGate) return Live.Count; }
    }

    /// <summary>Whether this process currently maps <paramref name="path"/> through this class (for tests).</summary>
    public static bool IsPathMapped(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        lock (RegistryGate) return Live.Any(f => f.Path == full);
    }

    /// <summary>Start address of the mapped file (header included).</summary>
    public IntPtr BaseAddress => (IntPtr)_base;

    /// <summary>Opens, validates and maps a file. Nothing is mapped when validation fails.</summary>
    /// <exception cref="InvalidDataException">The header is invalid; the message names the file and tensor.</exception>
    public static MappedSafetensorsFile Open(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        // stat before open: opening a FIFO blocks until a writer appears, and a device never ends.
        long statLength = Granite.Core.Diagnostics.CheckedFile.EnsureRegular(full, 0);
        if (statLength < 8)
            throw new InvalidDataException($"{full}: not a safetensors file: {statLength} bytes is shorter than the 8-byte header length prefix" +
                (statLength == 0 ? " (empty, or not a regular file: a FIFO, socket or device is refused rather than opened)" : ""));
        var fs = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1, FileOptions.RandomAccess);
        try
        {
            var header = SafetensorsHeader.Read(fs, full);
            long length = fs.Length;
            var mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.CopyOnWrite, HandleInheritability.None, leaveOpen: false);
            MemoryMappedViewAccessor view;
            try
            {
                view = mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.CopyOnWrite);
            }
            catch
            {
                mmf.Dispose();
                throw;
            }
            if (view.Capacity < length)
            {
                view.Dispose();
                mmf.Dispose();
                throw new InvalidDataException($"{full}: mapped only {view.Capacity} of {length} bytes (file changed while opening?)");
            }
            var f = new MappedSafetensorsFile(full, header, length, mmf, view);
            lock (RegistryGate) Live.Add(f);
            return f;
        }
        catch
        {
            fs.Dispose(); // no-op when the mapping already owns it
            throw;
        }
    }

    /// <summary>Address of a tensor's first byte.</summary>
    public IntPtr AddressOf(SafetensorsEntry e) => (IntPtr)(_base + Header.DataStart + e.Begin);

    /// <summary>
    /// A tensor over the mapped bytes (zero-copy) or, for empty or misaligned data, an owned tensor.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The mapping was already released.</exception>
    public Tensor CreateTensor(SafetensorsEntry e)
    {
        if (e.ElementCount == 0) return empty(e.Shape, dtype: e.DType);
        var address = AddressOf(e);
        if ((long)address % e.ElementSize != 0)
        {
            // Offsets that are not a multiple of the element size: LibTorch kernels expect natural alignment, so copy.
            var t = empty(e.Shape, dtype: e.DType);
            Buffer.MemoryCopy((void*)address, (void*)TorchNative.DataPointer(t), e.ByteLength, e.ByteLength);
            return t;
        }
        if (!TryAddRef())
            throw new ObjectDisposedException(nameof(SafetensorsCheckpoint), $"{Path} is no longer mapped");
        var tensor = TorchNative.FromBlob(address, e.Shape, e.DType, &OnBlobFreed);
        if (tensor is null)
        {
            Release();
            TorchSharp.torch.CheckForErrors();
            throw new InvalidOperationException($"{Path}: LibTorch could not wrap tensor '{e.Name}'");
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
            MappedSafetensorsFile? owner = null;
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
