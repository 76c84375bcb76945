using System.Diagnostics.CodeAnalysis;
using System.Text;
using Granite.Core.Diagnostics;

namespace Granite.Core.Constraints;

/// <summary>Feeds bytes through a <see cref="JsonGrammar"/>: which prefixes it accepts and when the value is complete.</summary>
[Experimental(GraniteDiagnosticIds.ExperimentalConstraints, UrlFormat = GraniteDiagnosticIds.UrlFormat)]
public sealed class JsonByteMatcher
{
    private Frame[] _alts;
    private readonly List<Frame> _scratch = new();

    internal JsonByteMatcher(Frame[] start) => _alts = start;

    /// <summary>The bytes so far form a complete value (nothing more is needed).</summary>
    public bool IsComplete => _alts.Any(a => a.CanEnd);

    /// <summary>Why the last rejected byte was rejected, when known (e.g. the nesting limit).</summary>
    public string? LastError { get; private set; }

    /// <summary>Feeds UTF-8 text; false (state unchanged) if some byte is not allowed.</summary>
    public bool TryFeed(string text) => TryFeed(Encoding.UTF8.GetBytes(text));

    /// <summary>Feeds bytes; false (state unchanged) if some byte is not allowed.</summary>
    public bool TryFeed(ReadOnlySpan<byte> bytes)
    {
        var alts = _alts;
        for (int i = 0; i < bytes.Length; i++)
        {
            Frame.DepthLimitHit = false;
            alts = ConstraintMatcher.StepAll(alts, bytes[i], _scratch);
            if (alts.Length == 0)
            {
                LastError = Frame.DepthLimitHit
                    ? $"byte {i} opens a container beyond the nesting limit (MaxDepth)"
                    : $"byte {i} (0x{bytes[i]:X2}) is not allowed here";
                return false;
            }
        }
        _alts = alts;
        LastError = null;
        return true;
    }
}
