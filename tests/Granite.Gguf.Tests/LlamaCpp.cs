using LLama;
using LLama.Common;
using LLama.Native;

namespace Granite.Gguf.Tests;

/// <summary>
/// A llama.cpp model loaded through LLamaSharp for exact comparisons: CPU only, F32 KV cache, flash attention off
/// (llama.cpp's recurrent Mamba state is always F32), one thread. Only warnings and errors of llama.cpp's log are kept.
/// </summary>
internal sealed class LlamaCpp : IDisposable
{
    private static readonly object LogGate = new();
    private static bool _logSet;
    private static readonly List<string> Warnings = new();

    public LLamaWeights Weights { get; }
    public LLamaContext Context { get; }

    public LlamaCpp(string ggufPath, int contextSize = 256)
    {
        lock (LogGate)
        {
            if (!_logSet)
            {
                NativeLogConfig.llama_log_set((level, message) =>
                {
                    if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error) lock (Warnings) Warnings.Add(message.TrimEnd());
                });
                _logSet = true;
            }
        }
        var p = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize, BatchSize = (uint)contextSize, UBatchSize = (uint)contextSize,
            Threads = 1, BatchThreads = 1, GpuLayerCount = 0,
            FlashAttention = false, TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32,
        };
        Weights = LLamaWeights.LoadFromFile(p);
        try { Context = Weights.CreateContext(p); }
        catch { Weights.Dispose(); throw; }
    }

    /// <summary>llama.cpp's warnings and errors so far (for failure messages).</summary>
    public static string RecentLog() { lock (Warnings) return string.Join(" | ", Warnings.TakeLast(5)); }

    /// <summary>Clears the sequence (KV cache and recurrent state).</summary>
    public void Reset() => Context.NativeHandle.MemoryClear(true);

    /// <summary>Feeds <paramref name="ids"/> at positions <paramref name="start"/>.. and returns the logits of every
    /// position (<paramref name="allPositions"/>) or only of the last.</summary>
    public float[][] Decode(IReadOnlyList<int> ids, int start, bool allPositions)
    {
        var batch = new LLamaBatch();
        for (int i = 0; i < ids.Count; i++) batch.Add(ids[i], start + i, LLamaSeqId.Zero, allPositions || i == ids.Count - 1);
        var r = Context.Decode(batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {r}: {RecentLog()}");
        var rows = new List<float[]>();
        for (int i = 0; i < ids.Count; i++)
            if (allPositions || i == ids.Count - 1) rows.Add(Context.NativeHandle.GetLogitsIth(i).ToArray());
        return rows.ToArray();
    }

    public void Dispose()
    {
        Context.Dispose();
        Weights.Dispose();
    }
}
