namespace Granite.Core.Generation;

/// <summary>
/// How the next token is chosen and when generation ends. All knobs are optional; the defaults give greedy decoding
/// with no penalties and no length limit. Call <see cref="Validate"/> (done by the sampler) to check the values.
/// </summary>
/// <remarks>
/// Processing order per step: padding mask → repetition penalty → frequency/presence penalties → temperature →
/// top-k → top-p → draw. See <c>docs/generation.md</c>.
/// </remarks>
public sealed record SamplingOptions
{
    /// <summary>Softmax temperature. <see langword="null"/> or 0 selects greedy decoding (argmax); must be ≥ 0.</summary>
    public float? Temperature { get; init; }

    /// <summary>Keep only the K most likely tokens before drawing. <see langword="null"/> or 0 disables it; must be ≥ 0.</summary>
    public int? TopK { get; init; }

    /// <summary>Nucleus sampling: keep the smallest set of most likely tokens whose probability sums to at least this
    /// value. Must be in (0, 1]; <see langword="null"/> or 1 disables it.</summary>
    public float? TopP { get; init; }

    /// <summary>Seed of the random generator. The same seed, options, and logits give the same tokens.
    /// <see langword="null"/> seeds from a random source.</summary>
    public long? Seed { get; init; }

    /// <summary>Hugging Face repetition penalty for every token already in the prompt or the output: positive logits are
    /// divided by it and negative ones multiplied. Must be &gt; 0; <see langword="null"/> or 1 disables it.</summary>
    public float? RepetitionPenalty { get; init; }

    /// <summary>OpenAI frequency penalty over generated tokens: logit −= penalty × count. Must be finite.</summary>
    public float? FrequencyPenalty { get; init; }

    /// <summary>OpenAI presence penalty over generated tokens: logit −= penalty if the token was generated. Must be finite.</summary>
    public float? PresencePenalty { get; init; }

    /// <summary>Maximum number of new tokens (stop tokens count). <see langword="null"/> means no limit; must be ≥ 1.</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary>Token ids that end generation (the EOS ids of <c>generation_config.json</c>/<c>config.json</c>).
    /// The stop token itself produces no text. Ids must be ≥ 0.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Strings that end generation. Text before the first one is returned; the sequence itself is not.
    /// Must not be null or empty strings.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = Array.Empty<string>();

    /// <summary>Logits of ids ≥ this value are set to −∞ (padding rows beyond the tokenizer's vocabulary).
    /// <see langword="null"/> masks nothing; must be ≥ 1.</summary>
    public int? MaskTokenIdsFrom { get; init; }

    /// <summary>True when the next token is the argmax (no temperature).</summary>
    public bool IsGreedy => Temperature is null or 0f;

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the parameter name is the option's name.</exception>
    /// <exception cref="ArgumentException">A list option is null or contains an invalid entry.</exception>
    public void Validate()
    {
        if (Temperature is { } t && (!float.IsFinite(t) || t < 0f))
            throw new ArgumentOutOfRangeException(nameof(Temperature), t, "Temperature must be a finite number ≥ 0 (0 = greedy).");
        if (TopK is { } k && k < 0)
            throw new ArgumentOutOfRangeException(nameof(TopK), k, "TopK must be ≥ 0 (0 = disabled).");
        if (TopP is { } p && (float.IsNaN(p) || p <= 0f || p > 1f))
            throw new ArgumentOutOfRangeException(nameof(TopP), p, "TopP must be in (0, 1] (1 = disabled).");
        if (RepetitionPenalty is { } r && (!float.IsFinite(r) || r <= 0f))
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), r, "RepetitionPenalty must be a finite number > 0 (1 = disabled).");
        if (FrequencyPenalty is { } f && !float.IsFinite(f))
            throw new ArgumentOutOfRangeException(nameof(FrequencyPenalty), f, "FrequencyPenalty must be a finite number.");
        if (PresencePenalty is { } pr && !float.IsFinite(pr))
            throw new ArgumentOutOfRangeException(nameof(PresencePenalty), pr, "PresencePenalty must be a finite number.");
        if (MaxNewTokens is { } m && m < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), m, "MaxNewTokens must be ≥ 1.");
        if (MaskTokenIdsFrom is { } mask && mask < 1)
            throw new ArgumentOutOfRangeException(nameof(MaskTokenIdsFrom), mask, "MaskTokenIdsFrom must be ≥ 1 so that at least one token remains.");
        if (StopTokenIds is null)
            throw new ArgumentException("StopTokenIds must not be null.", nameof(StopTokenIds));
        foreach (var id in StopTokenIds)
        {
            if (id < 0)
                throw new ArgumentOutOfRangeException(nameof(StopTokenIds), id, "StopTokenIds must contain only ids ≥ 0.");
        }
        if (StopSequences is null)
            throw new ArgumentException("StopSequences must not be null.", nameof(StopSequences));
        foreach (var s in StopSequences)
        {
            if (string.IsNullOrEmpty(s))
                throw new ArgumentException("StopSequences must not contain null or empty strings.", nameof(StopSequences));
        }
    }
}
