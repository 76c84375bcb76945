namespace Granite.Core.Kernels;

/// <summary>
/// Instruction-set levels of the CPU kernels, lowest first. The kernels pick the highest level the CPU supports, capped by
/// <see cref="Modeling.GraniteModelOptions.MaxIsa"/> and the <c>GRANITE_ISA</c> environment variable (so the lower paths
/// can be run and tested on a bigger machine).
/// </summary>
public enum KernelIsa
{
    /// <summary>Portable scalar loops (any CPU; the reference path of the managed kernels).</summary>
    Scalar = 0,

    /// <summary>256-bit AVX2 + FMA.</summary>
    Avx2 = 1,

    /// <summary>512-bit AVX-512 (F, BW, VL, DQ).</summary>
    Avx512 = 2,

    /// <summary>AVX-512 with the BF16 extension (native BF16 dot products/GEMM in LibTorch's oneDNN kernels).</summary>
    Avx512Bf16 = 3,
}
