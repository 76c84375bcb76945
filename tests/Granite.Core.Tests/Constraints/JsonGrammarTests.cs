using System.Text;
using Granite.Core.Constraints;

namespace Granite.Core.Tests.Constraints;

public class JsonGrammarTests
{
    private static bool Accepts(JsonGrammar g, string text) { var m = g.CreateByteMatcher(); return m.TryFeed(text) && m.IsComplete; }

    private static bool Prefix(JsonGrammar g, string text) => g.CreateByteMatcher().TryFeed(text);

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\": [1, -0, 0.5, -2.5e+10, 1E3, true, false, null, \"x\"], \"b\": {\"c\": {}}}")]
    [InlineData("{\"s\": \"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"}")]
    [InlineData("{\"ü\": \"日本語 😀\"}")]
    public void AnyObject_accepts_valid_json(string json) => Accepts(JsonGrammar.AnyObject(), json).Should().BeTrue();

    [Theory]
    [InlineData("[]")]                       // not an object
    [InlineData(" {}")]                      // no leading whitespace
    [InlineData("{\"a\":01}")]               // leading zero
    [InlineData("{\"a\":1.}")]               // fraction needs a digit
    [InlineData("{\"a\":.5}")]
    [InlineData("{\"a\":1e}")]
    [InlineData("{\"a\":+1}")]
    [InlineData("{\"a\":\"\\x\"}")]          // bad escape
    [InlineData("{\"a\":\"\\u12G4\"}")]      // bad hex
    [InlineData("{\"a\":\"\\uDE00\"}")]      // lone low surrogate
    [InlineData("{\"a\":\"\\uD83D\"}")]      // high surrogate without its pair
    [InlineData("{\"a\":\"\\uD83Dx\"}")]
    [InlineData("{\"a\":\"\n\"}")]           // raw control character
    [InlineData("{\"a\":1,}")]               // trailing comma
    [InlineData("{\"a\":1  }")]              // two whitespace bytes (cap 1)
    [InlineData("{\"a\":1,\"a\":2}")]        // repeated key
    [InlineData("{\"a\":tru}")]
    [InlineData("{\"a\":1}}")]
    public void AnyObject_rejects_invalid_json(string json) => Accepts(JsonGrammar.AnyObject(), json).Should().BeFalse();

    [Fact]
    public void Utf8_split_across_feeds_and_invalid_sequences()
    {
        var g = JsonGrammar.AnyObject();
        var m = g.CreateByteMatcher();
        byte[] emoji = Encoding.UTF8.GetBytes("😀"); // F0 9F 98 80
        m.TryFeed("{\"k\":\"").Should().BeTrue();
        m.TryFeed(emoji.AsSpan(0, 1)).Should().BeTrue();
        m.TryFeed(emoji.AsSpan(1, 2)).Should().BeTrue();
        m.TryFeed("\"").Should().BeFalse("the character is incomplete");
        m.TryFeed(emoji.AsSpan(3, 1)).Should().BeTrue();
        m.TryFeed("\"}").Should().BeTrue();
        m.IsComplete.Should().BeTrue();

        var bad = g.CreateByteMatcher();
        bad.TryFeed("{\"k\":\"").Should().BeTrue();
        bad.TryFeed(new byte[] { 0xC0, 0x80 }).Should().BeFalse("overlong encoding");
        bad.TryFeed(new byte[] { 0xED, 0xA0, 0x80 }).Should().BeFalse("UTF-8 encoded surrogate");
        bad.TryFeed(new byte[] { 0x80 }).Should().BeFalse("stray continuation byte");
    }

    [Fact]
    public void Tokens_straddling_structure_are_accepted_byte_by_byte()
    {
        var g = JsonGrammar.FromSchema("""{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false}""");
        var m = g.CreateByteMatcher();
        foreach (var piece in new[] { "{\"", "a\":", " \"x", "\",\"", "b", "\":", "12", "}" })
            m.TryFeed(piece).Should().BeTrue(piece);
        m.IsComplete.Should().BeTrue();
        Prefix(g, "{\"c").Should().BeFalse("not a declared property");
        Prefix(g, "{\"a\":\"x\"}").Should().BeFalse("b is required");
        Prefix(g, "{\"b\":1.5").Should().BeFalse("b is an integer");
    }

    [Fact]
    public void Numbers_minus_zero_exponents_and_bounds()
    {
        var any = JsonGrammar.AnyValue();
        foreach (var ok in new[] { "-0", "0", "-0.0", "1e5", "1E-5", "2.5e+3", "123" })
            Accepts(any, ok).Should().BeTrue(ok);
        foreach (var bad in new[] { "-", "00", "-01", "1e", "1e+", "1.e3", "0x1" })
            Accepts(any, bad).Should().BeFalse(bad);

        var bounded = JsonGrammar.FromSchema("""{"type":"number","minimum":-1.5,"exclusiveMaximum":100}""");
        foreach (var ok in new[] { "-1.5", "-1", "-0", "0", "99.999", "42" })
            Accepts(bounded, ok).Should().BeTrue(ok);
        foreach (var bad in new[] { "-1.6", "-2", "100", "100.0", "1000", "1e1" })
            Accepts(bounded, bad).Should().BeFalse(bad);
        Prefix(bounded, "10").Should().BeTrue("10 or 10.5 are in range");
        Prefix(bounded, "100").Should().BeFalse("every completion of 100 is ≥ 100");

        var integer = JsonGrammar.FromSchema("""{"type":"integer","minimum":10,"maximum":20}""");
        Accepts(integer, "15").Should().BeTrue();
        Accepts(integer, "1").Should().BeFalse();
        Prefix(integer, "1").Should().BeTrue("1 can become 10..19");
        Prefix(integer, "3").Should().BeFalse("no integer in [10, 20] starts with 3");
        Prefix(integer, "15.").Should().BeFalse();

        var exclusive = JsonGrammar.FromSchema("""{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":3}""");
        Accepts(exclusive, "0").Should().BeFalse();
        Accepts(exclusive, "1").Should().BeTrue();
        Accepts(exclusive, "3").Should().BeFalse();
    }

    [Fact]
    public void Strings_enum_const_and_lengths()
    {
        var g = JsonGrammar.FromSchema("""
            {"type":"object","properties":{
              "u":{"enum":["celsius","fahrenheit"]},
              "c":{"const":"x"},
              "s":{"type":"string","minLength":2,"maxLength":3},
              "n":{"type":["string","null"]}
            },"required":["u","c","s","n"],"additionalProperties":false}
            """);
        Accepts(g, "{\"u\":\"celsius\",\"c\":\"x\",\"s\":\"ab\",\"n\":null}").Should().BeTrue();
        Accepts(g, "{\"n\":\"t\",\"s\":\"é\\u00e9\\n\",\"c\":\"x\",\"u\":\"fahrenheit\"}").Should().BeTrue("escapes count as one character");
        Prefix(g, "{\"u\":\"kelvin").Should().BeFalse();
        Prefix(g, "{\"s\":\"a\"").Should().BeFalse("minLength 2");
        Prefix(g, "{\"s\":\"abcd").Should().BeFalse("maxLength 3");
        Prefix(g, "{\"c\":\"y").Should().BeFalse();
    }

    [Fact]
    public void Arrays_items_and_counts()
    {
        var g = JsonGrammar.FromSchema("""{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}""");
        Accepts(g, "[true]").Should().BeTrue();
        Accepts(g, "[true, false]").Should().BeTrue();
        Accepts(g, "[]").Should().BeFalse();
        Prefix(g, "[true,false,").Should().BeFalse();
        Prefix(g, "[1").Should().BeFalse();
    }

    [Fact]
    public void AnyOf_refs_and_recursion()
    {
        var g = JsonGrammar.FromSchema("""
            {"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],"additionalProperties":false}},
             "$ref":"#/$defs/node"}
            """);
        Accepts(g, "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}").Should().BeTrue();
        Accepts(g, "{\"v\":1,\"next\":{\"v\":2}}").Should().BeFalse();

        var oneOf = JsonGrammar.FromSchema("""{"oneOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false},{"type":"object","properties":{"b":{"type":"number"}},"required":["b"],"additionalProperties":false}]}""");
        Accepts(oneOf, "{\"a\":\"x\"}").Should().BeTrue();
        Accepts(oneOf, "{\"b\":2}").Should().BeTrue();
        Prefix(oneOf, "{\"a\":2").Should().BeFalse();
        oneOf.UnsupportedKeywords.Should().ContainSingle(u => u.Contains("oneOf"));
    }

    [Fact]
    public void Unsupported_keywords_are_listed_once()
    {
        var g = JsonGrammar.FromSchema("""{"type":"object","properties":{"a":{"type":"string","pattern":"^x","format":"date-time","description":"ignored"},"b":{"type":"string","pattern":"^y"}},"minProperties":1}""");
        g.UnsupportedKeywords.Should().BeEquivalentTo(new[]
        {
            "#: 'minProperties' is not supported and is not enforced",
            "#/properties/a: 'pattern' is not supported and is not enforced",
            "#/properties/a: 'format' is not enforced (any string of the allowed length is accepted)",
            "#/properties/b: 'pattern' is not supported and is not enforced",
        });
    }

    [Theory]
    [InlineData("""{"type":"string","minLength":3,"maxLength":2}""", "minLength 3 > maxLength 2")]
    [InlineData("""{"type":"integer","minimum":5,"maximum":4}""", "no integer")]
    [InlineData("""{"type":"object","required":["a"],"additionalProperties":false}""", "'a' is required")]
    [InlineData("""{"$ref":"http://example.com/s.json"}""", "only local references")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "does not resolve")]
    [InlineData("""{"type":"wat"}""", "unknown type 'wat'")]
    public void Bad_schemas_fail_with_a_clear_message(string schema, string expected)
    {
        var act = () => JsonGrammar.FromSchema(schema);
        act.Should().Throw<InvalidDataException>().WithMessage($"*{expected}*");
    }

    [Fact]
    public void Nesting_is_limited_with_a_clear_error()
    {
        var g = JsonGrammar.AnyValue(new JsonGrammarOptions { MaxDepth = 4 });
        Accepts(g, "[[[[1]]]]").Should().BeTrue();
        var m = g.CreateByteMatcher();
        m.TryFeed("[[[[").Should().BeTrue();
        m.TryFeed("[").Should().BeFalse();
        m.LastError.Should().Contain("nesting limit");

        string deep = "{\"type\":\"array\",\"items\":" + string.Concat(Enumerable.Repeat("{\"type\":\"array\",\"items\":", 4)) + "{\"type\":\"integer\"}" + new string('}', 5);
        var act = () => JsonGrammar.FromSchema(deep, new JsonGrammarOptions { MaxDepth = 4 });
        act.Should().Throw<InvalidDataException>().WithMessage("*nests 5 levels*MaxDepth = 4*");
    }

    [Fact]
    public void Whitespace_is_bounded()
    {
        Accepts(JsonGrammar.AnyObject(new JsonGrammarOptions { MaxWhitespace = 0 }), "{\"a\": 1}").Should().BeFalse();
        Accepts(JsonGrammar.AnyObject(new JsonGrammarOptions { MaxWhitespace = 0 }), "{\"a\":1}").Should().BeTrue();
        Accepts(JsonGrammar.AnyObject(new JsonGrammarOptions { MaxWhitespace = 3 }), "{\n  \"a\": 1\n}").Should().BeTrue();
        Accepts(JsonGrammar.AnyObject(), "{\"a\":1}\n").Should().BeFalse("the output ends with the value");
    }

    [Fact]
    public void Tool_call_envelope_puts_the_name_first_and_uses_its_schema()
    {
        using var weather = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}""");
        var g = JsonGrammar.ToolCall(new[]
        {
            new KeyValuePair<string, System.Text.Json.JsonElement?>("get_weather", weather.RootElement),
            new KeyValuePair<string, System.Text.Json.JsonElement?>("get_time", null),
        });
        Accepts(g, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}").Should().BeTrue();
        Accepts(g, "{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}").Should().BeTrue();
        Prefix(g, "{\"name\": \"get_weather\", \"arguments\": {\"tz\"").Should().BeFalse();
        Prefix(g, "{\"name\": \"other").Should().BeFalse();
        Prefix(g, "{\"arguments\"").Should().BeFalse("name comes first");
    }

    [Fact]
    public void Absent_additionalProperties_with_declared_properties_generates_declared_ones_only_unless_allowed()
    {
        const string schema = """{"type":"object","properties":{"a":{"type":"integer"}}}""";
        Prefix(JsonGrammar.FromSchema(schema), "{\"b").Should().BeFalse();
        Accepts(JsonGrammar.FromSchema(schema), "{\"a\":1}").Should().BeTrue();
        Accepts(JsonGrammar.FromSchema(schema, new JsonGrammarOptions { AllowUndeclaredProperties = true }), "{\"b\":[true],\"a\":1}").Should().BeTrue();
        Accepts(JsonGrammar.FromSchema("""{"type":"object"}"""), "{\"b\":1}").Should().BeTrue("no declared properties: any keys");
    }
}
