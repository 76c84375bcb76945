// Usage: Granite.ExitProbe <model-dir> <marker-file> [seconds]
// Loads the engine, queues about <seconds> (default 1) of LibTorch work on the inference thread that ends by writing
// <marker-file>, waits until that work has started, and returns from Main WITHOUT disposing the engine. A correct
// runtime lets the running work finish before the C runtime's exit handlers run: exit code 0 and the marker exists.
using Granite.Core.Generation;

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
    // BF16 matmul and depthwise conv1d: the oneDNN paths that crashed at exit on AVX-512 machines.
    int rounds = Granite.TestHelpers.NativeBusyWork.Run(seconds, channels: 384);
    File.WriteAllText(args[1], $"done {rounds}");
    return rounds;
});
started.Wait();
_ = work.ContinueWith(t => Console.Error.WriteLine("work failed: " + t.Exception!.GetBaseException().Message), TaskContinuationOptions.OnlyOnFaulted);
Console.WriteLine("queued; returning from Main without disposing");
return 0;
