using System.Diagnostics.CodeAnalysis;
using System.Text;
using Granite.Core.Diagnostics;

namespace Granite.Core.Constraints;

/// <summary>
/// What a generation may output, at token level: a JSON value of a grammar, or Granite tool calls
/// (<c>&lt;tool_call&gt;\n{"name": …, "arguments": …}\n&lt;/tool_call&gt;</c>) that are either required or constrained
/// once the model opens one. Immutable and shareable; each generation creates its own <see cref="ConstraintMatcher"/>.
/// </summary>
[Experimental(GraniteDiagnosticIds.ExperimentalConstraints, UrlFormat = GraniteDiagnosticIds.UrlFormat)]
public sealed class TokenConstraint
{
    private readonly Func<Frame[]> _start;

    private TokenConstraint(TokenVocabulary vocabulary, Func<Frame[]> start, string description)
    {
        Vocabulary = vocabulary;
        _start = start;
        Description = description;
    }

    /// <summary>The vocabulary the masks are computed over.</summary>
    public TokenVocabulary Vocabulary { get; }

    /// <summary>A short description (for logs).</summary>
    public string Description { get; }

    /// <summary>The output is exactly one value of <paramref name="grammar"/> (no leading whitespace), then end-of-text.</summary>
    public static TokenConstraint Json(JsonGrammar grammar, TokenVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        ArgumentNullException.ThrowIfNull(vocabulary);
        return new TokenConstraint(vocabulary, () => new Frame[] { new ValueFrame(grammar.Root, DoneFrame.Instance, grammar.Settings) }, "json");
    }

    /// <summary>
    /// Tool calls whose body is <paramref name="envelope"/> (see <see cref="JsonGrammar.ToolCall"/>).
    /// <paramref name="required"/>: the output starts with a call and ends after the last one (more calls only when
    /// <paramref name="allowMultiple"/>); otherwise text is free and only a call the model opens with
    /// <paramref name="openTokenId"/> is constrained, until <paramref name="closeTokenId"/>.
    /// </summary>
    public static TokenConstraint ToolCalls(JsonGrammar envelope, TokenVocabulary vocabulary, int openTokenId, int closeTokenId, bool required, bool allowMultiple = true)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ArgumentNullException.ThrowIfNull(vocabulary);
        if ((uint)openTokenId >= (uint)vocabulary.Size || (uint)closeTokenId >= (uint)vocabulary.Size)
            throw new ArgumentException("The tool-call marker token ids are outside the vocabulary.");
        byte[] newline = Encoding.UTF8.GetBytes("\n");
        Frame[] Body(Func<Frame[]> after) => new Frame[]
        {
            new SequenceFrame(newline, 0, new ValueFrame(envelope.Root, new SequenceFrame(newline, 0, new GateFrame(closeTokenId, after)), envelope.Settings)),
        };
        if (!required)
        {
            Frame[] Free() => new Frame[] { new FreeFrame(openTokenId, () => Body(Free)) };
            return new TokenConstraint(vocabulary, Free, "tool calls (auto)");
        }
        Frame[] After() => allowMultiple
            ? new Frame[] { DoneFrame.Instance, new GateFrame(openTokenId, () => Body(After)), new SequenceFrame(newline, 0, new GateFrame(openTokenId, () => Body(After))) }
            : new Frame[] { DoneFrame.Instance };
        return new TokenConstraint(vocabulary, () => new Frame[] { new GateFrame(openTokenId, () => Body(After)) }, "tool calls (required)");
    }

    /// <summary>
    /// Either one value of <paramref name="json"/> (then end-of-text) or tool calls with body <paramref name="envelope"/>
    /// (the model chooses by its first token; after a call only end-of-text or, with <paramref name="allowMultiple"/>,
    /// another call). For typed answers in an agent loop that may still call tools.
    /// </summary>
    public static TokenConstraint JsonOrToolCalls(JsonGrammar json, JsonGrammar envelope, TokenVocabulary vocabulary, int openTokenId, int closeTokenId, bool allowMultiple = true)
    {
        ArgumentNullException.ThrowIfNull(json);
        var calls = ToolCalls(envelope, vocabulary, openTokenId, closeTokenId, required: true, allowMultiple);
        return new TokenConstraint(vocabulary, () => calls._start().Append(new ValueFrame(json.Root, DoneFrame.Instance, json.Settings)).ToArray(), "json or tool calls");
    }

    /// <summary>A matcher for one generation; <paramref name="stopTokenIds"/> are allowed only where the output may end.</summary>
    /// <exception cref="ArgumentException">No stop token id: a constrained output could not end.</exception>
    internal ConstraintMatcher CreateMatcher(IReadOnlyList<int> stopTokenIds)
    {
        ArgumentNullException.ThrowIfNull(stopTokenIds);
        if (stopTokenIds.Count == 0) throw new ArgumentException("A constrained generation needs at least one end-of-text token id.", nameof(stopTokenIds));
        return new ConstraintMatcher(this, _start(), stopTokenIds.Where(id => (uint)id < (uint)Vocabulary.Size).Distinct().ToArray());
    }
}

