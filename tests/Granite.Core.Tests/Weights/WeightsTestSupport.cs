using System.Buffers.Binary;
using System.Text;
using Granite.Core;

namespace Granite.Core.Tests.Weights;

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        GraniteRuntime.EnsureLoaded();
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "granite-weights-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Writes hand-made (possibly broken) safetensors files byte by byte.</summary>
internal static class RawSafetensors
{
    /// <summary>8-byte little-endian length + header text + data bytes.</summary>
    public static string Write(string path, string headerJson, byte[] data, ulong? lengthPrefix = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        using var fs = System.IO.File.Create(path);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, lengthPrefix ?? (ulong)header.Length);
        fs.Write(prefix);
        fs.Write(header);
        fs.Write(data);
        return path;
    }

    /// <summary>Data bytes 0,1,2,... (mod 251).</summary>
    public static byte[] Data(int n) => Enumerable.Range(0, n).Select(i => (byte)(i % 251)).ToArray();
}

/// <summary>Reads this process's resident set size.</summary>
internal static class ProcessMemory
{
    public static long ReadRssKiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        throw new InvalidOperationException("VmRSS not found in /proc/self/status");
    }
}
