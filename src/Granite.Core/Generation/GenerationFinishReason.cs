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
