using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Granite.Core.Diagnostics;
using Granite.Core.Tokenization;

namespace Granite.Core.Constraints;

/// <summary>
/// The byte strings of a vocabulary prepared for constrained decoding: a trie over the ordinary tokens' UTF-8 bytes
/// (added tokens — role markers, <c>&lt;tool_call&gt;</c>, padding — are left out: a grammar allows them only by id),
/// a second trie of the tokens that are not "plain string text", and bit sets of the plain-text tokens by character count.
/// </summary>
/// <remarks>
/// A token is <em>plain</em> when its bytes are complete, valid UTF-8 characters none of which is <c>"</c>, <c>\</c> or a
/// control character below U+0020: inside a JSON string every plain token of at most the remaining length is allowed,
/// so the mask of a string state is a precomputed bit set plus a walk over the (much smaller) non-plain trie.
/// Immutable and thread-safe; build once per tokenizer (<see cref="For"/> caches it).
/// </remarks>
[Experimental(GraniteDiagnosticIds.ExperimentalConstraints, UrlFormat = GraniteDiagnosticIds.UrlFormat)]
public sealed class TokenVocabulary
{
    /// <summary>Plain tokens longer than this many characters are treated as non-plain (walked, not bulk-allowed).</summary>
    internal const int MaxPlainChars = 48;

    private static readonly ConditionalWeakTable<GraniteTokenizer, TokenVocabulary> Cache = new();

    private readonly byte[]?[] _bytes;

    /// <summary>Builds the tables.</summary>
    /// <param name="tokenBytes">Bytes of each ordinary token by id; null for ids that are not ordinary byte tokens
    /// (added/special tokens, unused ids). Its length is the id space (the model's vocabulary size).</param>
    public TokenVocabulary(IReadOnlyList<byte[]?> tokenBytes)
    {
        ArgumentNullException.ThrowIfNull(tokenBytes);
        if (tokenBytes.Count == 0) throw new ArgumentException("The vocabulary is empty.", nameof(tokenBytes));
        Size = tokenBytes.Count;
        _bytes = new byte[]?[Size];
        var all = new List<int>(Size);
        var nonPlain = new List<int>();
        int words = (Size + 63) >> 6;
        var byLength = new ulong[MaxPlainChars + 1][];
        for (int i = 0; i <= MaxPlainChars; i++) byLength[i] = new ulong[words];
        for (int id = 0; id < Size; id++)
        {
            var b = tokenBytes[id];
            if (b is null || b.Length == 0) continue;
            _bytes[id] = b;
            all.Add(id);
            MaxTokenBytes = Math.Max(MaxTokenBytes, b.Length);
            int chars = PlainChars(b);
            if (chars < 0 || chars > MaxPlainChars) nonPlain.Add(id);
            else byLength[chars][id >> 6] |= 1UL << (id & 63);
        }
        if (all.Count == 0) throw new ArgumentException("The vocabulary has no ordinary byte tokens.", nameof(tokenBytes));
        // Cumulative: PlainUpTo[r] = plain tokens of at most r characters.
        for (int r = 1; r <= MaxPlainChars; r++)
            for (int w = 0; w < words; w++) byLength[r][w] |= byLength[r - 1][w];
        PlainUpTo = byLength;
        Full = new ByteTrie(_bytes, all);
        NonPlain = new ByteTrie(_bytes, nonPlain);
        // Remainders after the longest plain prefix (what a string state that plain text leaves unchanged must step).
        var remainders = new byte[]?[Size];
        var withRemainder = new List<int>();
        var longPlain = new List<int>();
        foreach (int id in nonPlain)
        {
            int p = PlainPrefixLength(_bytes[id]!);
            if (p == _bytes[id]!.Length) { longPlain.Add(id); continue; }
            remainders[id] = _bytes[id]![p..];
            withRemainder.Add(id);
        }
        Remainders = new ByteTrie(remainders, withRemainder);
        LongPlain = longPlain.ToArray();
        PlainCount = all.Count - nonPlain.Count;
    }

