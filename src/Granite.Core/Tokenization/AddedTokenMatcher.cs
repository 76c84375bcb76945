using System.Buffers;

namespace Granite.Core.Tokenization;

/// <summary>
/// Finds added tokens in text the way Hugging Face tokenizers do: leftmost match first, the longest token at that
/// position wins; <c>lstrip</c>/<c>rstrip</c> tokens absorb adjacent whitespace.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;
    private readonly SearchValues<char> _firstChars;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    /// <summary>
    /// Finds the next added token in <paramref name="text"/> at or after <paramref name="from"/>.
    /// <paramref name="start"/>..<paramref name="end"/> is the consumed range (including stripped whitespace).
    /// </summary>
    public bool TryFindNext(ReadOnlySpan<char> text, int from, out int start, out int end, out AddedToken token)
    {
        int i = from;
        while (i < text.Length)
        {
            int next = text[i..].IndexOfAny(_firstChars);
            if (next < 0)
            {
                break;
            }

            i += next;
            foreach (AddedToken candidate in _byFirstChar[text[i]])
            {
                if (text[i..].StartsWith(candidate.Content, StringComparison.Ordinal))
                {
                    start = i;
                    end = i + candidate.Content.Length;
                    if (candidate.LStrip)
                    {
                        while (start > from && char.IsWhiteSpace(text[start - 1]))
                        {
                            start--;
                        }
                    }

                    if (candidate.RStrip)
                    {
                        while (end < text.Length && char.IsWhiteSpace(text[end]))
                        {
                            end++;
                        }
                    }

                    token = candidate;
                    return true;
                }
            }

            i++;
        }

        start = end = text.Length;
        token = null!;
        return false;
    }
}
