// Usage: Granite.ExitProbe <model-dir> <marker-file> [seconds]
// Loads the engine, queues about <seconds> (default 1) of LibTorch work on the inference thread that ends by writing
// <marker-file>, waits until that work has started, and returns from Main WITHOUT disposing the engine. A correct
// runtime lets the running work finish before the C runtime's exit handlers run: exit code 0 and the marker exists.
using System.Diagnostics;
using Granite.Core.Generation;
using TorchSharp;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Granite.ExitProbe <model-dir> <marker-file> [seconds]");
    return 2;
}
double seconds = args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 1.0;
var engine = GraniteEngine.Load(args[0]);
using var started = new ManualResetEventSlim();
var work = engine.RunOnInferenceThreadAsync(() =>
{
    started.Set();
    var sw = Stopwatch.StartNew();
    int rounds = 0;
    // BF16 matmul and depthwise conv1d: the oneDNN paths that crashed at exit on AVX-512 machines.
    using var w = torch.rand(384, 384, dtype: torch.ScalarType.BFloat16);
    using var x = torch.rand(1, 384, 256, dtype: torch.ScalarType.BFloat16);
    using var k = torch.rand(384, 1, 4, dtype: torch.ScalarType.BFloat16);
    while (sw.Elapsed.TotalSeconds < seconds)
    {
        using var scope = torch.NewDisposeScope();
        var y = torch.nn.functional.conv1d(x, k, groups: 384).squeeze(0); // [384, 253]
        w.matmul(y).sum().to_type(torch.ScalarType.Float32).item<float>();
        rounds++;
    }
    File.WriteAllText(args[1], $"done {rounds}");
    return rounds;
});
started.Wait();
_ = work.ContinueWith(t => Console.Error.WriteLine("work failed: " + t.Exception!.GetBaseException().Message), TaskContinuationOptions.OnlyOnFaulted);
Console.WriteLine("queued; returning from Main without disposing");
return 0;
