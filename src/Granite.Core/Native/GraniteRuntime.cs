using System.Buffers.Binary;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Granite.Core;

/// <summary>
/// Makes sure the TorchSharp native backend is loadable before any tensor code runs.
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <c>libLibTorchSharp.so</c> declares a need for <c>GLIBCXX_3.4.32</c> although it only references
/// <c>std::ios_base_library_init()</c> from it, a symbol no relocation uses. Distributions with GCC &lt; 13 (Debian 12,
/// RHEL 9, Ubuntu 22.04) refuse to load it. When the plain load fails for that reason, this class copies the library into
/// a per-user cache folder, marks the <c>GLIBCXX_3.4.31</c>+ version needs as weak (<c>VER_FLG_WEAK</c>) and loads the
/// copy together with LibTorch, so TorchSharp's later load by soname finds the already-loaded copy.
/// Switch it off with the environment variable <c>GRANITE_NATIVE_PATCH=0</c> or the AppContext switch
/// <c>Granite.DisableNativePatch</c>. Before loading anything it applies the process part of the thread policy
/// (<c>OMP_WAIT_POLICY=PASSIVE</c> unless set; see <c>Kernels.ThreadPolicy</c>).
/// </remarks>
public static class GraniteRuntime
{
    private static readonly object Gate = new();
    private static bool _done;

    /// <summary>What <see cref="EnsureLoaded"/> did, for logs and diagnostics.</summary>
    public static string LoadReport { get; private set; } = "not loaded yet";

    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Native loading must precede any TorchSharp use.")]
    internal static void Init()
    {
        try { EnsureLoaded(); } catch { /* reported again by EnsureLoaded at the first explicit call */ }
    }

    /// <summary>Loads (and if needed patches) the native backend. Idempotent and thread-safe.</summary>
    /// <exception cref="InvalidOperationException">The native backend cannot be loaded; the message names the cause — e.g.
    /// no TorchSharp backend package (<c>TorchSharp-cpu</c> or a CUDA one) is referenced by the application.</exception>
    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_done) return;
            LoadReport = Load();
            _done = true;
        }
    }

    private static bool PatchDisabled =>
        Environment.GetEnvironmentVariable("GRANITE_NATIVE_PATCH") is "0" or "false" or "off"
        || (AppContext.TryGetSwitch("Granite.DisableNativePatch", out var off) && off);

    /// <summary>LibTorch's CPU library on this OS; every TorchSharp backend package ships it (the CUDA ones too).</summary>
    internal static string LibTorchFileName =>
        OperatingSystem.IsWindows() ? "torch_cpu.dll" : OperatingSystem.IsMacOS() ? "libtorch_cpu.dylib" : "libtorch_cpu.so";

    /// <summary>Where LibTorch was found: next to the application / TorchSharp (flat or under runtimes/RID/native), or
    /// on the platform's library search path. Null when no backend package is deployed.</summary>
    internal static string? FindLibTorch() =>
        FindNative(LibTorchFileName) ?? (NativeLibrary.TryLoad(LibTorchFileName, out _) ? "library search path" : null);

    /// <summary>The error of an application that references no TorchSharp backend package.</summary>
    internal static string MissingBackendMessage()
    {
        var v = typeof(TorchSharp.torch).Assembly.GetName().Version;
        string version = v is null ? "the TorchSharp version" : $"{v.Major}.{v.Minor}.{v.Build}";
        return $"The TorchSharp native backend (LibTorch) is missing: {LibTorchFileName} is neither next to the application ({AppContext.BaseDirectory}) nor on the library search path. "
            + $"Granite's packages reference only TorchSharp; the application must reference a backend package of the same version ({version}): "
            + "TorchSharp-cpu (CPU: Linux x64, Windows x64, macOS arm64) or a CUDA one (TorchSharp-cuda-linux, TorchSharp-cuda-windows). "
            + "See the README section \"Choosing the TorchSharp backend\".";
    }

    private static string Load()
    {
        // Before any native library loads: libgomp reads OMP_WAIT_POLICY once, when LibTorch pulls it in.
        Kernels.ThreadPolicy.ApplyProcessEnvironment();
        // Without a backend package TorchSharp fails later with an opaque DllNotFoundException (or a message about
        // libtorch-cpu-linux-x64): name the package to add instead.
        if (FindLibTorch() is null) throw new InvalidOperationException(MissingBackendMessage());
        return Kernels.ThreadPolicy.EnvironmentReport + "; " + LoadNatives();
    }

    private static string LoadNatives()
    {
        if (!OperatingSystem.IsLinux()) return "native backend loaded by TorchSharp (no patch needed on this OS)";
        var shipped = FindNative("libLibTorchSharp.so");
        if (shipped is null) return "libLibTorchSharp.so not found next to the application; TorchSharp will report its own error";
        string error;
        try
        {
            NativeLibrary.Load(shipped);
            return $"loaded {shipped} as shipped";
        }
        catch (DllNotFoundException ex) { error = Summarise(ex.Message); }
        if (!error.Contains("GLIBCXX", StringComparison.Ordinal))
            return $"loading {shipped} failed: {error}";
        if (PatchDisabled)
            throw new InvalidOperationException($"TorchSharp's native library needs a newer libstdc++ ({error}) and the Granite native patch is switched off (GRANITE_NATIVE_PATCH=0).");

        var dir = Path.GetDirectoryName(shipped)!;
        byte[] original = File.ReadAllBytes(shipped);
        byte[] patched = (byte[])original.Clone();
        int marked = ElfVersionPatcher.MarkGlibcxxNeedsWeak(patched, minimumMinor: 31);
        if (marked == 0)
            throw new InvalidOperationException($"TorchSharp's native library failed to load ({error}) and no GLIBCXX version need could be relaxed.");
        string hash = Convert.ToHexString(SHA256.HashData(patched))[..16].ToLowerInvariant();
        string cacheDir = Path.Combine(CacheRoot(), "native", hash);
        Directory.CreateDirectory(cacheDir);
        string target = Path.Combine(cacheDir, "libLibTorchSharp.so");
        if (!File.Exists(target) || !HashMatches(target, patched))
        {
            string tmp = target + "." + Environment.ProcessId + "." + Guid.NewGuid().ToString("N") + ".tmp";
            File.WriteAllBytes(tmp, patched);
            File.Move(tmp, target, overwrite: true);
        }
        foreach (var dep in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
        {
            var p = Path.Combine(dir, dep);
            if (File.Exists(p)) NativeLibrary.Load(p);
        }
        NativeLibrary.Load(target);
        return $"patched libLibTorchSharp.so ({marked} GLIBCXX_3.4.31+ needs marked weak; libstdc++ too old: {error.Trim()}); loaded {target}";
    }

    private static string Summarise(string message)
    {
        int i = message.IndexOf("GLIBCXX", StringComparison.Ordinal);
        if (i < 0) return message;
        int start = message.LastIndexOf('\n', i) + 1;
        int end = message.IndexOf('\n', i);
        return message[start..(end < 0 ? message.Length : end)].Trim();
    }

    private static bool HashMatches(string path, byte[] expected)
    {
        try { return SHA256.HashData(File.ReadAllBytes(path)).AsSpan().SequenceEqual(SHA256.HashData(expected)); }
        catch (IOException) { return false; }
    }

    private static string CacheRoot()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "granite-sk");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(home) ? Path.Combine(Path.GetTempPath(), "granite-sk-" + Environment.UserName) : Path.Combine(home, ".cache", "granite-sk");
    }

    private static string? FindNative(string file)
    {
        var roots = new List<string> { AppContext.BaseDirectory };
        var torchAsm = typeof(TorchSharp.torch).Assembly.Location;
        if (!string.IsNullOrEmpty(torchAsm)) roots.Add(Path.GetDirectoryName(torchAsm)!);
        foreach (var root in roots)
        {
            var direct = Path.Combine(root, file);
            if (File.Exists(direct)) return direct;
            var own = Path.Combine(root, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", file);
            if (File.Exists(own)) return own;
            foreach (var rid in new[] { "linux-x64", "win-x64", "osx-arm64" })
            {
                var generic = Path.Combine(root, "runtimes", rid, "native", file);
                if (File.Exists(generic)) return generic;
            }
        }
        return null;
    }
}

