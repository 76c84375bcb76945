namespace Granite.Core.Constraints;

/// <summary>Settings the frames share (from <see cref="JsonGrammarOptions"/>).</summary>
internal sealed class FrameSettings
{
    public int MaxWhitespace;
    public int MaxDepth;
}

/// <summary>
/// One frame of the byte-level JSON automaton. States are immutable: a step returns new frames (the parse may be
/// ambiguous, e.g. anyOf alternatives, so a state is a set of frames). <see cref="Parent"/> is the continuation that
/// runs when this value is complete.
/// </summary>
internal abstract class Frame
{
    [ThreadStatic] internal static bool DepthLimitHit;

    protected Frame(Frame? parent) => Parent = parent;

    public Frame? Parent { get; }

    /// <summary>Adds the successor frames after byte <paramref name="b"/> (none = rejected).</summary>
    public abstract void Step(byte b, List<Frame> output);

    /// <summary>The value could end here (numbers, literals that are a prefix of another); the next byte may also belong to <see cref="Parent"/>.</summary>
    public virtual bool Accepting => false;

    /// <summary>Inside string content with no partial character: how many more characters are allowed (−1 otherwise).</summary>
    public virtual int PlainBudget => -1;

    /// <summary>Plain string characters leave this frame unchanged (string content with no length bound left to check).</summary>
    public virtual bool PlainInvariant => false;

    /// <summary>Within any <paramref name="maxChars"/> more characters, plain text cannot change what this frame accepts
    /// (string content whose minLength is met and whose maxLength is further away).</summary>
    public virtual bool PlainInvariantWithin(int maxChars) => false;

    /// <summary>Token id this frame waits for (−1: none).</summary>
    public virtual int GateToken => -1;

    /// <summary>Frames after the gate token.</summary>
    public virtual Frame[] AfterGate() => Array.Empty<Frame>();

    public virtual bool IsDone => false;

    public virtual bool IsFree => false;

    /// <summary>Whether the output may end (end-of-text) in this frame.</summary>
    public bool CanEnd => IsDone || (Accepting && Parent is { IsDone: true });

    /// <summary>One byte through a frame, including the end of an accepting value followed by its continuation.</summary>
    public static void StepFrame(Frame f, byte b, List<Frame> output)
    {
        f.Step(b, output);
        if (f.Accepting && f.Parent is { } p) StepFrame(p, b, output);
    }

    protected static bool IsWhitespace(byte b) => b == (byte)' ' || b == (byte)'\n';

    /// <summary>Starts a value of <paramref name="node"/> with its first byte.</summary>
    public static void StartValue(SchemaNode node, Frame cont, int depth, FrameSettings g, byte b, List<Frame> output)
    {
        foreach (var branch in node.Branches)
        {
            switch (branch)
            {
                case RefBranch r:
                    StartValue(r.Target, cont, depth, g, b, output);
                    break;
                case ObjectBranch o when b == (byte)'{':
                    if (depth >= g.MaxDepth) { DepthLimitHit = true; break; }
                    output.Add(new ObjectFrame(cont, o, depth + 1, g, ObjectFrame.Open, 0, -1, 0, null));
                    break;
                case ArrayBranch a when b == (byte)'[':
                    if (depth >= g.MaxDepth) { DepthLimitHit = true; break; }
                    output.Add(new ArrayFrame(cont, a, depth + 1, g, ArrayFrame.Open, 0, 0));
                    break;
                case StringBranch s when b == (byte)'"':
                    output.Add(new StringFrame(cont, s, 0, default));
                    break;
                case NumberBranch n:
                    NumberFrame.Start(n, cont, b, output);
                    break;
                case LiteralBranch l:
                    LiteralFrame.Advance(l, cont, 0, l.Literals.Length, 0, b, output);
                    break;
            }
        }
    }
}

/// <summary>The value is complete: only end-of-text may follow.</summary>
internal sealed class DoneFrame : Frame
{
    public static readonly DoneFrame Instance = new();

    private DoneFrame() : base(null) { }

    public override void Step(byte b, List<Frame> output) { }

    public override bool IsDone => true;
}

