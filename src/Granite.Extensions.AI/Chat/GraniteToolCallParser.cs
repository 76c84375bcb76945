using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Granite.Extensions.AI.Chat;

/// <summary>
/// Streaming parser for Granite 4.0 native tool calls, <c>&lt;tool_call&gt;\n{"name": …, "arguments": …}\n&lt;/tool_call&gt;</c>
/// (spec §8). Feed decoded text (nothing skipped, without the final <c>&lt;|end_of_text|&gt;</c>) with <see cref="Push"/>,
/// then call <see cref="Complete"/> once. One instance parses one response.
/// <para>Rules:</para>
/// <list type="bullet">
/// <item>Text is released as soon as it can no longer be part of a tag: only a suffix that could start
/// <c>"\n&lt;tool_call&gt;"</c> is held back. A single "\n" directly before <c>&lt;tool_call&gt;</c> is the template's separator and
/// is removed; whitespace-only text after <c>&lt;/tool_call&gt;</c> (up to the next block or the end) is removed; any other
/// text, before, between or after blocks, is returned verbatim.</item>
/// <item>A block yields one <see cref="FunctionCallContent"/> when <c>&lt;/tool_call&gt;</c> arrives. Its inner text is trimmed and
/// must be one JSON object (extra trailing <c>}</c> characters are tolerated) with a string <c>name</c> and
/// <c>arguments</c> given as an object or as a string containing a JSON object (<c>parameters</c> is accepted as an
/// alias; missing, null or empty arguments mean no arguments). Argument values are <see cref="JsonElement"/>s, key order
/// kept. Names are not checked against the offered tools. A key repeated in any object of the block (e.g.
/// <c>{"name": "safe", "name": "delete_all"}</c>) or a key or string that does not decode to valid text (an escaped
/// unpaired surrogate such as <c>\ud800</c>) makes the block malformed.</item>
/// <item>A block that is not closed before the next <c>&lt;tool_call&gt;</c> or before the end of output is accepted when its JSON
/// is complete and valid, otherwise it is malformed.</item>
/// <item>Malformed blocks are never dropped: each yields a <see cref="FunctionCallContent"/> named
/// <see cref="MalformedCallName"/> with null arguments, whose <see cref="FunctionCallContent.Exception"/> is an
/// <see cref="InvalidDataException"/> describing the problem, whose <see cref="AIContent.RawRepresentation"/> is the raw
/// block text and whose <see cref="AIContent.AdditionalProperties"/> hold the intended name (when recognisable) under
/// <see cref="IntendedNameProperty"/>; a warning is logged. The fixed name matters: Microsoft.Extensions.AI 10.11's
/// <c>FunctionInvokingChatClient</c> ignores <see cref="FunctionCallContent.Exception"/> and would run a function of the
/// intended name with no arguments; with a name that matches no tool it instead sends
/// <c>Error: Requested function "invalid_tool_call" not found.</c> back to the model, which can then retry.</item>
/// <item>Call ids are <c>{prefix}call_{n}</c>, n = 0, 1, … in output order (malformed calls included): unique within a
/// response; pass a per-response prefix to make them globally unique.</item>
/// <item>A <c>&lt;/tool_call&gt;</c> outside a block is ordinary text.</item>
/// <item>No input makes <see cref="Push"/>, <see cref="Complete"/> or <see cref="Parse"/> throw (other than misuse
/// of the instance); time is linear in the output length, and memory holds only an open block, the whitespace after a
/// block and a possible tag prefix.</item>
/// </list>
/// </summary>
internal sealed partial class GraniteToolCallParser
{
    /// <summary>Name given to malformed tool calls (matches no real tool unless an application names one so, so nothing is invoked).</summary>
    public const string MalformedCallName = "invalid_tool_call";

    /// <summary><see cref="AIContent.AdditionalProperties"/> key holding the tool name a malformed call intended, when recognisable.</summary>
    public const string IntendedNameProperty = "granite.intended_name";

