using Granite.Core.State;
using Granite.Core.Modeling;

namespace Granite.Extensions.AI;

/// <summary>Options of a <see cref="GraniteChatClient"/> (bound from the <c>"Granite"</c> configuration section by
/// <c>AddGraniteChatClient(IConfiguration)</c>).</summary>
public sealed class GraniteChatClientOptions
{
    /// <summary>Folder of a Hugging Face Granite 4.0 checkpoint (config.json, *.safetensors, tokenizer.json), or a llama.cpp
    /// GGUF file of one (any name, e.g. an Ollama blob; imported once into a cached folder, see docs/gguf.md).</summary>
    public string? ModelPath { get; set; }

    /// <summary>Model id reported in responses and metadata (default: the folder name).</summary>
    public string? ModelId { get; set; }

    /// <summary>Weight dtype policy: keep as stored (BF16 for real checkpoints, fast) or convert to float32 (parity).</summary>
    public WeightDtypePolicy WeightDtype { get; set; } = WeightDtypePolicy.AsStored;

    /// <summary>Intra-op threads of the inference thread (0 = TorchSharp default).</summary>
    public int Threads { get; set; }

    /// <summary>Device of the model: <c>cpu</c> (default) or a CUDA device such as <c>cuda:0</c> (needs a CUDA backend
    /// package, see docs/runtime.md).</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>MoE expert offload budget: <c>off</c> (default, all experts resident), a byte count with optional K/M/G
    /// suffix, or a percentage of the routed-expert bytes such as <c>25%</c> (same syntax as the CLI's
    /// <c>--expert-budget</c>; see docs/expert-offload.md). Ignored for models without routed experts.</summary>
    public string? ExpertBudget { get; set; }

    /// <summary>Byte budget of conversation snapshots for session reuse (0 disables reuse). Default 512 MiB.</summary>
    public long SessionCacheBytes { get; set; } = 512L << 20;

    /// <summary>Folder for session snapshots evicted from the memory budget (null = no disk spill; they are dropped).</summary>
    public string? SessionSpillDirectory { get; set; }

    /// <summary>Byte budget of <see cref="SessionSpillDirectory"/>. Default 4 GiB.</summary>
    public long SessionSpillBytes { get; set; } = 4L << 30;

    /// <summary>Byte budget of host-memory copies of snapshots evicted from a GPU budget (0 = none; ignored on CPU).</summary>
    public long SessionHostSpillBytes { get; set; }

    /// <summary>Storage dtype of the SSM state in snapshots: <c>Float32</c> (default, exact) or <c>BFloat16</c> (half the
    /// Mamba bytes at a small, documented accuracy cost; docs/session-state.md).</summary>
    public SnapshotStateDtype SessionStateDtype { get; set; } = SnapshotStateDtype.Float32;

    /// <summary>When an assistant turn re-renders to other tokens than were generated (e.g. tool-call JSON spacing), store
    /// a snapshot of the history as the template renders it right after the response, so the next turn still reuses it
    /// all (default true; the work is a prefill of the turn's tokens that the next turn would otherwise do).</summary>
    public bool RepairSessionSnapshots { get; set; } = true;

    /// <summary>Most requests generating at once, decoded together in one batched forward per step (1..64, default 8;
    /// 1 = one after another). Further requests wait in arrival order.</summary>
    public int MaxBatchSize { get; set; } = 8;

    /// <summary>Prompt tokens per prefill pass of a new request, interleaved with the active requests' decode steps
    /// (default 256).</summary>
    public int PrefillChunkTokens { get; set; } = 256;

    /// <summary>Byte budget of the active requests' inference states (default 2 GiB; 0 = only MaxBatchSize limits);
    /// requests beyond it wait in arrival order.</summary>
    public long MaxBatchStateBytes { get; set; } = 2L << 30;

    /// <summary>With <c>ToolMode.Auto</c>: constrain a tool call the model opens by itself to a declared tool name and that
    /// tool's parameter schema, so it always parses (default true; per request: the <c>constrain_tool_calls</c> knob).
    /// Required tool calls and <c>ResponseFormat</c> JSON are always constrained (docs/structured-output.md).</summary>
    public bool ConstrainToolCalls { get; set; } = true;

    /// <summary>Default <c>MaxOutputTokens</c> when a request sets none.</summary>
    public int DefaultMaxOutputTokens { get; set; } = 1024;

    /// <summary>Default temperature when a request sets none (IBM recommends 0 = greedy for most tasks).</summary>
    public float DefaultTemperature { get; set; }

    /// <summary>
    /// Stored conversations (default false = stateless). Stateless: responses carry no <c>ConversationId</c>, the caller
    /// resends the whole history each turn (what <c>FunctionInvokingChatClient</c> and Agent Framework's
    /// <c>ChatClientAgent</c> do when no id comes back), and session-state reuse still resumes the resent prefix; a request
    /// that passes a <c>ConversationId</c> is an <see cref="InvalidOperationException"/>. True: every response carries a
    /// conversation id, the client keeps that history in memory (see <see cref="MaxStoredConversations"/>), and a request
    /// that passes the id back sends only its new messages; an id the client does not hold (never issued, evicted, or a
    /// restarted process) is an <see cref="InvalidOperationException"/>, never a silent fresh start.
    /// </summary>
    public bool StoreConversations { get; set; }

    /// <summary>With <see cref="StoreConversations"/>: conversation histories kept in memory, least recently used dropped
    /// beyond this count (must be ≥ 1 then). Default 1024. Ignored when stateless.</summary>
    public int MaxStoredConversations { get; set; } = 1024;

    /// <summary>When the checkpoint's chat template is not the known Granite 4.0 template: true = refuse to load,
    /// false (default) = log a warning and render with the native Granite 4.0 renderer.</summary>
    public bool RequireKnownChatTemplate { get; set; }
}