/// <summary>Expects one value of a schema.</summary>
internal sealed class ValueFrame : Frame
{
    private readonly SchemaNode _node;
    private readonly FrameSettings _g;

    public ValueFrame(SchemaNode node, Frame cont, FrameSettings g) : base(cont)
    {
        _node = node;
        _g = g;
    }

    public override void Step(byte b, List<Frame> output) => StartValue(_node, Parent!, 0, _g, b, output);
}

/// <summary>Exact bytes, then the continuation.</summary>
internal sealed class SequenceFrame : Frame
{
    private readonly byte[] _bytes;
    private readonly int _pos;

    public SequenceFrame(byte[] bytes, int pos, Frame next) : base(next)
    {
        _bytes = bytes;
        _pos = pos;
    }

    public override void Step(byte b, List<Frame> output)
    {
        if (_bytes[_pos] != b) return;
        output.Add(_pos + 1 == _bytes.Length ? Parent! : new SequenceFrame(_bytes, _pos + 1, Parent!));
    }
}

/// <summary>Waits for one token id (e.g. <c>&lt;tool_call&gt;</c>), which is not a byte string of the trie.</summary>
internal sealed class GateFrame : Frame
{
    private readonly int _token;
    private readonly Func<Frame[]> _next;

    public GateFrame(int token, Func<Frame[]> next) : base(null)
    {
        _token = token;
        _next = next;
    }

    public override void Step(byte b, List<Frame> output) { }

    public override int GateToken => _token;

    public override Frame[] AfterGate() => _next();
}

/// <summary>Unconstrained text until a gate token (e.g. the model opening <c>&lt;tool_call&gt;</c> by itself).</summary>
internal sealed class FreeFrame : Frame
{
    private readonly int _token;
    private readonly Func<Frame[]> _next;

    public FreeFrame(int token, Func<Frame[]> next) : base(null)
    {
        _token = token;
        _next = next;
    }

    public override void Step(byte b, List<Frame> output) => output.Add(this);

    public override bool IsFree => true;

    public override int GateToken => _token;

    public override Frame[] AfterGate() => _next();
}

internal sealed class ObjectFrame : Frame
{
    public const byte Open = 0, AfterKey = 1, BeforeValue = 2, AfterValue = 3, Comma = 4;

    private readonly ObjectBranch _o;
    private readonly int _depth;
    private readonly FrameSettings _g;
    private readonly byte _phase;
    private readonly byte _ws;
    private readonly int _key;      // property index (sorted order) after a key; −1 = an additional property
    private readonly ulong _seen;
    private readonly ExtraKey? _extras;

    public ObjectFrame(Frame cont, ObjectBranch o, int depth, FrameSettings g, byte phase, byte ws, int key, ulong seen, ExtraKey? extras) : base(cont)
    {
        _o = o;
        _depth = depth;
        _g = g;
        _phase = phase;
        _ws = ws;
        _key = key;
        _seen = seen;
        _extras = extras;
    }

    internal ObjectBranch Branch => _o;
    internal ulong Seen => _seen;
    internal ExtraKey? Extras => _extras;

    private ObjectFrame With(byte phase, byte ws = 0, int key = -1) => new(Parent!, _o, _depth, _g, phase, ws, key, _seen, _extras);

    internal ObjectFrame WithKey(int key, ExtraKey? extras) => new(Parent!, _o, _depth, _g, AfterKey, 0, key, _seen, extras);

    /// <summary>Property <paramref name="idx"/> may be the next key.</summary>
    internal bool KeyAllowed(int idx) =>
        (_seen & (1UL << idx)) == 0 && (!_o.Ordered || _o.Declared[idx] == System.Numerics.BitOperations.PopCount(_seen));

    private bool MoreKeysPossible
    {
        get
        {
            if (_o.Additional is not null) return true;
            for (int i = 0; i < _o.Names.Length; i++) if (KeyAllowed(i)) return true;
            return false;
        }
    }

    private bool RequiredDone => (_o.Required & ~_seen) == 0;

