namespace Granite.Core.Generation;

/// <summary>
/// Decides, token by token, when generation ends: stop tokens, the token limit, and stop sequences (through a
/// <see cref="StopSequenceMatcher"/>). Also decides which text is safe to stream.
/// </summary>
internal sealed class StopConditions
{
    private readonly HashSet<int> _stopTokens;
    private readonly StopSequenceMatcher _matcher;
    private readonly int? _maxNewTokens;

    /// <summary>Creates the stop conditions of a request.</summary>
    /// <param name="options">The request's options (validated here).</param>
    /// <param name="tokenBudget">Optional extra cap on new tokens, e.g. what is left of the context window; the
    /// smaller of it and <see cref="SamplingOptions.MaxNewTokens"/> applies.</param>
    public StopConditions(SamplingOptions options, int? tokenBudget = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (tokenBudget is < 1)
            throw new ArgumentOutOfRangeException(nameof(tokenBudget), tokenBudget, "tokenBudget must be ≥ 1.");
        _stopTokens = new HashSet<int>(options.StopTokenIds);
        _matcher = new StopSequenceMatcher(options.StopSequences);
        _maxNewTokens = (options.MaxNewTokens, tokenBudget) switch
        {
            (int a, int b) => Math.Min(a, b),
            (int a, null) => a,
            (null, int b) => b,
            _ => null,
        };
    }

    /// <summary>Number of tokens accepted so far.</summary>
    public int GeneratedCount { get; private set; }

    /// <summary>The effective token limit, if any.</summary>
    public int? MaxNewTokens => _maxNewTokens;

    /// <summary>Why generation ended, once it has.</summary>
    public GenerationFinishReason? FinishReason { get; private set; }

    /// <summary>The stop sequence that ended generation, if any.</summary>
    public string? MatchedStopSequence => _matcher.MatchedSequence;

    /// <summary>True for the stop (EOS) token ids of the request.</summary>
    public bool IsStopToken(int tokenId) => _stopTokens.Contains(tokenId);

    /// <summary>Accepts one generated token and its decoded text increment.</summary>
    /// <param name="tokenId">The sampled token.</param>
    /// <param name="text">Its decoded text (ignored for stop tokens, which produce no text).</param>
    /// <returns>The text safe to emit and, when this token ends generation, the finish reason. On the final step the
    /// text includes everything that was held back.</returns>
    /// <exception cref="InvalidOperationException">Generation has already finished.</exception>
    public GenerationStep Accept(int tokenId, string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (FinishReason is { } done)
            throw new InvalidOperationException($"Generation already finished ({done}).");
        GeneratedCount++;

        if (IsStopToken(tokenId))
            return Finish(tokenId, _matcher.Flush(), GenerationFinishReason.Stop);

        var match = _matcher.Append(text);
        if (match.Stopped)
            return Finish(tokenId, match.Text, GenerationFinishReason.StopSequence);
        if (GeneratedCount >= _maxNewTokens)
            return Finish(tokenId, match.Text + _matcher.Flush(), GenerationFinishReason.Length);
        return new GenerationStep(tokenId, match.Text, null);
    }

    /// <summary>Ends generation early (cancellation or an external limit) and returns the held-back text.</summary>
    public string Finish(GenerationFinishReason reason)
    {
        if (FinishReason is not null)
            return "";
        FinishReason = reason;
        return _matcher.Flush();
    }

    private GenerationStep Finish(int tokenId, string text, GenerationFinishReason reason)
    {
        FinishReason = reason;
        return new GenerationStep(tokenId, text, reason);
    }
}
