using System.Diagnostics;
using TorchSharp;

namespace Granite.TestHelpers;

/// <summary>
/// A loop of LibTorch work on the oneDNN paths that once crashed at process exit on AVX-512 machines: a depthwise BF16
/// conv1d feeding a BF16 matmul. Used by the engine lifetime tests and the exit probe (a child process) to have real
/// native work running while an engine is disposed or the process exits.
/// </summary>
public static class NativeBusyWork
{
    /// <summary>
    /// Runs rounds of <c>w[channels×channels] · conv1d(x[1×channels×256], k[channels×1×4], groups: channels)</c> for about
    /// <paramref name="seconds"/> on the calling thread (each round in its own dispose scope) and returns the number of
    /// rounds run (at least one).
    /// </summary>
    public static int Run(double seconds, int channels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        var sw = Stopwatch.StartNew();
        int rounds = 0;
        using var w = torch.rand(channels, channels, dtype: torch.ScalarType.BFloat16);
        using var x = torch.rand(1, channels, 256, dtype: torch.ScalarType.BFloat16);
        using var k = torch.rand(channels, 1, 4, dtype: torch.ScalarType.BFloat16);
        do
        {
            using var scope = torch.NewDisposeScope();
            var y = torch.nn.functional.conv1d(x, k, groups: channels).squeeze(0); // [channels, 253]
            w.matmul(y).sum().to_type(torch.ScalarType.Float32).item<float>();
            rounds++;
        }
        while (sw.Elapsed.TotalSeconds < seconds);
        return rounds;
    }
}
