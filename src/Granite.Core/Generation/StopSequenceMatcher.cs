namespace Granite.Core.Generation;

/// <summary>What <see cref="StopSequenceMatcher.Append"/> decided for one text increment.</summary>
/// <param name="Text">Text that is safe to emit now.</param>
/// <param name="Stopped">True when a stop sequence matched; <paramref name="Text"/> then ends right before it.</param>
/// <param name="Sequence">The stop sequence that matched, if any.</param>
internal readonly record struct StopMatch(string Text, bool Stopped, string? Sequence);

/// <summary>
/// Finds stop sequences in streamed text. Text before a stop sequence is emitted, the sequence itself is not, and a tail
/// that could still become a stop sequence is held back until the next increment (or <see cref="Flush"/>) decides it.
/// </summary>
/// <remarks>
/// The result does not depend on how the text is split into increments: the match that completes first (smallest end
/// position, then earliest start) wins, exactly as if the text arrived one character at a time. Comparison is ordinal.
/// </remarks>
internal sealed class StopSequenceMatcher
{
    private readonly string[] _sequences;
    private string _held = "";

    /// <summary>Creates a matcher for <paramref name="stopSequences"/> (non-empty strings; may be an empty list).</summary>
    public StopSequenceMatcher(IEnumerable<string> stopSequences)
    {
        ArgumentNullException.ThrowIfNull(stopSequences);
        _sequences = stopSequences.Distinct(StringComparer.Ordinal).ToArray();
        foreach (var s in _sequences)
        {
            if (string.IsNullOrEmpty(s))
                throw new ArgumentException("Stop sequences must not be null or empty.", nameof(stopSequences));
        }
    }

    /// <summary>True once a stop sequence has matched; later increments are ignored.</summary>
    public bool IsStopped { get; private set; }

    /// <summary>The stop sequence that matched, if any.</summary>
    public string? MatchedSequence { get; private set; }

    /// <summary>Text currently held back because it may be the start of a stop sequence.</summary>
    public string HeldText => _held;

    /// <summary>Feeds the next decoded text increment.</summary>
    public StopMatch Append(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (IsStopped)
            return new StopMatch("", true, MatchedSequence);
        if (_sequences.Length == 0)
            return new StopMatch(text, false, null);
        if (text.Length == 0)
            return new StopMatch("", false, null);

        string buffer = _held + text;
        int bestStart = -1, bestEnd = int.MaxValue;
        string? best = null;
        foreach (var s in _sequences)
        {
            int start = buffer.IndexOf(s, StringComparison.Ordinal);
            if (start < 0)
                continue;
            int end = start + s.Length;
            if (end < bestEnd || (end == bestEnd && start < bestStart))
            {
                bestStart = start;
                bestEnd = end;
                best = s;
            }
        }

        if (best is not null)
        {
            IsStopped = true;
            MatchedSequence = best;
            _held = "";
            return new StopMatch(buffer[..bestStart], true, best);
        }

        int hold = LongestPrefixSuffix(buffer);
        _held = buffer[^hold..];
        return new StopMatch(buffer[..^hold], false, null);
    }

    /// <summary>Ends the stream: returns the held-back text (it can no longer become a stop sequence).</summary>
    public string Flush()
    {
        string held = _held;
        _held = "";
        return IsStopped ? "" : held;
    }

    /// <summary>Length of the longest suffix of <paramref name="buffer"/> that is a proper prefix of a stop sequence.</summary>
    private int LongestPrefixSuffix(string buffer)
    {
        int best = 0;
        var tail = buffer.AsSpan();
        foreach (var s in _sequences)
        {
            for (int length = Math.Min(s.Length - 1, tail.Length); length > best; length--)
            {
                if (tail[^length..].SequenceEqual(s.AsSpan(0, length)))
                {
                    best = length;
                    break;
                }
            }
        }
        return best;
    }
}
