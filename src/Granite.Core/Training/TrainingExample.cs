namespace Granite.Core.Training;

/// <summary>
/// One tokenized training sequence: <see cref="Ids"/> and, per position, whether predicting that token is supervised
/// (assistant output: tool calls, answers and the closing end-of-text). <see cref="PrefixLength"/> leading tokens are a
/// prefix shared with other examples of a batch (e.g. the system prompt with the tool declarations): they are computed
/// once per batch, and never supervised.
/// </summary>
internal sealed record TrainingExample(int[] Ids, bool[] Supervised, int PrefixLength = 0)
{
    /// <summary>Number of supervised target tokens.</summary>
    public int SupervisedCount => Supervised.Count(s => s);

    /// <summary>Throws when the arrays disagree or the prefix holds supervised tokens.</summary>
    public void Validate()
    {
        if (Ids.Length != Supervised.Length) throw new ArgumentException($"Example has {Ids.Length} ids but {Supervised.Length} mask entries.");
        if (PrefixLength < 0 || PrefixLength > Ids.Length - 2) throw new ArgumentException($"Prefix length {PrefixLength} leaves fewer than 2 tokens of a {Ids.Length}-token example.");
        for (int i = 0; i < PrefixLength; i++)
            if (Supervised[i]) throw new ArgumentException($"Token {i} is supervised but inside the shared prefix ({PrefixLength} tokens).");
        if (Supervised.Length > 0 && Supervised[0]) throw new ArgumentException("The first token cannot be supervised (nothing predicts it).");
    }
}
