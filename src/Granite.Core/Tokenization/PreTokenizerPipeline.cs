using System.Globalization;
using System.Text.RegularExpressions;

namespace Granite.Core.Tokenization;

/// <summary>A slice of a string produced by pre-tokenization.</summary>
internal readonly record struct TextPiece(string Source, int Start, int Length)
{
    public ReadOnlySpan<char> Span => Source.AsSpan(Start, Length);

    public override string ToString() => Source.Substring(Start, Length);
}

/// <summary>
/// The pre-tokenizer described by <c>tokenizer.json</c>'s <c>pre_tokenizer</c>: a sequence of regex splits
/// (Hugging Face <c>Split</c> with behaviour <c>Isolated</c>) and <c>ByteLevel</c> steps (optional prefix space,
/// optional GPT-2 split regex). The regexes are matched per Unicode code point, like the Rust implementation:
/// .NET regexes see UTF-16 code units, so for text containing surrogate pairs the match runs on a proxy string with
/// one same-category BMP character per code point (so e.g. <c>\p{L}</c> matches U+20000 and <c>\p{N}{1,3}</c> counts
/// code points).
/// </summary>
internal sealed class PreTokenizerPipeline
{
    /// <summary>The split regex built into the Hugging Face <c>ByteLevel</c> pre-tokenizer when <c>use_regex</c> is true.</summary>
    internal const string ByteLevelSplitPattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly Step[] _steps;

    internal PreTokenizerPipeline(IReadOnlyList<Step> steps) => _steps = steps.ToArray();

    /// <summary>Describes the steps, for diagnostics.</summary>
    public IReadOnlyList<Step> Steps => _steps;

    /// <summary>Splits <paramref name="text"/> into the pieces that are byte-pair encoded independently.</summary>
    public void PreTokenize(string text, List<TextPiece> output)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (_steps.Length == 0)
        {
            output.Add(new TextPiece(text, 0, text.Length));
            return;
        }

        var current = new List<TextPiece> { new(text, 0, text.Length) };
        var next = new List<TextPiece>();
        for (int s = 0; s < _steps.Length; s++)
        {
            List<TextPiece> target = s == _steps.Length - 1 ? output : next;
            foreach (TextPiece piece in current)
            {
                Apply(_steps[s], piece, target);
            }

            if (target != output)
            {
                (current, next) = (next, current);
                next.Clear();
            }
        }
    }

    private static void Apply(Step step, TextPiece piece, List<TextPiece> output)
    {
        try
        {
            ApplyStep(step, piece, output);
        }
        catch (RegexMatchTimeoutException ex)
        {
            string where = step.Origin ?? "the tokenizer's pre_tokenizer";
            throw new InvalidDataException(
                $"{where}: the split regex took longer than {ex.MatchTimeout.TotalSeconds:0.##} s on one match (catastrophic backtracking?); " +
                $"pattern {Granite.Core.Diagnostics.ErrorText.Excerpt(ex.Pattern)}", ex);
        }
    }

    private static void ApplyStep(Step step, TextPiece piece, List<TextPiece> output)
    {
        switch (step)
        {
            case SplitStep split:
                RegexSplit(split.Regex, piece, output);
                break;
            case ByteLevelStep byteLevel:
                if (byteLevel.AddPrefixSpace && piece.Span[0] != ' ')
                {
                    string prefixed = " " + piece.ToString();
                    piece = new TextPiece(prefixed, 0, prefixed.Length);
                }

                if (byteLevel.Regex is null)
                {
                    output.Add(piece);
                }
                else
                {
                    RegexSplit(byteLevel.Regex, piece, output);
                }

                break;
            default:
                throw new InvalidOperationException($"Unknown pre-tokenizer step {step.GetType().Name}.");
        }
    }

    /// <summary>Hugging Face <c>SplitDelimiterBehavior::Isolated</c>: matches and the gaps between them become pieces.</summary>
    internal static void RegexSplit(Regex regex, TextPiece piece, List<TextPiece> output)
    {
        ReadOnlySpan<char> span = piece.Span;
        if (span.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            int pos = 0;
            foreach (ValueMatch m in regex.EnumerateMatches(span))
            {
                if (m.Length == 0)
                {
                    continue;
                }

                if (m.Index > pos)
                {
                    output.Add(new TextPiece(piece.Source, piece.Start + pos, m.Index - pos));
                }

                output.Add(new TextPiece(piece.Source, piece.Start + m.Index, m.Length));
                pos = m.Index + m.Length;
            }

            if (pos < span.Length)
            {
                output.Add(new TextPiece(piece.Source, piece.Start + pos, span.Length - pos));
            }

            return;
        }

        // One proxy char per code point; offsets[i] is the UTF-16 offset of proxy char i (offsets[n] = length).
        var proxy = new char[span.Length];
        var offsets = new int[span.Length + 1];
        int n = 0;
        for (int i = 0; i < span.Length; n++)
        {
            offsets[n] = i;
            if (char.IsHighSurrogate(span[i]) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]))
            {
                UnicodeCategory category = CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(span[i], span[i + 1]));
                proxy[n] = CategoryRepresentative(category);
                i += 2;
            }
            else
            {
                proxy[n] = span[i];
                i++;
            }
        }

        offsets[n] = span.Length;
        int last = 0;
        foreach (ValueMatch m in regex.EnumerateMatches(proxy.AsSpan(0, n)))
        {
            if (m.Length == 0)
            {
                continue;
            }

            int start = offsets[m.Index];
            int end = offsets[m.Index + m.Length];
            if (start > last)
            {
                output.Add(new TextPiece(piece.Source, piece.Start + last, start - last));
            }

            output.Add(new TextPiece(piece.Source, piece.Start + start, end - start));
            last = end;
        }

        if (last < span.Length)
        {
            output.Add(new TextPiece(piece.Source, piece.Start + last, span.Length - last));
        }
    }

    /// <summary>A non-ASCII BMP character of the given general category (stands in for a supplementary code point).</summary>
    internal static char CategoryRepresentative(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0100',
        UnicodeCategory.LowercaseLetter => '\u0101',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u4E00',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.SpaceSeparator => '\u3000',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0080',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.Surrogate => '\uFFFD',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',
        UnicodeCategory.OtherPunctuation => '\u00B7',
        UnicodeCategory.MathSymbol => '\u00D7',
        UnicodeCategory.CurrencySymbol => '\u00A2',
        UnicodeCategory.ModifierSymbol => '\u02C2',
        UnicodeCategory.OtherSymbol => '\u00A6',
        _ => '\u0378', // OtherNotAssigned
    };

    /// <summary>A pre-tokenizer step.</summary>
    internal abstract record Step
    {
        /// <summary>File and field the step was read from (e.g. <c>Invalid tokenizer file 'x': 'pre_tokenizer'</c>), for errors.</summary>
        public string? Origin { get; init; }
    }

    /// <summary>Hugging Face <c>Split</c> (behaviour <c>Isolated</c>, not inverted).</summary>
    internal sealed record SplitStep(Regex Regex) : Step;

    /// <summary>Hugging Face <c>ByteLevel</c>; <paramref name="Regex"/> is the GPT-2 split regex when <c>use_regex</c> is true.</summary>
    internal sealed record ByteLevelStep(bool AddPrefixSpace, Regex? Regex) : Step;
}
