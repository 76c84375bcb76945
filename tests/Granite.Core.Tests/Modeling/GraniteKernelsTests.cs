using System.Runtime.InteropServices;
using Granite.Core.Kernels;
using Granite.Core.Modeling;

namespace Granite.Core.Tests.Modeling;

/// <summary>Kernel selection at load: CPU features, the ISA caps (option and GRANITE_ISA) and the thread policy.</summary>
[Collection(NonParallelCollection.Name)] // loads models with Threads > 0: LibTorch's thread count is process-wide
public class GraniteKernelsTests
{
    public GraniteKernelsTests() => GraniteRuntime.EnsureLoaded();

    [Theory]
    [InlineData(KernelIsa.Avx512Bf16, null, null, KernelIsa.Avx512Bf16)]
    [InlineData(KernelIsa.Avx512Bf16, KernelIsa.Avx2, null, KernelIsa.Avx2)]
    [InlineData(KernelIsa.Avx512Bf16, null, "avx512", KernelIsa.Avx512)]
    [InlineData(KernelIsa.Avx512Bf16, KernelIsa.Avx2, "scalar", KernelIsa.Scalar)]
    [InlineData(KernelIsa.Avx512Bf16, KernelIsa.Scalar, "AVX2", KernelIsa.Scalar)]
    [InlineData(KernelIsa.Avx2, KernelIsa.Avx512Bf16, "avx512bf16", KernelIsa.Avx2)] // a cap never raises the level
    [InlineData(KernelIsa.Avx2, null, " ", KernelIsa.Avx2)]
    public void TheLowestOfCpuOptionAndEnvironmentWins(KernelIsa detected, KernelIsa? option, string? environment, KernelIsa expected)
    {
        var (isa, source) = GraniteKernels.ResolveIsa(detected, option, environment);
        isa.Should().Be(expected);
        if (expected == detected) source.Should().Be("detected");
        else source.Should().StartWith("capped by");
    }

    [Fact]
    public void AnUnknownEnvironmentValueIsAClearError()
    {
        var act = () => GraniteKernels.ResolveIsa(KernelIsa.Avx2, null, "sse9");
        act.Should().Throw<ArgumentException>().WithMessage("GRANITE_ISA='sse9' is not one of scalar, avx2, avx512, avx512bf16.");
    }

    [Fact]
    public void DetectedFeaturesFollowTheRuntimeAndTheCpuidBits()
    {
        var cpu = CpuFeatures.Current;
        cpu.Avx2Fma.Should().Be(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported);
        if (!cpu.Avx512) cpu.Avx512Bf16.Should().BeFalse("BF16 is an AVX-512 extension");
        if (File.Exists("/proc/cpuinfo"))
        {
            var flags = File.ReadLines("/proc/cpuinfo").First(l => l.StartsWith("flags", StringComparison.Ordinal)).Split(' ');
            cpu.Avx512Bf16.Should().Be(flags.Contains("avx512_bf16") && flags.Contains("avx512f"), "CPUID.(7,1):EAX[5] is what /proc/cpuinfo reports as avx512_bf16");
            cpu.Avx512.Should().Be(flags.Contains("avx512f") && flags.Contains("avx512bw") && flags.Contains("avx512vl") && flags.Contains("avx512dq"));
        }
        var kernels = GraniteKernels.Create(null, 1);
        ((int)kernels.Isa).Should().BeLessThanOrEqualTo((int)cpu.Highest);
        kernels.Description.Should().Contain(kernels.Isa.ToString().ToLowerInvariant());
    }

    [Fact]
    public void ModelOptionCapsTheLoadedModelsKernels()
    {
        using var model = GraniteModel.Load(Golden.FixtureDir("tiny-h-moe"), new GraniteModelOptions { MaxIsa = KernelIsa.Scalar, Threads = 1 });
        model.Kernels.Isa.Should().Be(KernelIsa.Scalar);
        model.KernelDescription.Should().StartWith("scalar (capped by");
        model.Kernels.Workers.Count.Should().Be(1);
    }

    [Fact]
    public void OpenMpWaitPolicyIsPassiveInTheNativeEnvironmentBeforeLibTorchLoads()
    {
        GraniteRuntime.LoadReport.Should().StartWith(ThreadPolicy.WaitPolicyVariable + "=");
        if (!OperatingSystem.IsLinux()) return;
        var native = Marshal.PtrToStringAnsi(getenv(ThreadPolicy.WaitPolicyVariable));
        native.Should().NotBeNullOrEmpty("libgomp reads the C environment, not .NET's copy");
        native.Should().Be(Environment.GetEnvironmentVariable(ThreadPolicy.WaitPolicyVariable));
    }

    [Fact]
    public void OneDnnPrimitiveCachesAreCappedInTheNativeEnvironment()
    {
        foreach (var (name, value) in ThreadPolicy.NativeDefaults)
        {
            var managed = Environment.GetEnvironmentVariable(name);
            managed.Should().NotBeNullOrEmpty(name);
            GraniteRuntime.LoadReport.Should().Contain(name + "=" + managed);
            if (OperatingSystem.IsLinux()) Marshal.PtrToStringAnsi(getenv(name)).Should().Be(managed, "oneDNN and ideep read the C environment");
        }
        ThreadPolicy.NativeDefaults.Select(d => d.Name).Should().Contain(new[] { "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY" });
    }

    [Fact]
    public void PrefillGemmChoiceFollowsCpuFeaturesOrTheProbe()
    {
        Bf16GemmProbe.Decide(KernelIsa.Avx512Bf16, Bf16GemmMode.Native).Should().Be((true, "native (forced)"));
        Bf16GemmProbe.Decide(KernelIsa.Scalar, Bf16GemmMode.Upcast).Native.Should().BeFalse();
        if (Environment.GetEnvironmentVariable(Bf16GemmProbe.EnvironmentVariable) is { Length: > 0 }) return; // overridden run
        Bf16GemmProbe.Decide(KernelIsa.Avx512, Bf16GemmMode.Auto).Should().Be((false, "upcast to f32 (no AVX512-BF16)"));
        Bf16GemmProbe.Decide(KernelIsa.Avx2, Bf16GemmMode.Auto).Native.Should().BeFalse();
        var (native, reason) = Bf16GemmProbe.Decide(KernelIsa.Avx512Bf16, Bf16GemmMode.Auto);
        reason.Should().MatchRegex(@"^(native|upcast to f32) \(probe: native [0-9.]+ ms, upcast [0-9.]+ ms, best of 5\)$");
        reason.Should().StartWith(native ? "native" : "upcast");
        // Once per process (and thread count): a second load must not re-time and possibly flip the choice.
        Bf16GemmProbe.Decide(KernelIsa.Avx512Bf16, Bf16GemmMode.Auto).Should().Be((native, reason));
    }

    [Fact]
    public void AvxFiveTwelveCpusUseTheMeasuredGemvWidth()
    {
        var kernels = GraniteKernels.Create(null, 1);
        if (kernels.Isa >= KernelIsa.Avx512) kernels.GemvIsa.Should().Be(KernelIsa.Avx2, "the 512-bit GEMV is opt-in (KernelTuning.Wide512Gemv)");
        else kernels.GemvIsa.Should().Be(kernels.Isa);
        GraniteKernels.Create(null, 1, new KernelTuning { Wide512Gemv = true }).GemvIsa.Should().Be(kernels.Isa);
    }

    [DllImport("libc", EntryPoint = "getenv")]
    private static extern IntPtr getenv([MarshalAs(UnmanagedType.LPStr)] string name);
}
