using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;
using Granite.Core.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Granite.Core.Constraints;

/// <summary>
/// A JSON value grammar compiled from a JSON Schema subset (or "any object"/"any value"): immutable, thread-safe,
/// reusable across requests. See <c>docs/structured-output.md</c> for the supported keywords.
/// </summary>
[Experimental(GraniteDiagnosticIds.ExperimentalConstraints, UrlFormat = GraniteDiagnosticIds.UrlFormat)]
public sealed class JsonGrammar
{
    private JsonGrammar(SchemaNode root, JsonGrammarOptions options, IReadOnlyList<string> unsupported)
    {
        Root = root;
        Options = options;
        UnsupportedKeywords = unsupported;
        Settings = new FrameSettings { MaxWhitespace = options.MaxWhitespace, MaxDepth = options.MaxDepth };
    }

    internal SchemaNode Root { get; }

    internal FrameSettings Settings { get; }

    /// <summary>The options.</summary>
    public JsonGrammarOptions Options { get; }

    /// <summary>Schema keywords that are present but not enforced, as <c>path: 'keyword' why</c> (empty when all are).</summary>
    public IReadOnlyList<string> UnsupportedKeywords { get; }

    /// <summary>Any JSON object.</summary>
    public static JsonGrammar AnyObject(JsonGrammarOptions? options = null)
    {
        options = Checked(options);
        var c = new JsonSchemaCompiler(default, options);
        var root = new SchemaNode { Branches = new Branch[] { new ObjectBranch { Additional = c.Any() } } };
        return new JsonGrammar(root, options, Array.Empty<string>());
    }

    /// <summary>Any JSON value.</summary>
    public static JsonGrammar AnyValue(JsonGrammarOptions? options = null)
    {
        options = Checked(options);
        return new JsonGrammar(new JsonSchemaCompiler(default, options).Any(), options, Array.Empty<string>());
    }

    /// <summary>Compiles a JSON Schema (text).</summary>
    /// <exception cref="InvalidDataException">The schema is malformed or unsatisfiable (the message names the path).</exception>
    public static JsonGrammar FromSchema(string schemaJson, JsonGrammarOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(schemaJson);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(schemaJson); }
        catch (JsonException ex) { throw new InvalidDataException($"JSON schema: not valid JSON ({ex.Message})", ex); }
        using (doc) return FromSchema(doc.RootElement, options, logger);
    }

    /// <summary>Compiles a JSON Schema. Unsupported keywords are listed in <see cref="UnsupportedKeywords"/> and logged once (warning).</summary>
    /// <exception cref="InvalidDataException">The schema is malformed or unsatisfiable (the message names the path).</exception>
    public static JsonGrammar FromSchema(JsonElement schema, JsonGrammarOptions? options = null, ILogger? logger = null)
    {
        options = Checked(options);
        var compiler = new JsonSchemaCompiler(schema.Clone(), options);
        var root = compiler.Compile();
        return Finish(root, options, compiler.Unsupported, logger);
    }

    /// <summary>
    /// The tool-call body <c>{"name": N, "arguments": A}</c>: N one of the declared names (as a JSON string, first), A that
    /// tool's parameter schema (null = any object).
    /// </summary>
    /// <exception cref="InvalidDataException">A parameter schema is malformed (the message names the tool).</exception>
    public static JsonGrammar ToolCall(IEnumerable<KeyValuePair<string, JsonElement?>> tools, JsonGrammarOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(tools);
        options = Checked(options);
        var branches = new List<Branch>();
        var unsupported = new List<string>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        byte[] nameKey = JsonSchemaCompiler.EncodeString("name"), argsKey = JsonSchemaCompiler.EncodeString("arguments");
        foreach (var (name, schema) in tools)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("A tool has an empty name.", nameof(tools));
            if (!names.Add(name)) continue;
            SchemaNode args;
            if (schema is { } s && s.ValueKind != JsonValueKind.Undefined && s.ValueKind != JsonValueKind.Null)
            {
                var c = new JsonSchemaCompiler(s.Clone(), options);
                try { args = c.Compile(); }
                catch (InvalidDataException ex) { throw new InvalidDataException($"Tool '{name}': {ex.Message}", ex); }
                unsupported.AddRange(c.Unsupported.Select(u => $"tool '{name}' {u}"));
            }
            else
            {
                args = new SchemaNode { Branches = new Branch[] { new ObjectBranch { Additional = new JsonSchemaCompiler(default, options).Any() } } };
            }
            var nameNode = new SchemaNode { Branches = new Branch[] { new LiteralBranch { Literals = new[] { Encoding.UTF8.GetBytes("\"" + JsonSchemaCompiler.Escape(name) + "\"") } } } };
            // Sorted names: "arguments" < "name"; declaration order: name (0), then arguments (1).
            branches.Add(new ObjectBranch
            {
                Names = new[] { argsKey, nameKey },
                Values = new[] { args, nameNode },
                Declared = new[] { 1, 0 },
                Required = 0b11,
                Additional = null,
                Ordered = true,
            });
        }
        if (branches.Count == 0) throw new ArgumentException("At least one tool is required.", nameof(tools));
        return Finish(new SchemaNode { Branches = branches.ToArray() }, options, unsupported, logger);
    }

    private static JsonGrammar Finish(SchemaNode root, JsonGrammarOptions options, IReadOnlyList<string> unsupported, ILogger? logger)
    {
        int depth = JsonSchemaCompiler.StaticDepth(root);
        if (depth > options.MaxDepth)
            throw new InvalidDataException($"JSON schema: nests {depth} levels of objects/arrays; the limit is MaxDepth = {options.MaxDepth}.");
        if (unsupported.Count > 0 && logger is not null)
            logger.LogWarning("JSON schema keywords not enforced by constrained decoding: {Keywords}", string.Join("; ", unsupported));
        return new JsonGrammar(root, options, unsupported.ToArray());
    }

    private static JsonGrammarOptions Checked(JsonGrammarOptions? options)
    {
        options ??= new JsonGrammarOptions();
        options.Validate();
        return options;
    }

    /// <summary>A byte-level matcher of one value (for tests and tools that check text without a tokenizer).</summary>
    public JsonByteMatcher CreateByteMatcher() => new(new Frame[] { new ValueFrame(Root, DoneFrame.Instance, Settings) });
}