/// <summary>
/// The state of one constrained generation: computes the allowed-token mask of the next step and advances with the
/// chosen token. Not thread-safe (used on the inference thread).
/// </summary>
internal sealed class ConstraintMatcher
{
    private const int MaxAlternatives = 256;
    private readonly TokenConstraint _constraint;
    private readonly TokenVocabulary _v;
    private readonly int[] _stops;
    private readonly List<Frame> _scratch = new();
    private Frame[] _alts;
    private (int Node, Frame[] Alts, int Depth)[] _stack = new (int, Frame[], int)[64];

    internal ConstraintMatcher(TokenConstraint constraint, Frame[] start, int[] stops)
    {
        _constraint = constraint;
        _v = constraint.Vocabulary;
        _alts = start;
        _stops = stops;
    }

    /// <summary>The output may end here (a stop token is allowed).</summary>
    public bool CanEnd => _alts.Any(a => a.CanEnd);

    /// <summary>The next token is unconstrained (free text outside a tool call).</summary>
    public bool IsFree => _alts.Length == 1 && _alts[0].IsFree;

    /// <summary>A stop token was accepted: the constrained output is complete.</summary>
    public bool IsFinished { get; private set; }

    /// <summary>Fills <paramref name="mask"/> with the tokens allowed next; returns false (mask untouched) when unconstrained.</summary>
    /// <exception cref="InvalidOperationException">No token of the vocabulary can continue the output.</exception>
    public bool FillMask(TokenMask mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        if (IsFree) return false;
        mask.Clear();
        bool allPlain = true, invariant = true;
        int budget = -1;
        Frame.DepthLimitHit = false;
        foreach (var a in _alts)
        {
            if (a.GateToken >= 0) mask.Set(a.GateToken);
            if (a.CanEnd) foreach (int s in _stops) mask.Set(s);
            invariant &= a.PlainInvariantWithin(_v.MaxTokenBytes);
            int pb = a.PlainBudget;
            if (pb < 0) allPlain = false;
            else budget = Math.Max(budget, pb);
        }
        if (invariant)
        {
            // Within one token plain text cannot change what the state accepts: every plain token is allowed, and a
            // non-plain token is allowed iff its bytes after the plain prefix are, from this very state.
            mask.Or(_v.PlainUpTo[TokenVocabulary.MaxPlainChars]);
            foreach (int id in _v.LongPlain) mask.Set(id);
            Walk(_v.Remainders, mask);
        }
        else if (allPlain && budget >= 0)
        {
            mask.Or(_v.PlainUpTo[Math.Min(budget, TokenVocabulary.MaxPlainChars)]);
            Walk(_v.NonPlain, mask);
        }
        else
        {
            Walk(_v.Full, mask);
        }
        if (mask.Count == 0)
        {
            throw new InvalidOperationException(Frame.DepthLimitHit
                ? "Constrained decoding: the schema needs nesting deeper than the limit (JsonGrammarOptions.MaxDepth)."
                : "Constrained decoding: no token of the vocabulary can continue the output.");
        }
        return true;
    }

    /// <summary>Advances with the chosen token.</summary>
    /// <exception cref="InvalidOperationException">The token is not allowed here.</exception>
    public void Accept(int tokenId)
    {
        if (IsFinished) throw new InvalidOperationException("Constrained decoding: the output already ended.");
        if (IsFree)
        {
            if (tokenId == _alts[0].GateToken) _alts = _alts[0].AfterGate();
            return;
        }
        if (Array.IndexOf(_stops, tokenId) >= 0)
        {
            if (!CanEnd) throw Rejected(tokenId, "end-of-text before the value is complete");
            _alts = new Frame[] { DoneFrame.Instance };
            IsFinished = true;
            return;
        }
        var gated = _alts.Where(a => a.GateToken == tokenId).ToList();
        if (gated.Count > 0)
        {
            _alts = gated.SelectMany(a => a.AfterGate()).ToArray();
            return;
        }
        var bytes = _v.BytesOf(tokenId);
        if (bytes.IsEmpty) throw Rejected(tokenId, "not a text token");
        var alts = _alts;
        foreach (byte b in bytes)
        {
            Frame.DepthLimitHit = false;
            alts = StepAll(alts, b, _scratch);
            if (alts.Length == 0) throw Rejected(tokenId, Frame.DepthLimitHit ? "nesting beyond JsonGrammarOptions.MaxDepth" : "its text does not continue the output");
        }
        _alts = alts;
    }

