using System.Text;

namespace Granite.Core.Tokenization;

/// <summary>
/// Incrementally decodes generated ids. <see cref="Append"/> returns only complete characters (a multi-byte UTF-8
/// character split across tokens is held back, a surrogate pair is never split); the concatenation of all outputs
/// plus <see cref="Flush"/> equals <see cref="GraniteTokenizer.Decode"/> of the same ids. Not thread-safe.
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly GraniteTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false).GetDecoder();

    internal StreamingDetokenizer(GraniteTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id and returns the text that became complete (possibly empty).</summary>
    public string Append(int id)
    {
        byte[]? bytes = _tokenizer.TokenBytes(id, _skipSpecialTokens);
        return bytes is null || bytes.Length == 0 ? string.Empty : Convert(bytes, flush: false);
    }

    /// <summary>Ends the stream: returns U+FFFD for a dangling partial UTF-8 sequence (or empty) and resets the state.</summary>
    public string Flush() => Convert([], flush: true);

    private string Convert(byte[] bytes, bool flush)
    {
        int count = _decoder.GetCharCount(bytes, flush);
        char[] buffer = new char[count];
        int written = _decoder.GetChars(bytes, buffer, flush);
        return new string(buffer, 0, written);
    }
}
