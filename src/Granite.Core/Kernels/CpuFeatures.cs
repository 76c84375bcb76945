using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Granite.Core.Kernels;

/// <summary>What the CPU this process runs on supports (read at run time, never assumed from the build machine).</summary>
internal sealed record CpuFeatures(bool Avx2Fma, bool Avx512, bool Avx512Bf16, bool Amx)
{
    /// <summary>The features of the current CPU (as far as the runtime and the OS expose them).</summary>
    public static CpuFeatures Current { get; } = Detect();

    /// <summary>Highest <see cref="KernelIsa"/> these features allow.</summary>
    public KernelIsa Highest => Avx512Bf16 ? KernelIsa.Avx512Bf16 : Avx512 ? KernelIsa.Avx512 : Avx2Fma ? KernelIsa.Avx2 : KernelIsa.Scalar;

    /// <summary>The flags as in <c>/proc/cpuinfo</c>, for reports.</summary>
    public override string ToString()
    {
        var flags = new List<string>();
        if (Avx2Fma) flags.Add("avx2 fma");
        if (Avx512) flags.Add("avx512f/bw/vl/dq");
        if (Avx512Bf16) flags.Add("avx512_bf16");
        if (Amx) flags.Add("amx_bf16");
        return flags.Count == 0 ? "no SIMD beyond SSE" : string.Join(' ', flags);
    }

    private static CpuFeatures Detect()
    {
        bool avx2 = Avx2.IsSupported && Fma.IsSupported && Vector256.IsHardwareAccelerated;
        // The runtime's IsSupported already checks that the OS saves the AVX-512 state (XCR0).
        bool avx512 = avx2 && Avx512F.IsSupported && Avx512BW.IsSupported && Avx512DQ.IsSupported && Avx512F.VL.IsSupported
                      && Vector512.IsHardwareAccelerated;
        bool bf16 = false, amx = false;
        if (X86Base.IsSupported)
        {
            var (maxLeaf, _, _, _) = X86Base.CpuId(0, 0);
            if (maxLeaf >= 7)
            {
                var (_, _, _, edx7) = X86Base.CpuId(7, 0);
                var (eax71, _, _, _) = X86Base.CpuId(7, 1);
                bf16 = avx512 && (eax71 & (1 << 5)) != 0;                 // CPUID.(7,1):EAX[5] AVX512_BF16
                amx = avx512 && (edx7 & (1 << 22)) != 0;                  // CPUID.(7,0):EDX[22] AMX-BF16 (reported only)
            }
        }
        return new CpuFeatures(avx2, avx512, bf16, amx);
    }
}
