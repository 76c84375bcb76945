namespace Granite.Core.Modeling;

/// <summary>
/// The two token rules every entry point enforces, each checked here only: a token id lies in the model's vocabulary,
/// and a sequence fits the context window (<c>max_position_embeddings</c>). Used by the model, the engine, the trainer,
/// the sampler and the chat client, so the rule and its message are the same everywhere.
/// </summary>
internal static class TokenLimits
{
    /// <summary>Throws when <paramref name="id"/> is outside [0, <paramref name="vocabSize"/>).</summary>
    /// <param name="id">The token id.</param>
    /// <param name="index">Its position in the caller's list (named in the message).</param>
    /// <param name="vocabSize">Number of ids of the model (rows of the embedding, or of the logits).</param>
    /// <param name="paramName">The caller's parameter that holds the ids.</param>
    /// <param name="what">How the message names the id, e.g. "Prompt token id".</param>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    public static void CheckInVocabulary(int id, int index, int vocabSize, string paramName, string what = "Token id")
    {
        if ((uint)id >= (uint)vocabSize)
            throw new ArgumentOutOfRangeException(paramName, id, $"{what} {id} at index {index} is outside the vocabulary [0, {vocabSize}).");
    }

    /// <summary>Throws when any of <paramref name="ids"/> is outside [0, <paramref name="vocabSize"/>) (the first one is named).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    public static void CheckInVocabulary(ReadOnlySpan<int> ids, int vocabSize, string paramName, string what = "Token id")
    {
        for (int i = 0; i < ids.Length; i++) CheckInVocabulary(ids[i], i, vocabSize, paramName, what);
    }

    /// <inheritdoc cref="CheckInVocabulary(ReadOnlySpan{int}, int, string, string)"/>
    public static void CheckInVocabulary(IReadOnlyList<int> ids, int vocabSize, string paramName, string what = "Token id")
    {
        for (int i = 0; i < ids.Count; i++) CheckInVocabulary(ids[i], i, vocabSize, paramName, what);
    }

    /// <summary>Throws when <paramref name="held"/> tokens plus <paramref name="adding"/> more exceed the context window.</summary>
    /// <param name="held">Tokens already in the context (a state's length, or a prompt).</param>
    /// <param name="adding">Tokens to add (new ids, forced tokens, or 1 for the first generated token).</param>
    /// <param name="contextLimit">The model's <c>max_position_embeddings</c>.</param>
    /// <param name="what">What would hold them, e.g. "The prompt and its first generated token".</param>
    /// <param name="paramName">The caller's parameter at fault.</param>
    /// <exception cref="ArgumentException">They do not fit.</exception>
    public static void CheckContext(long held, long adding, int contextLimit, string what, string paramName)
    {
        long total = held + adding;
        if (total > contextLimit)
            throw new ArgumentException($"{what} would hold {total} tokens ({held} + {adding}), but the context limit is {contextLimit} tokens: max_position_embeddings ({contextLimit}).", paramName);
    }
}
