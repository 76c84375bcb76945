using static TorchSharp.torch;

namespace Granite.Core.Modeling;

/// <summary>What the load (<see cref="Generation.GraniteEngine.Load"/>, <see cref="Generation.GraniteEngine.LoadReport"/>) found in the checkpoint.</summary>
/// <param name="ModelDirectory">The checkpoint folder.</param>
/// <param name="Missing">Required tensors the checkpoint lacks (empty after a successful load; on failure the report is in the exception's <c>Data["ModelLoadReport"]</c>).</param>
/// <param name="Unexpected">Checkpoint tensors the model does not use (loading still succeeds).</param>
/// <param name="IgnoredTiedLmHead">True when <c>lm_head.weight</c> was present but ignored because embeddings are tied.</param>
/// <param name="StoredDtype">Dtype of <c>model.embed_tokens.weight</c> in the checkpoint.</param>
/// <param name="WeightDtype">Dtype the weights (and activations) use in memory.</param>
/// <param name="ParameterCount">Parameters held by the model.</param>
public sealed record ModelLoadReport(
    string ModelDirectory,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    bool IgnoredTiedLmHead,
    ScalarType StoredDtype,
    ScalarType WeightDtype,
    long ParameterCount)
{
    /// <summary>The block format the linear weights run in (<c>"Q8_0"</c>, …), or null when they are dense.</summary>
    public string? QuantizedFormat { get; init; }

    /// <summary>Linear weights held as quantized blocks.</summary>
    public int QuantizedTensors { get; init; }

    /// <summary>Bytes of those blocks (private memory for quantize-at-load).</summary>
    public long QuantizedBytes { get; init; }

    /// <summary>Bytes the same weights took in the dense dtype they were loaded as.</summary>
    public long QuantizedSourceBytes { get; init; }
}
