using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Granite.Core.Diagnostics;

/// <summary>
/// Builds error messages that quote untrusted file content safely: short excerpts with control characters, lone
/// surrogates and line separators escaped, so that a crafted file cannot flood, break or drive the terminal.
/// </summary>
internal static class ErrorText
{
    /// <summary>Default longest excerpt of quoted content.</summary>
    public const int DefaultExcerptChars = 80;

    /// <summary>The text with control characters escaped as <c>\uXXXX</c>, cut to <paramref name="max"/> chars with "…".</summary>
    public static string Excerpt(string? text, int max = DefaultExcerptChars)
    {
        if (text is null) return "null";
        var sb = new StringBuilder(Math.Min(text.Length, max) + 16);
        for (int i = 0; i < text.Length; i++)
        {
            if (sb.Length >= max)
            {
                sb.Append('…');
                break;
            }

            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb.Append(c).Append(text[++i]);
            }
            else if (c < 0x20 || c is (>= '\u007f' and <= '\u009f') or '\u2028' or '\u2029' || char.IsSurrogate(c))
            {
                sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            }
            else
            {
                sb.Append(c);
            }
        }

        return sb.ToString();
    }

    /// <summary>
    /// "not valid JSON: malformed at line L, byte B (reason)" for a <see cref="JsonException"/>, without the parser's own quote of
    /// the offending text (which can be the rest of the file); the first sentence of the reason is kept as an excerpt.
    /// </summary>
    public static string JsonSyntax(JsonException ex)
    {
        string reason = ex.Message;
        int cut = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut >= 0) reason = reason[..cut];
        reason = reason.TrimEnd(' ', '.', '|');
        string where = ex.LineNumber is { } line
            ? $" at line {line + 1}{(ex.BytePositionInLine is { } b ? $", byte {b + 1}" : "")}"
            : "";
        return $"not valid JSON: malformed{where} ({Excerpt(reason, 120)})";
    }

    /// <summary>"not valid UTF-8 at byte N" when <paramref name="bytes"/> is not UTF-8, else null.</summary>
    public static string? InvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return null;
        int offset = 0;
        while (offset < bytes.Length)
        {
            var status = System.Text.Rune.DecodeFromUtf8(bytes[offset..], out _, out int consumed);
            if (status != System.Buffers.OperationStatus.Done) break;
            offset += consumed;
        }

        return $"not valid UTF-8 (bad byte sequence at offset {offset})";
    }
}

/// <summary>Reads checkpoint files only after checking them with <c>stat</c>: a FIFO, socket or device (which would block
/// or never end) and oversized files are refused before anything is opened.</summary>
internal static class CheckedFile
{
    /// <summary>Largest JSON side file read whole (config.json, generation_config.json, tokenizer_config.json, index).</summary>
    public const long MaxJsonBytes = 256L << 20;

    /// <summary>Largest tokenizer.json read whole.</summary>
    public const long MaxTokenizerBytes = 1L << 30;

    /// <summary>Throws unless <paramref name="path"/> is a regular file of at least <paramref name="minBytes"/> bytes (checked
    /// without opening it: FIFOs, sockets and character devices report size 0).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">A directory, a non-regular file, or too short.</exception>
    public static long EnsureRegular(string path, long minBytes = 1)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            if (Directory.Exists(path)) throw new InvalidDataException($"{path}: is a directory, not a file");
            throw new FileNotFoundException($"{path}: file not found", path);
        }

        // FileInfo reports a symbolic link's own size: judge the final target (a link to a FIFO or /dev/zero).
        if (info.LinkTarget is not null)
        {
            var target = info.ResolveLinkTarget(returnFinalTarget: true);
            if (target is null || !target.Exists) throw new FileNotFoundException($"{path}: symbolic link to a missing file", path);
            if (target is not FileInfo targetFile) throw new InvalidDataException($"{path}: links to a directory, not a file");
            info = targetFile;
        }

        long length = info.Length;
        if (length < minBytes)
            throw new InvalidDataException(length == 0
                ? $"{path}: is empty or not a regular file (a FIFO, socket or device is refused rather than read)"
                : $"{path}: {length} bytes is too short (at least {minBytes} expected)");
        return length;
    }

    /// <summary><see cref="File.ReadAllBytes"/> after <see cref="EnsureRegular"/> and a size limit.</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes = MaxJsonBytes)
    {
        long length = EnsureRegular(path);
        if (length > maxBytes)
            throw new InvalidDataException($"{path}: {length:N0} bytes is larger than the {maxBytes:N0}-byte limit for this file");
        return File.ReadAllBytes(path);
    }
}
