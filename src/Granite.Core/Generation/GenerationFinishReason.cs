namespace Granite.Core.Generation;

/// <summary>Why generation ended.</summary>
public enum GenerationFinishReason
{
    /// <summary>The model produced a stop token (end of text).</summary>
    Stop,

    /// <summary>The token limit (<see cref="SamplingOptions.MaxNewTokens"/> or the context window) was reached.</summary>
    Length,

    /// <summary>The output contained one of <see cref="SamplingOptions.StopSequences"/>.</summary>
    StopSequence,

    /// <summary>The caller cancelled the request.</summary>
    Cancelled,
}

/// <summary>The outcome of one generated token.</summary>
/// <param name="TokenId">The sampled token id.</param>
/// <param name="Text">Text that is safe to emit now (may be empty while a possible stop sequence is held back).</param>
/// <param name="FinishReason">Set when this token ended generation; <see langword="null"/> otherwise.</param>
public readonly record struct GenerationStep(int TokenId, string Text, GenerationFinishReason? FinishReason)
{
    /// <summary>True when generation ended with this token.</summary>
    public bool IsFinal => FinishReason is not null;
}
