using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Granite.Core.Constraints;

/// <summary>Compiles the supported JSON Schema subset to <see cref="SchemaNode"/>s; collects keywords it does not enforce.</summary>
internal sealed class JsonSchemaCompiler
{
    /// <summary>Keywords that only annotate (never reported).</summary>
    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "description", "title", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
        "$defs", "definitions", "$anchor",
    };

    private static readonly HashSet<string> Supported = new(StringComparer.Ordinal)
    {
        "type", "properties", "required", "additionalProperties", "enum", "const", "items", "minItems", "maxItems",
        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "$ref",
    };

    private static readonly string[] AllTypes = { "object", "array", "string", "number", "boolean", "null" };

    private readonly JsonElement _root;
    private readonly Dictionary<string, SchemaNode> _refs = new(StringComparer.Ordinal);
    private readonly List<string> _unsupported = new();
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal);
    private SchemaNode? _any;

    private readonly JsonGrammarOptions _options;

    public JsonSchemaCompiler(JsonElement root, JsonGrammarOptions options)
    {
        _root = root;
        _options = options;
    }

    public IReadOnlyList<string> Unsupported => _unsupported;

    public SchemaNode Compile() => Compile(_root, "#");

    /// <summary>Any JSON value (recursive).</summary>
    public SchemaNode Any()
    {
        if (_any is not null) return _any;
        var node = _any = new SchemaNode();
        node.Branches = new Branch[]
        {
            new ObjectBranch { Additional = node },
            new ArrayBranch { Items = node },
            new StringBranch(),
            NewNumber(integer: false),
            Literals("false", "null", "true"),
        };
        return node;
    }

    internal static LiteralBranch Literals(params string[] texts) =>
        new() { Literals = Sorted(texts.Select(t => Encoding.UTF8.GetBytes(t))) };

    private static byte[][] Sorted(IEnumerable<byte[]> items)
    {
        var list = new List<byte[]>();
        foreach (var b in items)
            if (!list.Any(x => x.AsSpan().SequenceEqual(b))) list.Add(b);
        list.Sort((a, b) => a.AsSpan().SequenceCompareTo(b));
        return list.ToArray();
    }

    private void Report(string path, string keyword, string why)
    {
        string text = $"{path}: '{keyword}' {why}";
        if (_reported.Add(text)) _unsupported.Add(text);
    }

    private static InvalidDataException Error(string path, string message) => new($"JSON schema {path}: {message}");

    private SchemaNode Compile(JsonElement s, string path)
    {
        if (s.ValueKind == JsonValueKind.True) return Any();
        if (s.ValueKind == JsonValueKind.False) throw Error(path, "the schema 'false' accepts no value.");
        if (s.ValueKind != JsonValueKind.Object) throw Error(path, $"a schema must be an object or a boolean; got {s.ValueKind}.");

        foreach (var p in s.EnumerateObject())
        {
            if (!Supported.Contains(p.Name) && !Annotations.Contains(p.Name))
                Report(path, p.Name, p.Name == "format" ? "is not enforced (any string of the allowed length is accepted)" : "is not supported and is not enforced");
        }

        if (s.TryGetProperty("$ref", out var refEl))
        {
            foreach (var p in s.EnumerateObject())
                if (p.Name != "$ref" && Supported.Contains(p.Name)) Report(path, p.Name, "next to '$ref' is not enforced (only the reference is)");
            return Resolve(refEl, path);
        }

        HashSet<string>? types = null;
        if (s.TryGetProperty("type", out var typeEl))
        {
            types = new HashSet<string>(StringComparer.Ordinal);
            if (typeEl.ValueKind == JsonValueKind.String) types.Add(typeEl.GetString()!);
            else if (typeEl.ValueKind == JsonValueKind.Array)
            {
                foreach (var t in typeEl.EnumerateArray())
                    types.Add(t.ValueKind == JsonValueKind.String ? t.GetString()! : throw Error(path + "/type", "type names must be strings."));
            }
            else throw Error(path + "/type", "'type' must be a string or an array of strings.");
            foreach (var t in types)
                if (t != "integer" && !AllTypes.Contains(t)) throw Error(path + "/type", $"unknown type '{t}'.");
            if (types.Count == 0) throw Error(path + "/type", "an empty type list accepts no value.");
        }

        var node = new SchemaNode();
        if (s.TryGetProperty("const", out var constEl) || s.TryGetProperty("enum", out _))
        {
            var values = new List<JsonElement>();
            if (s.TryGetProperty("const", out constEl)) values.Add(constEl);
            else
            {
                var en = s.GetProperty("enum");
                if (en.ValueKind != JsonValueKind.Array) throw Error(path + "/enum", "'enum' must be an array.");
                values.AddRange(en.EnumerateArray());
            }
            var kept = values.Where(v => types is null || types.Contains(TypeOf(v)) || (TypeOf(v) == "integer" && types.Contains("number"))).ToList();
            if (kept.Count == 0) throw Error(path, "no enum/const value matches the schema's type.");
            foreach (var k in new[] { "properties", "items", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "anyOf", "oneOf" })
                if (s.TryGetProperty(k, out _)) Report(path, k, "next to 'enum'/'const' is not enforced (only the listed values are)");
            node.Branches = new Branch[] { new LiteralBranch { Literals = Sorted(kept.Select(Canonical)) } };
            return node;
        }

        var alternatives = s.TryGetProperty("anyOf", out var anyOf) ? ("anyOf", anyOf) : s.TryGetProperty("oneOf", out var oneOf) ? ("oneOf", oneOf) : default;
        if (alternatives.Item1 is not null)
        {
            var (kw, arr) = alternatives;
            if (arr.ValueKind != JsonValueKind.Array || arr.GetArrayLength() == 0) throw Error($"{path}/{kw}", $"'{kw}' must be a non-empty array.");
            if (kw == "oneOf") Report(path, "oneOf", "is enforced as anyOf (a value matching several alternatives is not rejected)");
            if (s.TryGetProperty("anyOf", out _) && s.TryGetProperty("oneOf", out _)) Report(path, "oneOf", "next to 'anyOf' is not enforced");
            foreach (var k in new[] { "properties", "items", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "required", "additionalProperties" })
                if (s.TryGetProperty(k, out _)) Report(path, k, $"next to '{kw}' is not enforced (only the alternatives are)");
            var branches = new List<Branch>();
            int i = 0;
            foreach (var alt in arr.EnumerateArray())
            {
                var compiled = Compile(alt, $"{path}/{kw}/{i++}");
                // Deferred ($ref cycles): keep the node by indirection through a wrapper value.
                branches.AddRange(compiled.Branches.Length > 0 ? compiled.Branches : new Branch[] { new RefBranch(compiled) });
            }
            if (types is not null) branches = branches.Where(b => b is RefBranch || Matches(b, types)).ToList();
            if (branches.Count == 0) throw Error(path, $"no '{kw}' alternative matches the schema's type.");
            node.Branches = branches.ToArray();
            return node;
        }

        var result = new List<Branch>();
        var effective = types ?? new HashSet<string>(AllTypes);
        if (effective.Contains("object")) result.Add(CompileObject(s, path));
        if (effective.Contains("array")) result.Add(CompileArray(s, path));
        if (effective.Contains("string")) result.Add(CompileString(s, path));
        if (effective.Contains("number") || effective.Contains("integer")) result.Add(CompileNumber(s, path, integer: !effective.Contains("number")));
        var lits = new List<string>();
        if (effective.Contains("boolean")) { lits.Add("false"); lits.Add("true"); }
        if (effective.Contains("null")) lits.Add("null");
        if (lits.Count > 0) result.Add(Literals(lits.ToArray()));
        node.Branches = result.ToArray();
        return node;
    }

    private static bool Matches(Branch b, HashSet<string> types) => b switch
    {
        ObjectBranch => types.Contains("object"),
        ArrayBranch => types.Contains("array"),
        StringBranch => types.Contains("string"),
        NumberBranch n => types.Contains("number") || (n.Integer && types.Contains("integer")),
        LiteralBranch => true,
        _ => true,
    };

    private SchemaNode Resolve(JsonElement refEl, string path)
    {
        string r = refEl.ValueKind == JsonValueKind.String ? refEl.GetString()! : throw Error(path + "/$ref", "'$ref' must be a string.");
        if (!r.StartsWith('#')) throw Error(path + "/$ref", $"only local references ('#/$defs/…') are supported; got '{r}'.");
        if (_refs.TryGetValue(r, out var known)) return known;
        var target = _root;
        if (r.Length > 1)
        {
            if (r[1] != '/') throw Error(path + "/$ref", $"'{r}' is not a JSON pointer (anchors are not supported).");
            foreach (var raw in r[2..].Split('/'))
            {
                string part = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
                if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty(part, out var next)) target = next;
                else if (target.ValueKind == JsonValueKind.Array && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int idx) && idx < target.GetArrayLength()) target = target[idx];
                else throw Error(path + "/$ref", $"'{r}' does not resolve inside the schema.");
            }
        }
        var node = new SchemaNode();
        _refs[r] = node; // placeholder first: recursive schemas refer to it
        var compiled = Compile(target, r);
        node.Branches = compiled.Branches.Length > 0 ? compiled.Branches : new Branch[] { new RefBranch(compiled) };
        return node;
    }

    private ObjectBranch CompileObject(JsonElement s, string path)
    {
        var names = new List<string>();
        var values = new List<SchemaNode>();
        if (s.TryGetProperty("properties", out var props))
        {
            if (props.ValueKind != JsonValueKind.Object) throw Error(path + "/properties", "'properties' must be an object.");
            foreach (var p in props.EnumerateObject())
            {
                names.Add(p.Name);
                values.Add(Compile(p.Value, $"{path}/properties/{p.Name}"));
            }
        }
        // Declared properties and no 'additionalProperties': undeclared ones are not generated unless the options allow
        // them (a subset of what the schema accepts, like strict structured-output modes elsewhere).
        bool implicitClosed = names.Count > 0 && !_options.AllowUndeclaredProperties;
        SchemaNode? additional = implicitClosed ? null : Any();
        if (s.TryGetProperty("additionalProperties", out var ap))
        {
            implicitClosed = false;
            additional = ap.ValueKind switch
            {
                JsonValueKind.False => null,
                JsonValueKind.True => Any(),
                JsonValueKind.Object => Compile(ap, path + "/additionalProperties"),
                _ => throw Error(path + "/additionalProperties", "'additionalProperties' must be a boolean or a schema."),
            };
        }
        var required = new List<string>();
        if (s.TryGetProperty("required", out var req))
        {
            if (req.ValueKind != JsonValueKind.Array) throw Error(path + "/required", "'required' must be an array of names.");
            foreach (var r in req.EnumerateArray())
            {
                string name = r.ValueKind == JsonValueKind.String ? r.GetString()! : throw Error(path + "/required", "'required' must contain strings.");
                if (required.Contains(name)) continue;
                required.Add(name);
                if (!names.Contains(name))
                {
                    if (additional is null && !implicitClosed) throw Error(path + "/required", $"'{name}' is required but not among 'properties', and additionalProperties is false.");
                    names.Add(name);
                    values.Add(additional ?? Any());
                }
            }
        }
        if (names.Count > 64) throw Error(path + "/properties", $"{names.Count} properties; at most 64 per object are supported.");
        var encoded = names.Select(n => EncodeString(n)).ToArray();
        var order = Enumerable.Range(0, names.Count).OrderBy(i => encoded[i], ByteComparer.Instance).ToArray();
        var branch = new ObjectBranch
        {
            Names = order.Select(i => encoded[i]).ToArray(),
            Values = order.Select(i => values[i]).ToArray(),
            Declared = order,
            Additional = additional,
        };
        for (int k = 0; k < order.Length; k++)
            if (required.Contains(names[order[k]])) branch.Required |= 1UL << k;
        return branch;
    }

    private ArrayBranch CompileArray(JsonElement s, string path)
    {
        var branch = new ArrayBranch { Items = Any() };
        if (s.TryGetProperty("items", out var items))
        {
            if (items.ValueKind == JsonValueKind.Array) Report(path, "items", "as an array (tuple form) is not supported; items are not constrained");
            else branch.Items = Compile(items, path + "/items");
        }
        branch.Min = Count(s, "minItems", path) ?? 0;
        branch.Max = Count(s, "maxItems", path) ?? int.MaxValue;
        if (branch.Min > branch.Max) throw Error(path, $"minItems {branch.Min} > maxItems {branch.Max}.");
        return branch;
    }

    private StringBranch CompileString(JsonElement s, string path)
    {
        var branch = new StringBranch { Min = Count(s, "minLength", path) ?? 0, Max = Count(s, "maxLength", path) ?? int.MaxValue };
        if (branch.Min > branch.Max) throw Error(path, $"minLength {branch.Min} > maxLength {branch.Max}.");
        return branch;
    }

    private NumberBranch CompileNumber(JsonElement s, string path, bool integer)
    {
        var b = NewNumber(integer);
        if (Bound(s, "minimum", path) is { } min) b.Lo = min;
        if (Bound(s, "maximum", path) is { } max) b.Hi = max;
        if (s.TryGetProperty("exclusiveMinimum", out var exMin))
        {
            if (exMin.ValueKind == JsonValueKind.True) b.LoExclusive = b.Lo is not null; // draft 4
            else if (exMin.ValueKind == JsonValueKind.Number && Bound(s, "exclusiveMinimum", path) is { } v && (b.Lo is null || v >= b.Lo)) { b.Lo = v; b.LoExclusive = true; }
        }
        if (s.TryGetProperty("exclusiveMaximum", out var exMax))
        {
            if (exMax.ValueKind == JsonValueKind.True) b.HiExclusive = b.Hi is not null;
            else if (exMax.ValueKind == JsonValueKind.Number && Bound(s, "exclusiveMaximum", path) is { } v && (b.Hi is null || v <= b.Hi)) { b.Hi = v; b.HiExclusive = true; }
        }
        if (!NumberFrame.FeasibleStart(b))
            throw Error(path, integer
                ? $"no integer of at most {b.IntDigits} digits (JsonGrammarOptions.MaxIntegerDigits) satisfies minimum/maximum."
                : $"no number of at most {b.IntDigits} integer digits satisfies minimum/maximum.");
        return b;
    }

    private NumberBranch NewNumber(bool integer) => new()
    {
        Integer = integer,
        IntDigits = integer ? _options.MaxIntegerDigits : _options.MaxNumberDigits,
        FracDigits = integer ? 0 : _options.MaxFractionDigits,
    };

    private static int? Count(JsonElement s, string key, string path)
    {
        if (!s.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || d < 0 || d != Math.Floor(d))
            throw Error($"{path}/{key}", $"'{key}' must be a non-negative integer.");
        return d >= int.MaxValue ? int.MaxValue : (int)d;
    }

    private static decimal? Bound(JsonElement s, string key, string path)
    {
        if (!s.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.True || v.ValueKind == JsonValueKind.False) return null;
        if (v.ValueKind != JsonValueKind.Number) throw Error($"{path}/{key}", $"'{key}' must be a number.");
        if (v.TryGetDecimal(out decimal m)) return m;
        double d = v.GetDouble();
        return d > 0 ? NumberFrame.Huge : -NumberFrame.Huge; // beyond decimal range: every generated number is inside
    }

    private static string TypeOf(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => v.TryGetInt64(out _) || (v.TryGetDecimal(out var d) && d == decimal.Truncate(d)) ? "integer" : "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        _ => "null",
    };

    /// <summary>Compact JSON with minimal string escaping (what the grammar expects for enum/const values).</summary>
    internal static byte[] Canonical(JsonElement v)
    {
        var sb = new StringBuilder();
        Write(v, sb);
        return Encoding.UTF8.GetBytes(sb.ToString());

        static void Write(JsonElement v, StringBuilder sb)
        {
            switch (v.ValueKind)
            {
                case JsonValueKind.Object:
                    sb.Append('{');
                    bool first = true;
                    foreach (var p in v.EnumerateObject())
                    {
                        if (!first) sb.Append(',');
                        first = false;
                        sb.Append('"').Append(Escape(p.Name)).Append("\":");
                        Write(p.Value, sb);
                    }
                    sb.Append('}');
                    break;
                case JsonValueKind.Array:
                    sb.Append('[');
                    int i = 0;
                    foreach (var e in v.EnumerateArray())
                    {
                        if (i++ > 0) sb.Append(',');
                        Write(e, sb);
                    }
                    sb.Append(']');
                    break;
                case JsonValueKind.String:
                    sb.Append('"').Append(Escape(v.GetString()!)).Append('"');
                    break;
                default:
                    sb.Append(v.GetRawText());
                    break;
            }
        }
    }

    /// <summary>Canonical JSON string escaping without quotes: <c>\" \\ \b \f \n \r \t</c>, <c>\u00XX</c> for other controls.</summary>
    internal static string Escape(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }

    internal static byte[] EncodeString(string s) => Encoding.UTF8.GetBytes(Escape(s));

    /// <summary>Deepest nesting the schema forces or allows without recursion (−1 if recursive: limited at run time).</summary>
    internal static int StaticDepth(SchemaNode root)
    {
        var onStack = new HashSet<SchemaNode>();
        bool recursive = false;
        int Depth(SchemaNode n)
        {
            if (!onStack.Add(n)) { recursive = true; return 0; }
            int best = 0;
            foreach (var b in n.Branches)
            {
                int d = b switch
                {
                    ObjectBranch o => 1 + o.Values.Concat(o.Additional is null ? Array.Empty<SchemaNode>() : new[] { o.Additional }).Select(Depth).DefaultIfEmpty(0).Max(),
                    ArrayBranch a => 1 + Depth(a.Items),
                    RefBranch r => Depth(r.Target),
                    _ => 0,
                };
                best = Math.Max(best, d);
            }
            onStack.Remove(n);
            return best;
        }
        int depth = Depth(root);
        return recursive ? -1 : depth;
    }

    private sealed class ByteComparer : IComparer<byte[]>
    {
        public static readonly ByteComparer Instance = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}

/// <summary>A branch standing for a whole node (a reference still being compiled when it was used).</summary>
internal sealed class RefBranch : Branch
{
    public RefBranch(SchemaNode target) => Target = target;
    public SchemaNode Target { get; }
}
