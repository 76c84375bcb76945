namespace Granite.Core.Tests;

/// <summary><c>/proc/self/status</c> parsing used by <c>granite bench</c> and the peers benchmark.</summary>
public class ProcStatusTests
{
    // Excerpt of a real status file of a process that peaked at 11.3 GiB: from 9 digits on, the kernel's
    // right-aligned 8-column field leaves no space between the tab and the number.
    private static readonly string[] Large =
    {
        "Name:\tgranite",
        "VmPeak:\t13051988 kB",
        "VmSize:\t12990464 kB",
        "VmHWM:\t11870208 kB",
        "VmRSS:\t 9437184 kB",
        "RssAnon:\t  262144 kB",
        "RssFile:\t 9175040 kB",
        "Threads:\t12",
    };

    [Theory]
    [InlineData("VmHWM", 11870208L * 1024)]
    [InlineData("VmRSS", 9437184L * 1024)]
    [InlineData("RssAnon", 262144L * 1024)]
    [InlineData("RssFile", 9175040L * 1024)]
    [InlineData("Threads", 12L)]
    public void ParsesValuesWithAndWithoutPaddingAfterTheTab(string key, long expected) =>
        ProcStatus.Parse(Large, key).Should().Be(expected);

    [Fact]
    public void AbsentOrMalformedKeysGiveNull()
    {
        ProcStatus.Parse(Large, "VmSwap").Should().BeNull();
        ProcStatus.Parse(Large, "Vm").Should().BeNull("a key matches only up to its colon");
        ProcStatus.Parse(new[] { "VmHWM:\tlots kB" }, "VmHWM").Should().BeNull();
        ProcStatus.Parse(new[] { "VmHWM:" }, "VmHWM").Should().BeNull();
    }

    [Fact]
    public void ReadsThisProcessOnLinux()
    {
        if (!OperatingSystem.IsLinux()) return;
        long rss = ProcStatus.Read("VmRSS");
        rss.Should().BeGreaterThan(1 << 20);
        ProcStatus.Read("VmHWM").Should().BeGreaterThanOrEqualTo(rss);
    }
}