    /// <summary>Whether <paramref name="tokenId"/> could be accepted now, by stepping its bytes (slow reference for tests).</summary>
    internal bool Allows(int tokenId)
    {
        if (IsFree) return true;
        if (Array.IndexOf(_stops, tokenId) >= 0) return CanEnd;
        if (_alts.Any(a => a.GateToken == tokenId)) return true;
        var bytes = _v.BytesOf(tokenId);
        if (bytes.IsEmpty) return false;
        var alts = _alts;
        var scratch = new List<Frame>();
        foreach (byte b in bytes)
        {
            alts = StepAll(alts, b, scratch);
            if (alts.Length == 0) return false;
        }
        return true;
    }

    private InvalidOperationException Rejected(int tokenId, string why) =>
        new($"Constrained decoding ({_constraint.Description}): token {tokenId} is not allowed here ({why}).");

    internal static Frame[] StepAll(Frame[] alts, byte b, List<Frame> scratch)
    {
        scratch.Clear();
        foreach (var a in alts) Frame.StepFrame(a, b, scratch);
        if (scratch.Count == 0) return Array.Empty<Frame>();
        if (scratch.Count == 1 && alts.Length == 1 && ReferenceEquals(scratch[0], alts[0])) return alts; // unchanged state
        if (scratch.Count > MaxAlternatives)
            throw new InvalidOperationException($"Constrained decoding: the schema is too ambiguous (more than {MaxAlternatives} parses at once).");
        return scratch.ToArray();
    }

    /// <summary>
    /// Depth-first over the trie: a child is visited only while some parse accepts its byte. Once every parse is inside
    /// string content that plain text cannot change, the child's subtree is scanned as a sorted range instead: a token is
    /// allowed if the rest of it is plain text, or else if its bytes from the first non-plain character are accepted.
    /// </summary>
    private void Walk(ByteTrie t, TokenMask mask)
    {
        int sp = 0;
        _stack[sp++] = (0, _alts, 0);
        var bits = mask.Bits;
        int maxChars = _v.MaxTokenBytes;
        while (sp > 0)
        {
            var (node, alts, depth) = _stack[--sp];
            int start = t.ChildStart[node], end = start + t.ChildCount[node];
            for (int e = start; e < end; e++)
            {
                var next = StepAll(alts, t.EdgeByte[e], _scratch);
                if (next.Length == 0) continue;
                int child = t.EdgeNode[e];
                if (t.ChildCount[child] > 0 && AllPlainInvariant(next, maxChars))
                {
                    ScanRange(t, child, depth + 1, next, bits);
                    continue;
                }
                for (int k = t.TokStart[child], kEnd = k + t.TokCount[child]; k < kEnd; k++)
                {
                    int id = t.TokenIds[k];
                    bits[id >> 6] |= 1UL << (id & 63);
                }
                if (t.ChildCount[child] > 0)
                {
                    if (sp == _stack.Length) Array.Resize(ref _stack, sp * 2);
                    _stack[sp++] = (child, next, depth + 1);
                }
            }
        }
    }

    private static bool AllPlainInvariant(Frame[] alts, int maxChars)
    {
        foreach (var a in alts)
            if (!a.PlainInvariantWithin(maxChars)) return false;
        return true;
    }

    private void ScanRange(ByteTrie t, int node, int depth, Frame[] alts, ulong[] bits)
    {
        for (int i = t.RangeLo[node], end = t.RangeHi[node]; i < end; i++)
        {
            int id = t.Sorted[i];
            var b = t.Bytes[id].AsSpan(depth);
            int p = TokenVocabulary.PlainPrefixLength(b);
            if (p < b.Length)
            {
                var cur = alts;
                for (int k = p; k < b.Length && cur.Length > 0; k++) cur = StepAll(cur, b[k], _scratch);
                if (cur.Length == 0) continue;
            }
            bits[id >> 6] |= 1UL << (id & 63);
        }
    }
}