    /// <summary>The vocabulary of a tokenizer over <paramref name="modelVocabSize"/> ids (cached per tokenizer).</summary>
    public static TokenVocabulary For(GraniteTokenizer tokenizer, int modelVocabSize)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var v = Cache.GetValue(tokenizer, t =>
        {
            int size = Math.Max(modelVocabSize, t.VocabularySize);
            var bytes = new byte[]?[size];
            var added = new HashSet<int>(t.AddedTokens.Values);
            for (int id = 0; id < t.VocabularySize; id++)
                if (!added.Contains(id)) bytes[id] = t.TokenBytes(id, skipSpecialTokens: false);
            return new TokenVocabulary(bytes);
        });
        if (v.Size < modelVocabSize)
            throw new ArgumentException($"The cached vocabulary covers {v.Size} ids but the model has {modelVocabSize}.", nameof(modelVocabSize));
        return v;
    }

    /// <summary>Size of the id space (masks cover ids 0..Size-1).</summary>
    public int Size { get; }

    /// <summary>Number of ordinary byte tokens.</summary>
    public int ByteTokenCount => Full.TokenCount;

    /// <summary>Length in bytes of the longest token (an upper bound on its characters).</summary>
    public int MaxTokenBytes { get; }

    /// <summary>Number of plain-text tokens (bulk-allowed inside strings).</summary>
    public int PlainCount { get; }

    /// <summary>The bytes of ordinary token <paramref name="id"/>, or null (added/special/unknown id).</summary>
    public ReadOnlySpan<byte> BytesOf(int id) => (uint)id < (uint)_bytes.Length ? _bytes[id] : null;

    /// <summary>Whether <paramref name="id"/> is an ordinary byte token.</summary>
    public bool IsByteToken(int id) => (uint)id < (uint)_bytes.Length && _bytes[id] is not null;

    internal ByteTrie Full { get; }

    internal ByteTrie NonPlain { get; }

    internal ulong[][] PlainUpTo { get; }

    /// <summary>Trie of the non-plain tokens' bytes after their longest plain prefix (token ids as in <see cref="Full"/>).</summary>
    internal ByteTrie Remainders { get; }

    /// <summary>Plain tokens longer than <see cref="MaxPlainChars"/> characters.</summary>
    internal int[] LongPlain { get; }

    /// <summary>Bytes of the longest prefix made of complete plain characters.</summary>
    internal static int PlainPrefixLength(ReadOnlySpan<byte> b)
    {
        int i = 0;
        while (i < b.Length)
        {
            byte c = b[i];
            if (c < 0x80)
            {
                if (c < 0x20 || c == (byte)'"' || c == (byte)'\\') break;
                i++;
                continue;
            }
            int need = Utf8.ContinuationCount(c, out byte lo, out byte hi);
            if (need <= 0 || i + need >= b.Length || b[i + 1] < lo || b[i + 1] > hi) break;
            bool ok = true;
            for (int k = 2; k <= need; k++) ok &= b[i + k] >= 0x80 && b[i + k] <= 0xBF;
            if (!ok) break;
            i += need + 1;
        }
        return i;
    }

    /// <summary>Characters of a plain token, or −1 if it is not plain.</summary>
    internal static int PlainChars(ReadOnlySpan<byte> b)
    {
        int chars = 0;
        for (int i = 0; i < b.Length;)
        {
            byte c = b[i];
            if (c < 0x80)
            {
                if (c < 0x20 || c == (byte)'"' || c == (byte)'\\') return -1;
                i++;
            }
            else
            {
                int need = Utf8.ContinuationCount(c, out byte lo, out byte hi);
                if (need <= 0 || i + need >= b.Length) return -1; // incomplete or invalid character
                if (b[i + 1] < lo || b[i + 1] > hi) return -1;
                for (int k = 2; k <= need; k++)
                    if (b[i + k] < 0x80 || b[i + k] > 0xBF) return -1;
                i += need + 1;
            }
            chars++;
        }
        return chars;
    }
}