    public override void Step(byte b, List<Frame> output)
    {
        if (IsWhitespace(b))
        {
            if (_ws < _g.MaxWhitespace) output.Add(With(_phase, (byte)(_ws + 1), _key));
            return;
        }
        switch (_phase)
        {
            case Open:
                if (b == (byte)'}' && RequiredDone) output.Add(Parent!);
                else if (b == (byte)'"' && MoreKeysPossible) output.Add(KeyFrame.Start(this));
                break;
            case Comma:
                if (b == (byte)'"') output.Add(KeyFrame.Start(this));
                break;
            case AfterKey:
                if (b == (byte)':') output.Add(With(BeforeValue, 0, _key));
                break;
            case BeforeValue:
            {
                var node = _key >= 0 ? _o.Values[_key] : _o.Additional!;
                var cont = new ObjectFrame(Parent!, _o, _depth, _g, AfterValue, 0, -1, _key >= 0 ? _seen | (1UL << _key) : _seen, _extras);
                StartValue(node, cont, _depth, _g, b, output);
                break;
            }
            case AfterValue:
                if (b == (byte)'}' && RequiredDone) output.Add(Parent!);
                else if (b == (byte)',' && MoreKeysPossible) output.Add(With(Comma));
                break;
        }
    }
}

/// <summary>Extra (undeclared) keys already used in an object, so none repeats.</summary>
internal sealed record ExtraKey(byte[] Key, ExtraKey? Next)
{
    public bool Contains(ReadOnlySpan<byte> key)
    {
        for (var e = this; e is not null; e = e.Next)
            if (e.Key.AsSpan().SequenceEqual(key)) return true;
        return false;
    }
}

/// <summary>
/// A property name. With declared properties only, the bytes must spell an unseen declared name (sorted candidates narrow to a
/// range); when other properties are allowed, any string whose escapes are canonical (no <c>\u</c>, no <c>\/</c>), so equal
/// names have equal bytes and a declared name cannot sneak in under another spelling or repeat.
/// </summary>
internal sealed class KeyFrame : Frame
{
    private readonly ObjectFrame _obj; // the object, phase before the key
    private readonly int _lo, _hi, _pos;
    private readonly StrLex _lex;
    private readonly KeyBytes? _acc; // free mode: key bytes so far (shared prefix list: O(1) per byte)

    private KeyFrame(ObjectFrame obj, int lo, int hi, int pos, StrLex lex, KeyBytes? acc) : base(obj)
    {
        _obj = obj;
        _lo = lo;
        _hi = hi;
        _pos = pos;
        _lex = lex;
        _acc = acc;
    }

    public static KeyFrame Start(ObjectFrame obj) =>
        new(obj, 0, obj.Branch.Names.Length, 0, default, obj.Branch.Additional is null ? null : KeyBytes.Empty);

    public override int PlainBudget => _acc is not null && _lex.IsBase ? int.MaxValue : -1;

    public override void Step(byte b, List<Frame> output)
    {
        var o = _obj.Branch;
        if (_acc is null)
        {
            // A quote closes the key when a name ends here; it can also be the escaped quote inside a name.
            if (b == (byte)'"' && _lo < _hi && o.Names[_lo].Length == _pos && _obj.KeyAllowed(_lo)) output.Add(_obj.WithKey(_lo, _obj.Extras));
            int lo = _lo, hi = _hi;
            while (lo < hi && (o.Names[lo].Length <= _pos || o.Names[lo][_pos] < b)) lo++;
            int end = lo;
            while (end < hi && o.Names[end].Length > _pos && o.Names[end][_pos] == b) end++;
            for (int i = lo; i < end; i++)
            {
                if (_obj.KeyAllowed(i))
                {
                    output.Add(new KeyFrame(_obj, lo, end, _pos + 1, default, null));
                    return;
                }
            }
            return;
        }

        int r = _lex.Step(b, keyMode: true, out var next);
        if (r < 0) return;
        if (r == StrLex.Closed)
        {
            byte[] key = _acc.ToArray();
            int idx = Array.BinarySearch(o.Names, key, ByteArrayComparer.Instance);
            if (idx >= 0)
            {
                if (_obj.KeyAllowed(idx)) output.Add(_obj.WithKey(idx, _obj.Extras));
            }
            else if (_obj.Extras is null || !_obj.Extras.Contains(key))
            {
                output.Add(_obj.WithKey(-1, new ExtraKey(key, _obj.Extras)));
            }
            return;
        }
        output.Add(new KeyFrame(_obj, 0, 0, 0, next, new KeyBytes(b, _acc)));
    }
}

