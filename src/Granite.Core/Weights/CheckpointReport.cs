namespace Granite.Core.Weights;

/// <summary>How a checkpoint's tensor names compare with the names a model expects.</summary>
/// <param name="Missing">Required names the checkpoint lacks (loading must fail when non-empty).</param>
/// <param name="MissingOptional">Optional names the checkpoint lacks (e.g. <c>lm_head.weight</c> with tied embeddings).</param>
/// <param name="Unexpected">Checkpoint tensors the model does not expect.</param>
internal sealed record CheckpointReport(IReadOnlyList<string> Missing, IReadOnlyList<string> MissingOptional, IReadOnlyList<string> Unexpected)
{
    /// <summary>True when no required tensor is missing.</summary>
    public bool IsComplete => Missing.Count == 0;

    /// <summary>Throws when a required tensor is missing.</summary>
    /// <param name="source">Where the checkpoint came from, for the message.</param>
    /// <exception cref="InvalidDataException">At least one required tensor is missing; the message lists them.</exception>
    public void ThrowIfIncomplete(string source)
    {
        if (IsComplete) return;
        const int shown = 20;
        var list = string.Join(", ", Missing.Take(shown).Select(n => $"'{n}'"));
        var more = Missing.Count > shown ? $" and {Missing.Count - shown} more" : "";
        throw new InvalidDataException($"{source}: checkpoint is missing {Missing.Count} required tensor(s): {list}{more}");
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"missing {Missing.Count} required, {MissingOptional.Count} optional; {Unexpected.Count} unexpected";
}
