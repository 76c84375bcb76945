using System.Collections;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Chat;

/// <summary>
/// Serialises values exactly like the Hugging Face chat-template <c>tojson</c> filter, i.e. Python
/// <c>json.dumps(x, ensure_ascii=False)</c>: input key order kept, separators <c>", "</c> and <c>": "</c>, no indentation,
/// non-ASCII characters written raw, only <c>"</c>, <c>\</c> and control characters escaped (no HTML escaping).
/// Numbers follow Python semantics after <c>json.loads</c>: integers are written as-is, numbers with a fraction or
/// exponent are written as Python <c>repr(float)</c> (e.g. <c>1.0</c>, <c>1e-05</c>, <c>1e+16</c>).
/// </summary>
internal static class PythonJson
{
    /// <summary>Serialises a JSON element.</summary>
    public static string Serialize(JsonElement element)
    {
        var sb = new StringBuilder();
        Write(sb, element);
        return sb.ToString();
    }

    /// <summary>Serialises a .NET value (JSON DOM types, dictionaries, lists, primitives, or any serialisable object).</summary>
    public static string SerializeValue(object? value)
    {
        var sb = new StringBuilder();
        WriteValue(sb, value, depth: 0);
        return sb.ToString();
    }

    /// <summary>Writes a JSON element in Python <c>json.dumps</c> style.</summary>
    public static void Write(StringBuilder sb, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
            {
                sb.Append('{');
                bool first = true;
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    if (!first)
                    {
                        sb.Append(", ");
                    }

                    first = false;
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        // An escaped unpaired surrogate (\ud800) has no UTF-16 string: keep the key as written.
                        sb.Append('"').Append(Encoding.UTF8.GetString(JsonMarshal.GetRawUtf8PropertyName(property))).Append("\": ");
                        Write(sb, property.Value);
                        continue;
                    }

                    WriteString(sb, name);
                    sb.Append(": ");
                    Write(sb, property.Value);
                }