/// <summary>Bytes of a key as a persistent list (last byte first).</summary>
internal sealed class KeyBytes
{
    public static readonly KeyBytes Empty = new();

    private readonly byte _b;
    private readonly KeyBytes? _prev;
    private readonly int _length;

    private KeyBytes() { }

    public KeyBytes(byte b, KeyBytes prev)
    {
        _b = b;
        _prev = prev;
        _length = prev._length + 1;
    }

    public byte[] ToArray()
    {
        var a = new byte[_length];
        var k = this;
        for (int i = _length - 1; i >= 0; i--, k = k._prev!) a[i] = k._b;
        return a;
    }
}

internal sealed class ByteArrayComparer : IComparer<byte[]>
{
    public static readonly ByteArrayComparer Instance = new();
    public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
}

internal sealed class ArrayFrame : Frame
{
    public const byte Open = 0, AfterValue = 1, Comma = 2;

    private readonly ArrayBranch _a;
    private readonly int _depth;
    private readonly FrameSettings _g;
    private readonly byte _phase;
    private readonly byte _ws;
    private readonly int _count;

    public ArrayFrame(Frame cont, ArrayBranch a, int depth, FrameSettings g, byte phase, byte ws, int count) : base(cont)
    {
        _a = a;
        _depth = depth;
        _g = g;
        _phase = phase;
        _ws = ws;
        _count = count;
    }

    public override void Step(byte b, List<Frame> output)
    {
        if (IsWhitespace(b))
        {
            if (_ws < _g.MaxWhitespace) output.Add(new ArrayFrame(Parent!, _a, _depth, _g, _phase, (byte)(_ws + 1), _count));
            return;
        }
        switch (_phase)
        {
            case Open:
                if (b == (byte)']') { if (_a.Min == 0) output.Add(Parent!); }
                else if (_a.Max > 0) StartItem(b, output);
                break;
            case AfterValue:
                if (b == (byte)']' && _count >= _a.Min) output.Add(Parent!);
                else if (b == (byte)',' && _count < _a.Max) output.Add(new ArrayFrame(Parent!, _a, _depth, _g, Comma, 0, _count));
                break;
            case Comma:
                StartItem(b, output);
                break;
        }
    }

    private void StartItem(byte b, List<Frame> output) =>
        StartValue(_a.Items, new ArrayFrame(Parent!, _a, _depth, _g, AfterValue, 0, _count + 1), _depth, _g, b, output);
}