/// <summary>Edits the GNU symbol-version needs of an ELF64 little-endian shared object.</summary>
internal static class ElfVersionPatcher
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>Sets VER_FLG_WEAK on every <c>GLIBCXX_3.4.N</c> need with N ≥ <paramref name="minimumMinor"/>. Returns how many entries changed.</summary>
    public static int MarkGlibcxxNeedsWeak(byte[] elf, int minimumMinor)
    {
        var s = elf.AsSpan();
        if (s.Length < 64 || s[0] != 0x7f || s[1] != (byte)'E' || s[2] != (byte)'L' || s[3] != (byte)'F' || s[4] != 2 || s[5] != 1)
            throw new InvalidDataException("not an ELF64 little-endian file");
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(s[0x28..]);
        ushort shentsize = BinaryPrimitives.ReadUInt16LittleEndian(s[0x3A..]);
        ushort shnum = BinaryPrimitives.ReadUInt16LittleEndian(s[0x3C..]);
        int changed = 0;
        for (int i = 0; i < shnum; i++)
        {
            var sh = s.Slice(checked((int)shoff + i * shentsize), shentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed) continue;
            ulong off = BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]);
            uint link = BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            var strSh = s.Slice(checked((int)shoff + (int)link * shentsize), shentsize);
            ulong strOff = BinaryPrimitives.ReadUInt64LittleEndian(strSh[0x18..]);
            int need = (int)off;
            while (true)
            {
                ushort cnt = BinaryPrimitives.ReadUInt16LittleEndian(s[(need + 2)..]);
                uint aux = BinaryPrimitives.ReadUInt32LittleEndian(s[(need + 8)..]);
                uint next = BinaryPrimitives.ReadUInt32LittleEndian(s[(need + 12)..]);
                int a = need + (int)aux;
                for (int k = 0; k < cnt; k++)
                {
                    uint nameOff = BinaryPrimitives.ReadUInt32LittleEndian(s[(a + 8)..]);
                    string name = ReadCString(s, (int)strOff + (int)nameOff);
                    if (name.StartsWith("GLIBCXX_3.4.", StringComparison.Ordinal)
                        && int.TryParse(name.AsSpan("GLIBCXX_3.4.".Length), out int minor) && minor >= minimumMinor)
                    {
                        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(s[(a + 4)..]);
                        BinaryPrimitives.WriteUInt16LittleEndian(s[(a + 4)..], (ushort)(flags | VerFlgWeak));
                        changed++;
                    }
                    uint anext = BinaryPrimitives.ReadUInt32LittleEndian(s[(a + 12)..]);
                    if (anext == 0) break;
                    a += (int)anext;
                }
                if (next == 0) break;
                need += (int)next;
            }
        }
        return changed;
    }

    private static string ReadCString(ReadOnlySpan<byte> s, int at)
    {
        int end = s[at..].IndexOf((byte)0);
        return System.Text.Encoding.ASCII.GetString(s.Slice(at, end));
    }
}