    private const string StartTag = GraniteChatTemplate.ToolCallStart;
    private const string EndTag = GraniteChatTemplate.ToolCallEnd;
    private const string SeparatedStartTag = "\n" + StartTag;

    private readonly string _callIdPrefix;
    private readonly ILogger? _logger;
    private readonly PendingText _pending = new();
    private TagFinder _startFinder = new(StartTag);
    private TagFinder _endFinder = new(EndTag);
    private long _whitespaceTo; // after a block: absolute end of the whitespace run already checked
    private bool _inBlock;
    private bool _afterBlock;
    private bool _completed;
    private int _callCount;

    /// <summary>Creates a parser for one response.</summary>
    /// <param name="callIdPrefix">Prepended verbatim to every call id (default: none).</param>
    /// <param name="logger">Receives a warning for every malformed block.</param>
    public GraniteToolCallParser(string? callIdPrefix = null, ILogger? logger = null)
    {
        _callIdPrefix = callIdPrefix ?? string.Empty;
        _logger = logger;
    }

    /// <summary>Parses a whole response at once; same result as pushing it in any pieces and completing.</summary>
    /// <param name="text">The decoded assistant output.</param>
    /// <param name="callIdPrefix">Prepended verbatim to every call id.</param>
    /// <param name="logger">Receives a warning for every malformed block.</param>
    public static ParsedAssistantOutput Parse(string text, string? callIdPrefix = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parser = new GraniteToolCallParser(callIdPrefix, logger);
        var contents = new List<AIContent>();
        AddMerged(contents, parser.Push(text));
        AddMerged(contents, parser.Complete());
        return new ParsedAssistantOutput(contents);
    }

    /// <summary>Adds decoded text; returns what can be released now (text, and a call for every block that closed).</summary>
    /// <remarks>Amortised time is linear in the length of <paramref name="textDelta"/>: text already searched is never
    /// searched again, and only an open block (or the whitespace after a block, or a possible tag prefix) is held.</remarks>
    /// <exception cref="InvalidOperationException"><see cref="Complete"/> was already called.</exception>
    public IReadOnlyList<AIContent> Push(string textDelta)
    {
        ArgumentNullException.ThrowIfNull(textDelta);
        if (_completed)
        {
            throw new InvalidOperationException("The parser has already been completed; use a new instance per response.");
        }

        _pending.Append(textDelta);
        var output = new List<AIContent>();
        Drain(output);
        return output;
    }

    /// <summary>Ends the response: releases held-back text and turns an unclosed block into a call (or a malformed call).</summary>
    public IReadOnlyList<AIContent> Complete()
    {
        if (_completed)
        {
            return [];
        }

        _completed = true;
        var output = new List<AIContent>();
        string rest = _pending.Span.ToString();
        _pending.Consume(_pending.Length);
        if (_inBlock)
        {
            _inBlock = false;
            output.Add(ParseBlock(rest, closed: false));
        }
        else if (!(_afterBlock && string.IsNullOrWhiteSpace(rest)))
        {
            AddText(output, rest);
        }

        return output;
    }

