using static TorchSharp.torch;

namespace Granite.Core.Weights;

/// <summary>
/// One safetensors file mapped copy-on-write (see <see cref="MappedFile"/> for the lifetime rules), with its validated header.
/// </summary>
internal sealed class MappedSafetensorsFile : MappedFile
{
    private MappedSafetensorsFile(string path, FileStream fs, SafetensorsHeader header) : base(path, fs) => Header = header;

    /// <summary>The validated header.</summary>
    public SafetensorsHeader Header { get; }

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
            return new MappedSafetensorsFile(full, fs, header);
        }
        catch
        {
            fs.Dispose(); // no-op when the mapping already owns it
            throw;
        }
    }

    /// <summary>Address of a tensor's first byte.</summary>
    public IntPtr AddressOf(SafetensorsEntry e) => BaseAddress + (nint)(Header.DataStart + e.Begin);

    /// <summary>A tensor over the mapped bytes (zero-copy) or, for empty or misaligned data, an owned tensor.</summary>
    /// <exception cref="ObjectDisposedException">The mapping was already released.</exception>
    public Tensor CreateTensor(SafetensorsEntry e) =>
        CreateTensorAt(Header.DataStart + e.Begin, e.Shape, e.DType, e.ElementSize, e.ByteLength, e.Name);
}
