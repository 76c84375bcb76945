using Granite.Core.Kernels;
using Granite.Core.Modeling;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Granite.Core.Tests.Modeling;

/// <summary>
/// The blocked multi-row form of the paired GEMV (Bf16Gemv.Blocked.cs: 8 packed weight rows × 4 x rows, x in row
/// blocks): bit for bit what the paired and the plain 256-bit kernels give, for any row count (prefill-sized expert
/// batches beyond <see cref="Bf16Gemv.MaxRows"/> included), and the routed experts of a long prefill grouped through it.
/// </summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class BlockedGemmTests
{
    private readonly Xunit.Abstractions.ITestOutputHelper _out;

    public BlockedGemmTests(Xunit.Abstractions.ITestOutputHelper output)
    {
        GraniteRuntime.EnsureLoaded();
        _out = output;
    }

    private static bool Identical(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && (a == b).all().item<bool>();

    [Theory]
    [InlineData(1536, 1030)]   // hidden-sized K, N not a multiple of the 8-row chunk
    [InlineData(512, 1536)]    // expert down projection
    [InlineData(40, 37)]       // K tail past the last 16-column block
    [InlineData(48, 12)]       // 3 column blocks, one 8-row chunk + a 4-row remainder
    [InlineData(8, 16)]        // K below one block: the paired kernel's scalar tails
    public void BlockedIsBitIdenticalToThePairedAndPlainKernelsForAnyRowCount(int k, int n)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(31);
        var w = randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16);
        foreach (int threads in new[] { 1, 2 })
        {
            var blocked = GraniteKernels.Create(null, threads);
            var paired = GraniteKernels.Create(null, threads, new KernelTuning { BlockedGemm = false });
            var plain = GraniteKernels.Create(null, threads, new KernelTuning { PairedRows512 = false });
            bool expectBlocked = blocked.GemvIsa == KernelIsa.Avx2 && blocked.Isa >= KernelIsa.Avx512 && Bf16Gemv.PairedSupported;
            blocked.Gemv.Blocked.Should().Be(expectBlocked, blocked.Description);
            paired.Gemv.Blocked.Should().BeFalse();
            foreach (int rows in new[] { 7, 8, 9, 12, 37, 64, 100, 131 })
            {
                var x = randn(new long[] { rows, k }, generator: g);
                var y = blocked.Gemv.Linear(x, w, null);
                Identical(y, paired.Gemv.Linear(x, w, null)).Should().BeTrue($"{rows} rows, {threads} thread(s), {blocked.Description}");
                Identical(y, plain.Gemv.Linear(x, w, null)).Should().BeTrue($"{rows} rows vs the plain 256-bit kernel");
                for (int r = 0; r < rows; r += Math.Max(1, rows / 3))
                    Identical(y[r], blocked.Gemv.Linear(x.narrow(0, r, 1), w, null)[0]).Should().BeTrue($"row {r} of {rows} equals that row alone");
                double rel = (y - F.linear(x, w.to_type(ScalarType.Float32))).abs().max().item<float>()
                             / Math.Max(1e-6, F.linear(x, w.to_type(ScalarType.Float32)).abs().max().item<float>());
                rel.Should().BeLessThan(1e-5, $"{rows} rows against LibTorch's float32 linear");
            }
            int[] counts = { 9, 1, 70, 130, 8, 3 };
            var ws = Enumerable.Range(0, counts.Length).Select(_ => randn(new long[] { n, k }, generator: g).to_type(ScalarType.BFloat16)).ToArray();
            var xs = randn(new long[] { counts.Sum(), k }, generator: g);
            var grouped = blocked.Gemv.LinearGrouped(xs, ws, counts, 4096);
            Identical(grouped, paired.Gemv.LinearGrouped(xs, ws, counts, 4096)).Should().BeTrue("grouped experts of prefill size");
            long row = 0;
            for (int j = 0; j < counts.Length; j++)
            {
                Identical(grouped.narrow(0, row, counts[j]), plain.Gemv.Linear(xs.narrow(0, row, counts[j]), ws[j], null))
                    .Should().BeTrue($"group {j} ({counts[j]} rows) equals its own call");
                row += counts[j];
            }
        }
    }

    [Fact]
    public void ExpertGroupingLimitFollowsTheKernelAndTheTuning()
    {
        var blocked = GraniteKernels.Create(null, 1);
        blocked.ExpertGroupMaxRows.Should().Be(blocked.Gemv.Blocked ? 4096 : Bf16Gemv.MaxRows);
        GraniteKernels.Create(null, 1, new KernelTuning { BlockedGemm = false }).ExpertGroupMaxRows.Should().Be(Bf16Gemv.MaxRows);
        GraniteKernels.Create(null, 1, new KernelTuning { Bf16GemvMaxRows = 0 }).ExpertGroupMaxRows.Should().Be(0, "the reference path groups nothing");
        GraniteKernels.Create(null, 1, new KernelTuning { Bf16GemvMaxRows = 16 }).ExpertGroupMaxRows.Should().Be(16);
        GraniteKernels.Create(KernelIsa.Avx2, 1).Gemv.Blocked.Should().BeFalse("under an AVX2 cap the 256-bit kernel runs");
        GraniteKernels.Create(KernelIsa.Avx2, 1).ExpertGroupMaxRows.Should().Be(Bf16Gemv.MaxRows);
        var gemv = blocked.Gemv;
        using var scope = NewDisposeScope();
        var w = zeros(new long[] { 8, 16 }, ScalarType.BFloat16);
        var act = () => gemv.LinearGrouped(zeros(5000, 16), new[] { w }, new[] { 5000 }, 4096);
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*1..4096 rows*");
    }

    /// <summary>
    /// A 320-token prefill of tiny-h-moe (8 experts top-2: ≈ 80 rows per expert, more than <see cref="Bf16Gemv.MaxRows"/>)
    /// runs its routed experts grouped through the managed kernel: equal (to float32 rounding of the scatter) to the same
    /// managed kernel called expert by expert, and within one BF16 step of the upcast float32 GEMM path. (Inside one long
    /// pass attention reads the keys and values back from the BF16 cache, so a summation-order difference that moves a
    /// value across a BF16 rounding boundary moves later logits by up to 2⁻⁸ relative: the bound
    /// <see cref="Bf16KernelPathTests"/> sets after a BF16 state; wrong rows, experts or weights are O(1).)
    /// </summary>
    [Fact]
    public void LongPrefillGroupsExpertsAndMatchesPerExpertAndUpcastPaths()
    {
        const string fixture = "tiny-h-moe";
        var g = Golden.Load(fixture);
        GraniteModel Load(KernelTuning tuning) => GraniteModel.Load(Golden.FixtureDir(fixture),
            new GraniteModelOptions { WeightDtype = WeightDtypePolicy.BFloat16, Threads = 2, KernelTuning = tuning });
        // Dense linears of every size on the managed kernel in both, so only the grouping differs.
        using var model = Load(new KernelTuning { Bf16GemvMaxRows = 4096, Bf16Gemm = Bf16GemmMode.Upcast });
        using var perExpert = Load(new KernelTuning { Bf16GemvMaxRows = 4096, BlockedExpertMaxRows = 64, Bf16Gemm = Bf16GemmMode.Upcast });
        using var reference = Load(new KernelTuning { Bf16GemvMaxRows = 0, Bf16Gemm = Bf16GemmMode.Upcast });
        var seed = g.Session.PrefixIds.Concat(g.Session.ExtraIds).ToArray();
        var ids = Enumerable.Range(0, 320).Select(i => seed[(i * 7 + i / seed.Length) % seed.Length]).ToArray();
        var profile = model.Kernels.EnableProfile();
        var perExpertProfile = perExpert.Kernels.EnableProfile();
        float[] Last(GraniteModel m)
        {
            using var state = m.CreateState();
            using var logits = m.Forward(ids, state);
            return ModelParityTests.Floats(logits);
        }
        var a = Last(model);
        var b = Last(perExpert);
        var c = Last(reference);
        bool grouped = profile.PerPass().Any(p => p.Part == KernelPart.ExpertsIn && p.Calls > 0);
        grouped.Should().Be(model.Kernels.Gemv.Blocked, model.KernelDescription);
        perExpertProfile.PerPass().Any(p => p.Part == KernelPart.ExpertsIn && p.Calls > 0).Should().BeFalse("64 rows per expert at most: one call per expert");
        double relPerExpert = Bf16FastPathTests.RelRms(a, b), relReference = Bf16FastPathTests.RelRms(a, c);
        _out.WriteLine($"{model.KernelDescription}: experts grouped {grouped}; rel RMS vs per-expert managed {relPerExpert:E2}, vs upcast GEMM path {relReference:E2} (per-expert managed vs upcast {Bf16FastPathTests.RelRms(b, c):E2})");
        relPerExpert.Should().BeLessThan(1e-6);
        relReference.Should().BeLessThan(4e-3);
        Compare.Argmax(a).Should().Be(Compare.Argmax(c));
    }
}