                sb.Append('}');
                break;
            }

            case JsonValueKind.Array:
            {
                sb.Append('[');
                bool first = true;
                foreach (JsonElement item in element.EnumerateArray())
                {
                    if (!first)
                    {
                        sb.Append(", ");
                    }

                    first = false;
                    Write(sb, item);
                }

                sb.Append(']');
                break;
            }

            case JsonValueKind.String:
                string text;
                try
                {
                    text = element.GetString()!;
                }
                catch (InvalidOperationException)
                {
                    // An escaped unpaired surrogate (\ud800) has no UTF-16 string: keep the literal as written.
                    sb.Append(element.GetRawText());
                    break;
                }

                WriteString(sb, text);
                break;
            case JsonValueKind.Number:
                WriteNumberLiteral(sb, element.GetRawText());
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            case JsonValueKind.Null:
            case JsonValueKind.Undefined:
                sb.Append("null");
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(element), element.ValueKind, "Unsupported JSON value kind.");
        }
    }

    /// <summary>Writes a .NET value in Python <c>json.dumps</c> style.</summary>
    public static void WriteValue(StringBuilder sb, object? value, int depth)
    {
        if (depth > 64)
        {
            throw new InvalidOperationException("Value nesting exceeds 64 levels (cyclic object graph?).");
        }

        switch (value)
        {
            case null:
                sb.Append("null");
                return;
            case string s:
                WriteString(sb, s);
                return;
            case bool b:
                sb.Append(b ? "true" : "false");
                return;
            case JsonElement element:
                Write(sb, element);
                return;
            case JsonDocument document:
                Write(sb, document.RootElement);
                return;
            case JsonNode node:
                using (JsonDocument document = JsonDocument.Parse(node.ToJsonString()))
                {
                    Write(sb, document.RootElement);
                }

                return;
            case double d:
                WriteDouble(sb, d);
                return;
            case float f:
                WriteDouble(sb, double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
                return;
            case sbyte or byte or short or ushort or int or uint or long or ulong or System.Numerics.BigInteger or Int128 or UInt128:
                sb.Append(((IFormattable)value).ToString(null, CultureInfo.InvariantCulture));
                return;
            case decimal m:
                WriteNumberLiteral(sb, m.ToString(CultureInfo.InvariantCulture));
                return;
            case char c:
                WriteString(sb, c.ToString());
                return;
            case IEnumerable<KeyValuePair<string, object?>> dictionary:
            {
                sb.Append('{');
                bool first = true;
                foreach (KeyValuePair<string, object?> pair in dictionary)
                {
                    if (!first)
                    {
                        sb.Append(", ");
                    }

                    first = false;
                    WriteString(sb, pair.Key);
                    sb.Append(": ");
                    WriteValue(sb, pair.Value, depth + 1);
                }

                sb.Append('}');
                return;
            }

            case IDictionary:
                break; // other dictionaries: let System.Text.Json decide the shape below
            case IEnumerable enumerable:
            {
                sb.Append('[');
                bool first = true;
                foreach (object? item in enumerable)
                {
                    if (!first)
                    {
                        sb.Append(", ");
                    }

                    first = false;
                    WriteValue(sb, item, depth + 1);
                }

                sb.Append(']');
                return;
            }
        }

        JsonElement serialized = JsonSerializer.SerializeToElement(value, value.GetType(), AIJsonUtilities.DefaultOptions);
        Write(sb, serialized);
    }

    /// <summary>Writes a string literal with Python's escaping (<c>ensure_ascii=False</c>).</summary>
    public static void WriteString(StringBuilder sb, string value)
    {
        sb.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"':
                    sb.Append("\\\"");
                    break;
                case '\\':
                    sb.Append("\\\\");
                    break;
                case '\n':
                    sb.Append("\\n");
                    break;
                case '\r':
                    sb.Append("\\r");
                    break;
                case '\t':
                    sb.Append("\\t");
                    break;
                case '\b':
                    sb.Append("\\b");
                    break;
                case '\f':
                    sb.Append("\\f");
                    break;
                default:
                    if (c < 0x20)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }

                    break;
            }
        }

        sb.Append('"');
    }

    /// <summary>Writes a JSON number literal the way Python re-serialises it after <c>json.loads</c>.</summary>
    private static void WriteNumberLiteral(StringBuilder sb, string literal)
    {
        bool isFloat = literal.AsSpan().IndexOfAny('.', 'e', 'E') >= 0;
        if (!isFloat)
        {
            // Python int: arbitrary precision, written back unchanged ("-0" becomes "0").
            sb.Append(literal == "-0" ? "0" : literal);
            return;
        }

        WriteDouble(sb, double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    /// <summary>Writes a double like Python's <c>repr(float)</c> (shortest round-trip digits).</summary>
    internal static void WriteDouble(StringBuilder sb, double value)
    {
        if (double.IsNaN(value))
        {
            sb.Append("NaN");
            return;
        }

        if (double.IsInfinity(value))
        {
            sb.Append(value > 0 ? "Infinity" : "-Infinity");
            return;
        }

        if (value < 0 || (value == 0 && double.IsNegative(value)))
        {
            sb.Append('-');
            value = -value;
        }

        // Shortest round-trip representation, e.g. "1E+16", "1.5E-05", "123.456", "0.0001".
        string r = value.ToString("R", CultureInfo.InvariantCulture);
        int exponent = 0;
        int ePos = r.IndexOfAny(['E', 'e']);
        string mantissa = r;
        if (ePos >= 0)
        {
            exponent = int.Parse(r.AsSpan(ePos + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            mantissa = r[..ePos];
        }

        int dot = mantissa.IndexOf('.', StringComparison.Ordinal);
        string intPart = dot >= 0 ? mantissa[..dot] : mantissa;
        string fracPart = dot >= 0 ? mantissa[(dot + 1)..] : string.Empty;
        string digits = intPart + fracPart;
        int decpt = intPart.Length + exponent; // value = 0.<digits> * 10^decpt
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0')
        {
            lead++;
        }

        digits = digits[lead..];
        decpt -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0)
        {
            sb.Append("0.0");
            return;
        }

        if (decpt <= -4 || decpt > 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1)
            {
                sb.Append('.').Append(digits, 1, digits.Length - 1);
            }

            int e = decpt - 1;
            sb.Append('e').Append(e < 0 ? '-' : '+').Append(Math.Abs(e).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (decpt <= 0)
        {
            sb.Append("0.").Append('0', -decpt).Append(digits);
        }
        else if (decpt < digits.Length)
        {
            sb.Append(digits, 0, decpt).Append('.').Append(digits, decpt, digits.Length - decpt);
        }
        else
        {
            sb.Append(digits).Append('0', decpt - digits.Length).Append(".0");
        }
    }
}