    private void Drain(List<AIContent> output)
    {
        while (true)
        {
            ReadOnlySpan<char> pending = _pending.Span;
            long origin = _pending.Origin;
            if (_inBlock)
            {
                int end = _endFinder.Find(_pending);
                int nextStart = _startFinder.Find(_pending);
                if (nextStart >= 0 && (end < 0 || nextStart < end))
                {
                    output.Add(ParseBlock(pending[..nextStart].ToString(), closed: false));
                    _pending.Consume(nextStart + StartTag.Length);
                    continue;
                }

                if (end < 0)
                {
                    return; // wait for the closing tag
                }

                output.Add(ParseBlock(pending[..end].ToString(), closed: true));
                _pending.Consume(end + EndTag.Length);
                _inBlock = false;
                _afterBlock = true;
                _whitespaceTo = _pending.Origin;
                continue;
            }

            int start = _startFinder.Find(_pending);
            if (start >= 0)
            {
                ReadOnlySpan<char> before = pending[..start];
                if (_afterBlock && before.IsWhiteSpace())
                {
                    before = [];
                }
                else if (before.EndsWith('\n'))
                {
                    before = before[..^1];
                }

                AddText(output, before.ToString());
                _pending.Consume(start + StartTag.Length);
                _inBlock = true;
                _afterBlock = false;
                continue;
            }

            if (_afterBlock)
            {
                // Whitespace after a block is dropped unless text other than a next block follows; remember how far the
                // run of whitespace was already checked so that a long run is scanned once.
                int i = (int)Math.Max(0, _whitespaceTo - origin);
                while (i < pending.Length && char.IsWhiteSpace(pending[i]))
                {
                    i++;
                }

                _whitespaceTo = origin + i;
                ReadOnlySpan<char> rest = pending[i..];
                if (rest.Length == 0 || StartTag.AsSpan().StartsWith(rest, StringComparison.Ordinal))
                {
                    return;
                }

                _afterBlock = false;
            }

            int hold = Math.Max(HeldSuffixLength(pending, SeparatedStartTag), HeldSuffixLength(pending, StartTag));
            AddText(output, pending[..^hold].ToString());
            _pending.Consume(pending.Length - hold);
            return;
        }
    }

    /// <summary>Length of the longest proper prefix of <paramref name="tag"/> that <paramref name="text"/> ends with.</summary>
    private static int HeldSuffixLength(ReadOnlySpan<char> text, string tag)
    {
        for (int length = Math.Min(text.Length, tag.Length - 1); length > 0; length--)
        {
            if (text[(text.Length - length)..].SequenceEqual(tag.AsSpan(0, length)))
            {
                return length;
            }
        }

        return 0;
    }

    /// <summary>
    /// The not yet released text: a char buffer that is appended at the end and consumed from the front, with the
    /// absolute stream offset of its first char (<see cref="Origin"/>). Amortised O(1) per char.
    /// </summary>
    private sealed class PendingText
    {
        private char[] _buffer = new char[256];
        private int _start;
        private int _end;

        /// <summary>Absolute offset (in chars since the start of the response) of the first pending char.</summary>
        public long Origin { get; private set; }

        public int Length => _end - _start;

        public ReadOnlySpan<char> Span => _buffer.AsSpan(_start, _end - _start);

        public void Append(string text)
        {
            if (text.Length > _buffer.Length - _end)
            {
                int length = Length;
                if (length + text.Length > _buffer.Length / 2)
                {
                    var grown = new char[Math.Max(_buffer.Length * 2, length + text.Length)];
                    Array.Copy(_buffer, _start, grown, 0, length);
                    _buffer = grown;
                }
                else
                {
                    Array.Copy(_buffer, _start, _buffer, 0, length);
                }

                _start = 0;
                _end = length;
            }

            text.CopyTo(0, _buffer, _end, text.Length);
            _end += text.Length;
        }

        public void Consume(int count)
        {
            _start += count;
            Origin += count;
            if (_start == _end)
            {
                _start = _end = 0;
            }
        }
    }

    /// <summary>
    /// Finds the first occurrence of a tag at or after the pending text's start, remembering what was searched: a found
    /// position stays valid until it is consumed, and text known not to start the tag is never searched again.
    /// </summary>
    private struct TagFinder(string tag)
    {
        private long _found = -1;     // absolute position of the next occurrence, or -1
        private long _searchedTo;     // no occurrence starts in [origin, _searchedTo) when _found is -1

        /// <summary>Position of the first occurrence relative to the pending start, or -1.</summary>
        public int Find(PendingText pending)
        {
            long origin = pending.Origin;
            if (_found >= origin)
            {
                return (int)(_found - origin);
            }

            int from = (int)Math.Max(0, _searchedTo - origin);
            ReadOnlySpan<char> span = pending.Span;
            int index = from <= span.Length ? span[from..].IndexOf(tag.AsSpan(), StringComparison.Ordinal) : -1;
            if (index >= 0)
            {
                _found = origin + from + index;
                return from + index;
            }

            _found = -1;
            _searchedTo = origin + Math.Max(from, span.Length - (tag.Length - 1));
            return -1;
        }
    }

