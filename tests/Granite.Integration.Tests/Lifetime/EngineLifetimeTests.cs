using Granite.Core;
using Granite.Core.Generation;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.SemanticKernel;

namespace Granite.Integration.Tests.Lifetime;

/// <summary>
/// Whoever creates the engine disposes it, and disposal never returns while native work runs on the inference thread:
/// DI containers (M.E.AI, keyed, generic host, Semantic Kernel), the engine itself, and a process that never disposes.
/// </summary>
[Collection(ProcessWide.Collection)] // ProcessExit hooks and child processes that exit with native work running
public class EngineLifetimeTests
{
    public EngineLifetimeTests() => GraniteRuntime.EnsureLoaded();

    private static string ModelDir => Fixtures.Dir(Fixtures.TinyHMoe);

    /// <summary>Queues about <paramref name="seconds"/> of LibTorch work (BF16 matmul + depthwise conv1d, the oneDNN
    /// paths) and returns once it runs; <see cref="NativeWork.Completed"/> turns true only when it has finished.</summary>
    private sealed class NativeWork
    {
        private int _completed;
        public bool Completed => Volatile.Read(ref _completed) != 0;
        public Task<int> Task { get; }

        public NativeWork(GraniteEngine engine, double seconds)
        {
            using var started = new ManualResetEventSlim();
            Task = engine.RunOnInferenceThreadAsync(() =>
            {
                started.Set();
                int rounds = NativeBusyWork.Run(seconds, channels: 256);
                Volatile.Write(ref _completed, 1);
                return rounds;
            });
            started.Wait(TimeSpan.FromSeconds(60)).Should().BeTrue("the inference thread starts the work");
        }
    }

    private static async Task AssertDisposed(GraniteEngine engine)
    {
        Action run = () => engine.RunOnInferenceThreadAsync(() => 1);
        run.Should().Throw<ObjectDisposedException>();
        var generate = async () =>
        {
            await foreach (var _ in engine.GenerateAsync(new GenerationRequest { PromptTokens = new[] { 1, 2, 3 } })) { }
        };
        await generate.Should().ThrowAsync<ObjectDisposedException>();
    }

    [Fact]
    public async Task Disposing_The_Provider_Waits_For_Native_Work_And_Disposes_The_Engine()
    {
        var services = new ServiceCollection();
        services.AddGraniteChatClient(o => o.ModelPath = ModelDir).UseFunctionInvocation();
        var sp = services.BuildServiceProvider();
        var engine = sp.GetRequiredService<IChatClient>().GetService<GraniteEngine>()!;
        var work = new NativeWork(engine, 0.5);

        sp.Dispose();

        work.Completed.Should().BeTrue("Dispose returns only after the running native work has finished");
        work.Task.IsCompletedSuccessfully.Should().BeTrue();
        await AssertDisposed(engine);
    }

    [Fact]
    public async Task Disposing_The_Provider_Disposes_A_Keyed_Engine()
    {
        var services = new ServiceCollection();
        services.AddKeyedGraniteChatClient("tiny", o => o.ModelPath = ModelDir);
        var sp = services.BuildServiceProvider();
        var engine = sp.GetRequiredKeyedService<IChatClient>("tiny").GetService<GraniteEngine>()!;
        var work = new NativeWork(engine, 0.5);

        sp.Dispose();

        work.Completed.Should().BeTrue();
        await AssertDisposed(engine);
    }

    [Fact]
    public async Task Disposing_A_Generic_Host_Disposes_The_Engine()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddGraniteChatClient(o => o.ModelPath = ModelDir);
        var host = builder.Build();
        await host.StartAsync();
        var engine = host.Services.GetRequiredService<IChatClient>().GetService<GraniteEngine>()!;
        var work = new NativeWork(engine, 0.5);

        await host.StopAsync();
        host.Dispose();