/// <summary>UTF-8 well-formedness tables (RFC 3629: no overlongs, no surrogates, at most U+10FFFF).</summary>
internal static class Utf8
{
    /// <summary>For a lead byte ≥ 0x80: number of continuation bytes and the allowed range of the first one; −1 if not a lead byte.</summary>
    public static int ContinuationCount(byte lead, out byte lo, out byte hi)
    {
        lo = 0x80; hi = 0xBF;
        switch (lead)
        {
            case >= 0xC2 and <= 0xDF: return 1;
            case 0xE0: lo = 0xA0; return 2;
            case >= 0xE1 and <= 0xEC: return 2;
            case 0xED: hi = 0x9F; return 2;
            case >= 0xEE and <= 0xEF: return 2;
            case 0xF0: lo = 0x90; return 3;
            case >= 0xF1 and <= 0xF3: return 3;
            case 0xF4: hi = 0x8F; return 3;
            default: return -1;
        }
    }
}

/// <summary>A trie over token byte strings in flat arrays (children sorted by byte).</summary>
internal sealed class ByteTrie
{
    // Node n: children edges [ChildStart[n], ChildStart[n] + ChildCount[n]) in EdgeByte/EdgeNode; tokens ending at n:
    // TokenIds[TokStart[n] .. TokStart[n] + TokCount[n]).
    public readonly int[] ChildStart;
    public readonly int[] ChildCount;
    public readonly byte[] EdgeByte;
    public readonly int[] EdgeNode;
    public readonly int[] TokStart;
    public readonly int[] TokCount;
    public readonly int[] TokenIds;
    /// <summary>Token ids sorted by bytes; node n's subtree is <c>Sorted[RangeLo[n] .. RangeHi[n])</c>.</summary>
    public readonly int[] Sorted;
    public readonly int[] RangeLo;
    public readonly int[] RangeHi;
    /// <summary>The byte strings the trie was built from, by token id.</summary>
    public readonly byte[]?[] Bytes;

    public ByteTrie(byte[]?[] bytes, List<int> ids)
    {
        var sorted = ids.ToArray();
        Array.Sort(sorted, (a, b) => bytes[a].AsSpan().SequenceCompareTo(bytes[b]));
        TokenCount = sorted.Length;
        var childStart = new List<int>();
        var childCount = new List<int>();
        var tokStart = new List<int>();
        var tokCount = new List<int>();
        var edgeByte = new List<byte>();
        var edgeNode = new List<int>();
        var tokenIds = new List<int>(sorted.Length);
        var rangeLo = new List<int>();
        var rangeHi = new List<int>();
        // Breadth-first over (range of sorted ids, depth): each node's children are contiguous in the edge arrays.
        var queue = new Queue<(int Lo, int Hi, int Depth, int Node)>();
        NewNode();
        queue.Enqueue((0, sorted.Length, 0, 0));
        while (queue.Count > 0)
        {
            var (lo, hi, depth, node) = queue.Dequeue();
            rangeLo[node] = lo;
            rangeHi[node] = hi;
            int i = lo;
            tokStart[node] = tokenIds.Count;
            while (i < hi && bytes[sorted[i]]!.Length == depth) tokenIds.Add(sorted[i++]);
            tokCount[node] = tokenIds.Count - tokStart[node];
            childStart[node] = edgeByte.Count;
            var groups = new List<(byte B, int Lo, int Hi)>();
            while (i < hi)
            {
                byte b = bytes[sorted[i]]![depth];
                int j = i + 1;
                while (j < hi && bytes[sorted[j]]![depth] == b) j++;
                groups.Add((b, i, j));
                i = j;
            }
            childCount[node] = groups.Count;
            foreach (var (b, glo, ghi) in groups)
            {
                int child = NewNode();
                edgeByte.Add(b);
                edgeNode.Add(child);
                queue.Enqueue((glo, ghi, depth + 1, child));
            }
        }
        ChildStart = childStart.ToArray();
        ChildCount = childCount.ToArray();
        EdgeByte = edgeByte.ToArray();
        EdgeNode = edgeNode.ToArray();
        TokStart = tokStart.ToArray();
        TokCount = tokCount.ToArray();
        TokenIds = tokenIds.ToArray();
        RangeLo = rangeLo.ToArray();
        RangeHi = rangeHi.ToArray();
        Sorted = sorted;
        Bytes = bytes;

        int NewNode()
        {
            childStart.Add(0); childCount.Add(0); tokStart.Add(0); tokCount.Add(0); rangeLo.Add(0); rangeHi.Add(0);
            return childStart.Count - 1;
        }
    }

    public int TokenCount { get; }

    public int NodeCount => ChildStart.Length;
}