    private static void AddText(List<AIContent> output, string text)
    {
        if (text.Length == 0)
        {
            return;
        }

        if (output.Count > 0 && output[^1] is TextContent previous)
        {
            output[^1] = new TextContent(previous.Text + text);
        }
        else
        {
            output.Add(new TextContent(text));
        }
    }

    private static void AddMerged(List<AIContent> target, IReadOnlyList<AIContent> items)
    {
        foreach (AIContent item in items)
        {
            if (item is TextContent text)
            {
                AddText(target, text.Text);
            }
            else
            {
                target.Add(item);
            }
        }
    }

    private FunctionCallContent ParseBlock(string raw, bool closed)
    {
        string callId = _callIdPrefix + "call_" + _callCount++;
        string? name;
        Dictionary<string, object?>? arguments;
        string? problem;
        try
        {
            problem = TryParseCall(raw.Trim(), out name, out arguments);
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or FormatException or OverflowException or DecoderFallbackException)
        {
            // Defence in depth: model output must never escape as an exception.
            (problem, name, arguments) = ($"the block could not be read ({ex.GetType().Name})", null, null);
        }

        if (problem is null)
        {
            return new FunctionCallContent(callId, name!, arguments) { RawRepresentation = raw };
        }

        if (!closed)
        {
            problem = "the tool call was not closed with </tool_call> and " + problem;
        }

        string? intended = name ?? GuessName(raw);
        string excerpt = Excerpt(raw, MaxExcerptChars);
        if (_logger is not null)
        {
            LogMalformedCall(_logger, callId, intended is null ? "?" : Excerpt(intended, 100), problem, excerpt);
        }

        var call = new FunctionCallContent(callId, MalformedCallName, arguments: null)
        {
            Exception = new InvalidDataException(
                $"Malformed Granite tool call{(intended is null ? "" : $" to '{Excerpt(intended, 100)}'")}: {problem}. Raw block: {excerpt}"),
            RawRepresentation = raw,
        };
        if (intended is not null)
        {
            call.AdditionalProperties = new AdditionalPropertiesDictionary { [IntendedNameProperty] = intended };
        }

        return call;
    }

    /// <summary>Longest raw-block excerpt quoted in an error message or log entry (the full block stays in
    /// <see cref="AIContent.RawRepresentation"/>).</summary>
    private const int MaxExcerptChars = 2000;

    /// <summary>Names longer than this are not guessed from a broken block (bounds the regex work).</summary>
    private const int MaxGuessChars = 4096;

    private static string Excerpt(string text, int max) =>
        text.Length <= max ? text : string.Concat(text.AsSpan(0, max), $"… ({text.Length - max} more chars)");

    /// <summary>Parses the inner text of a block; returns null on success, else a description of the problem.</summary>
    private static string? TryParseCall(string json, out string? name, out Dictionary<string, object?>? arguments)
    {
        name = null;
        arguments = null;
        if (json.Length == 0)
        {
            return "the block is empty";
        }

        JsonElement root;
        try
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(json);
            var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
            using JsonDocument document = JsonDocument.ParseValue(ref reader);
            for (long i = reader.BytesConsumed; i < utf8.Length; i++)
            {
                byte b = utf8[i];
                if (b != (byte)'}' && b != (byte)' ' && b != (byte)'\n' && b != (byte)'\r' && b != (byte)'\t')
                {
                    return $"unexpected text after the JSON object at offset {i}";
                }
            }

            root = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            return $"the block is not valid JSON ({ex.Message})";
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            return $"the block is a JSON {root.ValueKind}, not an object";
        }

        // Every key and string must decode (an escaped lone surrogate such as \ud800 does not) and no object may
        // repeat a key: with {"name": "safe", "name": "delete_all"} readers disagree on which call was meant.
        if (CheckValue(root, "the call object") is { } invalid)
        {
            return invalid;
        }

        if (root.TryGetProperty("name", out JsonElement nameElement) && nameElement.ValueKind == JsonValueKind.String)
        {
            name = nameElement.GetString();
        }