        work.Completed.Should().BeTrue();
        await AssertDisposed(engine);
    }

    [Fact]
    public async Task Disposing_A_Kernels_Services_Disposes_The_Engine()
    {
        var kernel = Kernel.CreateBuilder().AddGraniteChatClient(ModelDir).Build();
        var engine = kernel.GetRequiredService<IChatClient>().GetService<GraniteEngine>()!;
        var work = new NativeWork(engine, 0.5);

        ((IDisposable)kernel.Services).Dispose();

        work.Completed.Should().BeTrue();
        await AssertDisposed(engine);
    }

    private readonly struct Touch(int[] hits) : Granite.Core.Kernels.IKernelLoop
    {
        public void Run(int index) => Interlocked.Increment(ref hits[index]);
    }

    [Fact]
    public async Task Engine_Dispose_Joins_The_Managed_Kernel_Helper_Threads()
    {
        var options = new GraniteEngineOptions { Model = new Granite.Core.Modeling.GraniteModelOptions { Threads = 2, KernelTuning = new Granite.Core.Kernels.KernelTuning { PersistentWorkers = true } } };
        var engine = GraniteEngine.Load(ModelDir, options);
        var workers = engine.Model.Kernels.Workers;
        var hits = new int[256];
        await engine.RunOnInferenceThreadAsync(() => { workers.For(hits.Length, new Touch(hits)); return workers.LiveHelpers; });
        hits.Should().OnlyContain(h => h == 1);
        workers.LiveHelpers.Should().Be(1, "the pool's helper runs next to the inference thread");

        engine.Dispose();

        workers.LiveHelpers.Should().Be(0, "disposing the engine joins the helper threads");
        await AssertDisposed(engine);
    }

    [Fact]
    public async Task Disposing_An_Engine_That_Does_Not_Own_Its_Model_Stops_The_Helpers_And_Leaves_The_Model_Usable()
    {
        using var model = Granite.Core.Modeling.GraniteModel.Load(ModelDir, new Granite.Core.Modeling.GraniteModelOptions { Threads = 2, KernelTuning = new Granite.Core.Kernels.KernelTuning { PersistentWorkers = true } });
        var engine = new GraniteEngine(model, Granite.Core.Tokenization.GraniteTokenizer.FromDirectory(ModelDir), ownsModel: false);
        var workers = model.Kernels.Workers;
        await engine.RunOnInferenceThreadAsync(() => { workers.For(64, new Touch(new int[64])); return 0; });
        workers.LiveHelpers.Should().Be(1);

        engine.Dispose();

        workers.LiveHelpers.Should().Be(0);
        var hits = new int[64];
        workers.For(hits.Length, new Touch(hits));
        hits.Should().OnlyContain(h => h == 1, "the model's kernels start their helpers again");
        using var state = model.CreateState();
        using var logits = model.Forward(new[] { 1, 2, 3 }, state);
        logits.shape.Should().Equal(model.Config.VocabSize);
    }

    [Fact]
    public async Task Engine_Dispose_Fails_Queued_Work_And_Joins_The_Running_Item()
    {
        var engine = GraniteEngine.Load(ModelDir);
        var running = new NativeWork(engine, 0.5);
        var queued = engine.RunOnInferenceThreadAsync(() => 42);

        engine.Dispose();

        running.Completed.Should().BeTrue();
        await queued.Invoking(t => t).Should().ThrowAsync<ObjectDisposedException>("queued work does not run after Dispose");
        await AssertDisposed(engine);
        engine.Dispose(); // idempotent
    }

    [Fact]
    public async Task Dispose_Cancels_A_Background_Prefill_Between_Layers()
    {
        var engine = GraniteEngine.Load(ModelDir);
        // Block the thread, then queue a prefill behind it: disposing while it waits fails it; it never runs a pass.
        var blocker = new NativeWork(engine, 0.3);
        var prefill = engine.PrefillAsync(Enumerable.Range(1, 40).ToArray(), "c1");
        engine.Dispose();
        blocker.Completed.Should().BeTrue();
        await prefill.Invoking(t => t).Should().ThrowAsync<ObjectDisposedException>();
    }

    [Fact]
    public async Task A_Cancelled_Pass_Stops_Between_Layers_And_Faults_The_State()
    {
        using var engine = GraniteEngine.Load(ModelDir);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var outcome = await engine.RunOnInferenceThreadAsync(() =>
        {
            using var state = engine.Model.CreateState();
            try
            {
                engine.Model.Forward(new[] { 1, 2, 3 }, state, cts.Token).Dispose();
                return "completed";
            }
            catch (OperationCanceledException)
            {
                return state.IsFaulted ? "cancelled, faulted" : "cancelled, not faulted";
            }
        });
        outcome.Should().Be("cancelled, faulted");
    }

    [Fact]
    public async Task A_Process_That_Never_Disposes_Exits_Cleanly_After_Its_Native_Work()
    {
        string probe = Path.Combine(AppContext.BaseDirectory, "Granite.ExitProbe.dll");
        File.Exists(probe).Should().BeTrue($"the exit probe is built next to the tests ({probe})");
        for (int run = 0; run < 3; run++)
        {
            string marker = Path.Combine(Path.GetTempPath(), $"granite-exit-probe-{Environment.ProcessId}-{run}-{Guid.NewGuid():N}");
            var result = await ChildProcess.RunDotnetAsync(probe, [ModelDir, marker, "1"]);
            result.ExitCode.Should().Be(0, $"run {run}: the process exits cleanly ({result})");
            File.Exists(marker).Should().BeTrue($"run {run}: the running native work finished before the process exited ({result})");
            File.Delete(marker);
        }
    }
}