/// <summary>
/// The JSON string lexer state after the opening quote: escapes (<c>\uXXXX</c> with surrogate pairs checked), UTF-8
/// sequences that may be split across tokens (well-formedness per RFC 3629), control characters rejected.
/// </summary>
internal readonly struct StrLex
{
    public const int Reject = -1, Consumed = 0, CharDone = 1, Closed = 2;

    private readonly byte _esc;   // 0 none, 1 after '\', 2..5 = reading hex digit 1..4
    private readonly byte _need;  // UTF-8 continuation bytes still expected
    private readonly byte _lo, _hi; // allowed range of the next continuation byte
    private readonly ushort _hex;
    private readonly bool _pendingLow; // a high surrogate escape was read; a low one must follow

    private StrLex(byte esc, byte need, byte lo, byte hi, ushort hex, bool pendingLow)
    {
        _esc = esc;
        _need = need;
        _lo = lo;
        _hi = hi;
        _hex = hex;
        _pendingLow = pendingLow;
    }

    /// <summary>Between characters: the next byte starts a new character or closes the string.</summary>
    public bool IsBase => _esc == 0 && _need == 0 && !_pendingLow;

    private static int Hex(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    public int Step(byte b, bool keyMode, out StrLex next)
    {
        next = default;
        if (_need > 0)
        {
            if (b < _lo || b > _hi) return Reject;
            next = new StrLex(0, (byte)(_need - 1), 0x80, 0xBF, 0, false);
            return _need == 1 ? CharDone : Consumed;
        }
        if (_esc == 1)
        {
            if (_pendingLow)
            {
                if (b != (byte)'u') return Reject;
                next = new StrLex(2, 0, 0, 0, 0, true);
                return Consumed;
            }
            switch (b)
            {
                case (byte)'"' or (byte)'\\' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t':
                    return CharDone;
                case (byte)'/' when !keyMode:
                    return CharDone;
                case (byte)'u' when !keyMode:
                    next = new StrLex(2, 0, 0, 0, 0, false);
                    return Consumed;
                default:
                    return Reject;
            }
        }
        if (_esc >= 2)
        {
            int h = Hex(b);
            if (h < 0) return Reject;
            int digit = _esc - 2; // 0..3
            ushort hex = (ushort)((_hex << 4) | h);
            if (_pendingLow)
            {
                if (digit == 0 && h != 0xD) return Reject;
                if (digit == 1 && h < 0xC) return Reject;
            }
            else if (digit == 1 && (_hex & 0xF) == 0xD && h >= 0xC) return Reject; // lone low surrogate
            if (digit < 3)
            {
                next = new StrLex((byte)(_esc + 1), 0, 0, 0, hex, _pendingLow);
                return Consumed;
            }
            if (!_pendingLow && hex >= 0xD800 && hex <= 0xDBFF)
            {
                next = new StrLex(0, 0, 0, 0, 0, true); // the character completes with the low surrogate
                return Consumed;
            }
            return CharDone;
        }
        if (_pendingLow)
        {
            if (b != (byte)'\\') return Reject;
            next = new StrLex(1, 0, 0, 0, 0, true);
            return Consumed;
        }
        if (b == (byte)'"') return Closed;
        if (b == (byte)'\\')
        {
            next = new StrLex(1, 0, 0, 0, 0, false);
            return Consumed;
        }
        if (b < 0x20) return Reject;
        if (b < 0x80) return CharDone;
        int need = Utf8.ContinuationCount(b, out byte lo, out byte hi);
        if (need < 0) return Reject;
        next = new StrLex(0, (byte)need, lo, hi, 0, false);
        return Consumed;
    }
}

internal sealed class StringFrame : Frame
{
    private readonly StringBranch _s;
    private readonly int _count;
    private readonly StrLex _lex;

    public StringFrame(Frame cont, StringBranch s, int count, StrLex lex) : base(cont)
    {
        _s = s;
        _count = count;
        _lex = lex;
    }

    public override int PlainBudget => _lex.IsBase ? (_s.Max == int.MaxValue ? int.MaxValue : _s.Max - _count) : -1;

    public override bool PlainInvariant => _lex.IsBase && _s.Max == int.MaxValue && _count >= _s.Min;

    public override bool PlainInvariantWithin(int maxChars) => _lex.IsBase && _count >= _s.Min && (_s.Max == int.MaxValue || _s.Max - _count > maxChars);

    public override void Step(byte b, List<Frame> output)
    {
        if (_lex.IsBase && b != (byte)'"' && _count >= _s.Max) return; // a new character would exceed maxLength
        int r = _lex.Step(b, keyMode: false, out var next);
        switch (r)
        {
            case StrLex.Closed:
                if (_count >= _s.Min) output.Add(Parent!);
                break;
            case StrLex.CharDone:
                output.Add(PlainInvariant && next.IsBase ? this : new StringFrame(Parent!, _s, _count + 1, next));
                break;
            case StrLex.Consumed:
                output.Add(new StringFrame(Parent!, _s, _count, next));
                break;
        }
    }
}

/// <summary>A value among fixed literals (sorted; candidates with the bytes so far form the range [lo, hi)).</summary>
internal sealed class LiteralFrame : Frame
{
    private readonly LiteralBranch _l;
    private readonly int _lo, _hi, _pos;

    private LiteralFrame(Frame cont, LiteralBranch l, int lo, int hi, int pos) : base(cont)
    {
        _l = l;
        _lo = lo;
        _hi = hi;
        _pos = pos;
    }

    public override bool Accepting => _l.Literals[_lo].Length == _pos;

    public override void Step(byte b, List<Frame> output) => Advance(_l, Parent!, _lo, _hi, _pos, b, output);

    public static void Advance(LiteralBranch l, Frame cont, int lo, int hi, int pos, byte b, List<Frame> output)
    {
        var lits = l.Literals;
        while (lo < hi && (lits[lo].Length <= pos || lits[lo][pos] < b)) lo++;
        int end = lo;
        while (end < hi && lits[end].Length > pos && lits[end][pos] == b) end++;
        if (lo == end) return;
        if (lits[lo].Length == pos + 1 && end - lo == 1) output.Add(cont); // complete and nothing longer shares the prefix
        else output.Add(new LiteralFrame(cont, l, lo, end, pos + 1));
    }
}

/// <summary>
/// A JSON number: <c>-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?</c> with digit caps; with minimum/maximum only plain
/// decimals, and every prefix kept only while some completion lies within the bounds (so the output never dead-ends).
/// </summary>
internal sealed class NumberFrame : Frame
{
    internal const decimal Huge = 1e20m;
    private const byte Int = 0, Dot = 1, Frac = 2, Exp = 3, ExpSign = 4, ExpDigits = 5;
    private const int MaxExpDigits = 2;

    private readonly NumberBranch _n;
    private readonly bool _neg;
    private readonly decimal _int;
    private readonly int _intDigits;
    private readonly decimal _frac;
    private readonly int _fracDigits;
    private readonly byte _phase;
    private readonly int _expDigits;
    private readonly bool _accepting;

    private NumberFrame(Frame cont, NumberBranch n, bool neg, decimal intPart, int intDigits, byte phase, decimal frac, int fracDigits, int expDigits) : base(cont)
    {
        _n = n;
        _neg = neg;
        _int = intPart;
        _intDigits = intDigits;
        _phase = phase;
        _frac = frac;
        _fracDigits = fracDigits;
        _expDigits = expDigits;
        _accepting = phase switch
        {
            Int => intDigits > 0 && InBounds(n, Value(neg, intPart, frac, 0)),
            Frac => fracDigits > 0 && InBounds(n, Value(neg, intPart, frac, fracDigits)),
            ExpDigits => true,
            _ => false,
        };
    }

    public override bool Accepting => _accepting;

    private static decimal Pow10(int k)
    {
        decimal p = 1;
        for (int i = 0; i < k; i++) p *= 10;
        return p;
    }

    private static decimal Value(bool neg, decimal i, decimal frac, int fracDigits)
    {
        decimal v = i + (fracDigits > 0 ? frac / Pow10(fracDigits) : 0);
        return neg ? -v : v;
    }

    private static bool InBounds(NumberBranch n, decimal v) => Hit(n, v, true, v, true);

    /// <summary>Whether a value in the interval (inclusive ends as flagged) satisfies the bounds (and integrality).</summary>
    private static bool Hit(NumberBranch n, decimal lo, bool loIn, decimal hi, bool hiIn)
    {
        if (n.Lo is { } l)
        {
            if (l > lo) { lo = l; loIn = !n.LoExclusive; }
            else if (l == lo) loIn = loIn && !n.LoExclusive;
        }
        if (n.Hi is { } h)
        {
            if (h < hi) { hi = h; hiIn = !n.HiExclusive; }
            else if (h == hi) hiIn = hiIn && !n.HiExclusive;
        }
        if (n.Integer)
        {
            decimal li = loIn ? decimal.Ceiling(lo) : decimal.Floor(lo) + 1;
            decimal ui = hiIn ? decimal.Floor(hi) : decimal.Ceiling(hi) - 1;
            return li <= ui;
        }
        return lo < hi || (lo == hi && loIn && hiIn);
    }

    /// <summary>Whether magnitudes in [a, b) (or [a, a] when <paramref name="point"/>) with the sign can satisfy the bounds.</summary>
    private static bool HitMagnitude(NumberBranch n, bool neg, decimal a, decimal b, bool point)
    {
        if (point) return InBounds(n, neg ? -a : a);
        return neg ? Hit(n, -b, false, -a, true) : Hit(n, a, true, b, false);
    }

    /// <summary>Some number satisfies the branch (checked when compiling).</summary>
    public static bool FeasibleStart(NumberBranch n) => Feasible(n, false, 0, 0) || Feasible(n, true, 0, 0);

    /// <summary>Integer part so far (<paramref name="digits"/> digits, value <paramref name="p"/>): can it still complete in bounds?</summary>
    private static bool Feasible(NumberBranch n, bool neg, decimal p, int digits)
    {
        if (n.Lo is null && n.Hi is null) return true;
        if (digits == 0) return HitMagnitude(n, neg, 0, Pow10(n.IntDigits), false);
        if (p == 0) return n.Integer || n.FracDigits == 0 ? HitMagnitude(n, neg, 0, 0, true) : HitMagnitude(n, neg, 0, 1, false);
        decimal scale = 1;
        for (int k = 0; digits + k <= n.IntDigits; k++, scale *= 10)
        {
            decimal a = p * scale, b = (p + 1) * scale;
            if (n.Integer || n.FracDigits == 0) { if (Hit(n, neg ? -(b - 1) : a, true, neg ? -a : b - 1, true)) return true; }
            else if (HitMagnitude(n, neg, a, b, false)) return true;
        }
        return false;
    }

    /// <summary>After the decimal point with <paramref name="fd"/> fraction digits.</summary>
    private static bool FeasibleFraction(NumberBranch n, bool neg, decimal i, decimal f, int fd)
    {
        if (n.Lo is null && n.Hi is null) return true;
        decimal a = i + (fd > 0 ? f / Pow10(fd) : 0);
        if (fd >= n.FracDigits) return fd > 0 && HitMagnitude(n, neg, a, a, true);
        return HitMagnitude(n, neg, a, a + 1 / Pow10(fd), false);
    }

    public static void Start(NumberBranch n, Frame cont, byte b, List<Frame> output)
    {
        if (b == (byte)'-')
        {
            if (Feasible(n, true, 0, 0)) output.Add(new NumberFrame(cont, n, true, 0, 0, Int, 0, 0, 0));
        }
        else if (b >= (byte)'0' && b <= (byte)'9')
        {
            int d = b - '0';
            if (Feasible(n, false, d, 1)) output.Add(new NumberFrame(cont, n, false, d, 1, Int, 0, 0, 0));
        }
    }

    public override void Step(byte b, List<Frame> output)
    {
        bool digit = b >= (byte)'0' && b <= (byte)'9';
        int d = b - '0';
        switch (_phase)
        {
            case Int:
                if (digit)
                {
                    if (_intDigits == 1 && _int == 0) return; // no leading zeros
                    if (_intDigits >= _n.IntDigits) return;
                    decimal p = _int * 10 + d;
                    if (Feasible(_n, _neg, p, _intDigits + 1)) output.Add(new NumberFrame(Parent!, _n, _neg, p, _intDigits + 1, Int, 0, 0, 0));
                }
                else if (b == (byte)'.' && _intDigits > 0 && _n.FracDigits > 0)
                {
                    if (FeasibleFraction(_n, _neg, _int, 0, 0)) output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, Dot, 0, 0, 0));
                }
                else if ((b == (byte)'e' || b == (byte)'E') && _intDigits > 0 && _n.AllowExponent)
                    output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, Exp, 0, 0, 0));
                break;
            case Dot:
            case Frac:
                if (digit)
                {
                    if (_fracDigits >= _n.FracDigits) return;
                    decimal f = _frac * 10 + d;
                    if (FeasibleFraction(_n, _neg, _int, f, _fracDigits + 1)) output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, Frac, f, _fracDigits + 1, 0));
                }
                else if ((b == (byte)'e' || b == (byte)'E') && _phase == Frac && _n.AllowExponent)
                    output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, Exp, 0, 0, 0));
                break;
            case Exp:
                if (b == (byte)'+' || b == (byte)'-') output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, ExpSign, 0, 0, 0));
                else if (digit) output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, ExpDigits, 0, 0, 1));
                break;
            case ExpSign:
                if (digit) output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, ExpDigits, 0, 0, 1));
                break;
            case ExpDigits:
                if (digit && _expDigits < MaxExpDigits) output.Add(new NumberFrame(Parent!, _n, _neg, _int, _intDigits, ExpDigits, 0, 0, _expDigits + 1));
                break;
        }
    }
}