        if (string.IsNullOrEmpty(name))
        {
            name = null;
            return "the \"name\" field is missing or not a non-empty string";
        }

        if (!root.TryGetProperty("arguments", out JsonElement args) && !root.TryGetProperty("parameters", out args))
        {
            arguments = [];
            return null;
        }

        if (args.ValueKind == JsonValueKind.String)
        {
            string text = args.GetString()!;
            if (string.IsNullOrWhiteSpace(text))
            {
                arguments = [];
                return null;
            }

            try
            {
                using JsonDocument inner = JsonDocument.Parse(text);
                args = inner.RootElement.Clone();
            }
            catch (JsonException ex)
            {
                return $"the \"arguments\" string is not valid JSON ({ex.Message})";
            }

            if (args.ValueKind != JsonValueKind.Object)
            {
                return $"the \"arguments\" string holds a JSON {args.ValueKind}, not an object";
            }

            if (CheckValue(args, "the \"arguments\" string") is { } invalidInner)
            {
                return invalidInner;
            }
        }

        switch (args.ValueKind)
        {
            case JsonValueKind.Null:
                arguments = [];
                return null;
            case JsonValueKind.Object:
                arguments = [];
                foreach (JsonProperty property in args.EnumerateObject())
                {
                    arguments[property.Name] = property.Value;
                }

                return null;
            default:
                return $"\"arguments\" is a JSON {args.ValueKind}, not an object or a string";
        }
    }

    /// <summary>Null when every key and string of <paramref name="value"/> decodes to valid UTF-16 and no object repeats
    /// a key; otherwise the problem. Depth is bounded by the JSON reader's limit (64).</summary>
    private static string? CheckValue(JsonElement value, string where)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
            {
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (JsonProperty property in value.EnumerateObject())
                {
                    if (!TryDecode(() => property.Name, out string? key))
                    {
                        return $"a key in {where} is not valid text (an escaped unpaired surrogate such as \\ud800)";
                    }

                    if (!seen.Add(key!))
                    {
                        return $"the key \"{Excerpt(key!, 100)}\" appears more than once in {where}";
                    }

                    if (CheckValue(property.Value, where) is { } problem)
                    {
                        return problem;
                    }
                }

                return null;
            }

            case JsonValueKind.Array:
                foreach (JsonElement item in value.EnumerateArray())
                {
                    if (CheckValue(item, where) is { } problem)
                    {
                        return problem;
                    }
                }

                return null;
            case JsonValueKind.String:
                return TryDecode(value.GetString, out _)
                    ? null
                    : $"a string in {where} is not valid text (an escaped unpaired surrogate such as \\ud800)";
            default:
                return null;
        }
    }

    private static bool TryDecode(Func<string?> read, out string? text)
    {
        try
        {
            text = read();
            return true;
        }
        catch (InvalidOperationException)
        {
            text = null;
            return false;
        }
    }

    /// <summary>Best-effort name of a block that is not valid JSON, so that the error names the intended tool.</summary>
    private static string? GuessName(string raw)
    {
        Match match = NamePattern().Match(raw.Length <= MaxGuessChars ? raw : raw[..MaxGuessChars]);
        if (!match.Success)
        {
            return null;
        }

        try
        {
            using JsonDocument document = JsonDocument.Parse(match.Groups[1].Value);
            string? name = document.RootElement.GetString();
            return string.IsNullOrEmpty(name) ? null : name;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            // ArgumentException: the raw text holds an unpaired surrogate char, which has no UTF-8 form.
            return null;
        }
    }

    [GeneratedRegex("""
        "name"\s*:\s*("(?:[^"\\]|\\.)*")
        """, RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    [LoggerMessage(EventId = 1, Level = LogLevel.Warning,
        Message = "Malformed Granite tool call {CallId} (name '{Name}'): {Problem}. Raw block: {Raw}")]
    private static partial void LogMalformedCall(ILogger logger, string callId, string name, string problem, string raw);
}
