using Granite.Core;

namespace Granite.Core.Tests;

public class NativePatchTests
{
    private static string ShippedLibrary()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        if (!File.Exists(path)) path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        return path;
    }

    [Fact]
    public void MarksOnlyNewGlibcxxNeedsWeak()
    {
        if (!OperatingSystem.IsLinux()) return;
        var original = File.ReadAllBytes(ShippedLibrary());
        var patched = (byte[])original.Clone();
        int changed = ElfVersionPatcher.MarkGlibcxxNeedsWeak(patched, minimumMinor: 31);
        changed.Should().BeGreaterThan(0, "TorchSharp 0.107 needs GLIBCXX_3.4.32");
        int differing = original.Zip(patched).Count(p => p.First != p.Second);
        differing.Should().Be(changed, "exactly one flag byte changes per relaxed version need");
        // Idempotent: patching again changes nothing more.
        var again = (byte[])patched.Clone();
        ElfVersionPatcher.MarkGlibcxxNeedsWeak(again, 31);
        again.Should().Equal(patched);
        // A threshold above every need relaxes nothing.
        ElfVersionPatcher.MarkGlibcxxNeedsWeak((byte[])original.Clone(), 99).Should().Be(0);
    }

    [Fact]
    public void RejectsNonElfInput()
    {
        var act = () => ElfVersionPatcher.MarkGlibcxxNeedsWeak(new byte[] { 1, 2, 3, 4 }, 31);
        act.Should().Throw<InvalidDataException>();
    }
}
