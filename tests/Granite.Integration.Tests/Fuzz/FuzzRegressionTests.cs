using Granite.Fuzz;

namespace Granite.Integration.Tests.Fuzz;

/// <summary>
/// Every fuzz corpus input and every reproducer the fuzzers found (tests/Granite.Fuzz/corpus and regressions) runs
/// through the same target as the fuzzer, in process: a target throws only on a defect (an undocumented exception or a
/// broken invariant such as streamed ≠ whole tool-call parse). See docs/reliability.md.
/// </summary>
public class FuzzRegressionTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fuzz");

    public static IEnumerable<object[]> Inputs()
    {
        foreach (string kind in new[] { "corpus", "regressions" })
        {
            string dir = Path.Combine(Root, kind);
            if (!Directory.Exists(dir)) continue;
            foreach (string targetDir in Directory.GetDirectories(dir).Order(StringComparer.Ordinal))
                foreach (string file in Directory.GetFiles(targetDir).Order(StringComparer.Ordinal))
                    yield return [Path.GetFileName(targetDir), Path.GetRelativePath(Root, file)];
        }
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Input_DoesNotCrashItsTarget(string target, string file)
    {
        FuzzTargets.All.Should().ContainKey(target);
        byte[] data = File.ReadAllBytes(Path.Combine(Root, file));
        FuzzTargets.All[target](data); // throws on a defect
    }

    [Fact]
    public void EveryTargetHasACorpus_AndTheReproducersAreThere()
    {
        Directory.GetFiles(Path.Combine(Root, "regressions"), "*", SearchOption.AllDirectories).Should().NotBeEmpty();
        Inputs().Where(i => ((string)i[1]).StartsWith("corpus", StringComparison.Ordinal)).Select(i => (string)i[0]).Distinct()
            .Should().BeEquivalentTo(FuzzTargets.All.Keys);
    }
}
