using System.Runtime.CompilerServices;
using Granite.Demo;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using Microsoft.SemanticKernel.ChatCompletion;

namespace Granite.Cli.Demo;

/// <summary>
/// The agent sample's plugins in a real Semantic Kernel, with the tool declarations exactly as SK hands them to an
/// <see cref="IChatClient"/> (captured from a real <c>FunctionChoiceBehavior.Auto()</c> request through the same
/// pipeline the sample registers), and invocation through those same <see cref="AIFunction"/>s.
/// </summary>
internal sealed class DemoTools : IDisposable
{
    private readonly SettableClock _clock;
    private readonly Dictionary<string, AIFunction> _byName;
    private readonly string _filesRoot;

    private DemoTools(string filesRoot, IReadOnlyList<AITool> declarations, Kernel kernel, DemoToolContext context, SettableClock clock)
    {
        _clock = clock;
        _filesRoot = filesRoot;
        Declarations = declarations;
        Kernel = kernel;
        Context = context;
        _byName = declarations.OfType<AIFunction>().ToDictionary(f => f.Name, StringComparer.Ordinal);
    }

    /// <summary>The tools as SK offers them (names <c>Plugin_Function</c>, SK's JSON schemas).</summary>
    public IReadOnlyList<AITool> Declarations { get; }

    public Kernel Kernel { get; }

    public DemoToolContext Context { get; }

    /// <summary>Creates the plugins over a fresh folder of files (named from <paramref name="seed"/>) for <c>Files.FindFiles</c>.</summary>
    public static DemoTools Create(long seed)
    {
        string root = Path.Combine(Path.GetTempPath(), "granite-demo-files-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(root);
        foreach (var name in DemoCorpus.FolderFiles(seed)) File.WriteAllText(Path.Combine(root, name), "");
        var clock = new SettableClock();
        var context = new DemoToolContext(clock, root);
        var capture = new DeclarationCapture();
        var builder = Microsoft.SemanticKernel.Kernel.CreateBuilder();
        builder.Services.AddChatClient(capture).UseKernelFunctionInvocation();
        builder.Services.AddSingleton<IChatCompletionService>(sp => sp.GetRequiredService<IChatClient>().AsChatCompletionService(sp));
        DemoAgent.AddPlugins(builder.Plugins, context);
        var kernel = builder.Build();
        var chat = kernel.GetRequiredService<IChatCompletionService>();
        var history = new ChatHistory(DemoAgent.SystemPrompt);
        history.AddUserMessage("hello");
        // On the thread pool: callers may hold a single-threaded synchronization context (test runners, UI).
        Task.Run(() => chat.GetChatMessageContentAsync(history, new PromptExecutionSettings { FunctionChoiceBehavior = FunctionChoiceBehavior.Auto() }, kernel)).GetAwaiter().GetResult();
        var tools = capture.Tools ?? throw new InvalidOperationException("Semantic Kernel offered no tools to the chat client.");
        return new DemoTools(root, tools.ToArray(), kernel, context, clock);
    }

    /// <summary>Sets the time the time tools report.</summary>
    public void SetClock(DateTimeOffset now) => _clock.Now = now;

    /// <summary>The rendered tool declaration block, as the template writes it (one JSON object per tool).</summary>
    public IReadOnlyList<string> DeclarationJson => Declarations.Select(ChatMessageMapper.ToolToJson).ToArray();

    /// <summary>Runs the real tool for <paramref name="call"/> and returns its result as the template renders it.</summary>
    public string Invoke(ExpectedCall call) => Invoke(call.Name, call.ArgumentObjects());

    public string Invoke(string name, IDictionary<string, object?> arguments)
    {
        if (!_byName.TryGetValue(name, out var fn)) throw new KeyNotFoundException($"no tool named '{name}'");
        var raw = Task.Run(() => fn.InvokeAsync(new AIFunctionArguments(arguments)).AsTask()).GetAwaiter().GetResult();
        return ChatMessageMapper.ResultToText(raw);
    }

    public bool HasTool(string name) => _byName.ContainsKey(name);

    public void Dispose()
    {
        (Kernel.Services as IDisposable)?.Dispose();
        try { Directory.Delete(_filesRoot, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private sealed class SettableClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2025, 6, 1, 12, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>An <see cref="IChatClient"/> that records the tools of the request and answers with text.</summary>
    private sealed class DeclarationCapture : IChatClient
    {
        public IList<AITool>? Tools { get; private set; }

        public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            Tools = options?.Tools?.ToList();
            return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, "ok")));
        }

        public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            Tools = options?.Tools?.ToList();
            await Task.Yield();
            yield return new ChatResponseUpdate(ChatRole.Assistant, "ok");
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => serviceType.IsInstanceOfType(this) ? this : null;

        public void Dispose() { }
    }
}
