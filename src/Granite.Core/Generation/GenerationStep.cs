namespace Granite.Core.Generation;

/// <summary>The outcome of one generated token.</summary>
/// <param name="TokenId">The sampled token id.</param>
/// <param name="Text">Text that is safe to emit now (may be empty while a possible stop sequence is held back).</param>
/// <param name="FinishReason">Set when this token ended generation; <see langword="null"/> otherwise.</param>
internal readonly record struct GenerationStep(int TokenId, string Text, GenerationFinishReason? FinishReason)
{
    /// <summary>True when generation ended with this token.</summary>
    public bool IsFinal => FinishReason is not null;
}
