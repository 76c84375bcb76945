using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Core.Constraints;
using Granite.Core.Generation;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;
using Json.Schema;

namespace Granite.Core.Tests.Constraints;

/// <summary>Engines on two random-weights fixtures (a hybrid MoE and a dense transformer), shared by the tests.</summary>
public sealed class ConstraintEngines : IDisposable
{
    public ConstraintEngines()
    {
        GraniteRuntime.EnsureLoaded();
        var options = new GraniteEngineOptions { Model = new GraniteModelOptions { WeightDtype = WeightDtypePolicy.Float32 }, SessionCacheBytes = 0 };
        Engines = new[] { "tiny-h-moe", "tiny-dense" }
            .Select(f => GraniteEngine.Load(Fixtures.Dir(f), options)).ToArray();
    }

    public GraniteEngine[] Engines { get; }

    public void Dispose()
    {
        foreach (var e in Engines) e.Dispose();
    }
}

public class ConstrainedGenerationTests : IClassFixture<ConstraintEngines>
{
    private readonly ConstraintEngines _f;

    public ConstrainedGenerationTests(ConstraintEngines f) => _f = f;

    private static int[] Prompt(GraniteEngine e, string text) =>
        e.Tokenizer.Encode(new[] { new PromptSegment("<|start_of_role|>user<|end_of_role|>" + text + "<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>", true) }).ToArray();

    private static async Task<(List<int> Ids, GenerationFinishReason Finish)> Run(GraniteEngine e, GenerationRequest request)
    {
        var ids = new List<int>();
        GenerationFinishReason finish = default;
        await foreach (var u in e.GenerateAsync(request))
        {
            if (u.TokenId is { } id) ids.Add(id);
            if (u.FinishReason is { } r) finish = r;
        }
        return (ids, finish);
    }

    private static SamplingOptions RandomSampling(Random rng, int seed) => new()
    {
        Temperature = new[] { 0f, 0.7f, 1f, 1.5f }[rng.Next(4)],
        TopK = rng.Next(3) == 0 ? 20 : null,
        TopP = rng.Next(3) == 0 ? 0.9f : null,
        RepetitionPenalty = rng.Next(3) == 0 ? 1.3f : null,
        PresencePenalty = rng.Next(4) == 0 ? 0.5f : null,
        Seed = seed,
        MaxNewTokens = 600,
    };

    [Fact]
    public async Task Random_schemas_and_seeds_always_give_output_that_parses_and_validates()
    {
        var rng = new Random(20261202);
        int cases = 0;
        for (int i = 0; i < 24; i++)
        {
            var schemaNode = RandomSchemas.Generate(rng);
            string schemaText = schemaNode.ToJsonString();
            var grammar = JsonGrammar.FromSchema(schemaText);
            var validator = JsonSchema.FromText(schemaText);
            foreach (var engine in _f.Engines)
            {
                var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
                var sampling = RandomSampling(rng, rng.Next());
                var (ids, finish) = await Run(engine, new GenerationRequest
                {
                    PromptTokens = Prompt(engine, "Answer in JSON."),
                    Sampling = sampling,
                    Constraint = TokenConstraint.Json(grammar, vocab),
                    UseSessionCache = false,
                });
                string context = $"schema {schemaText}, sampling {sampling}";
                finish.Should().Be(GenerationFinishReason.Stop, context);
                engine.DefaultStopTokenIds.Should().Contain(ids[^1], context);
                string text = engine.Tokenizer.Decode(ids.Take(ids.Count - 1));
                JsonNode? parsed = null;
                var parse = () => parsed = JsonNode.Parse(text);
                parse.Should().NotThrow($"{context}: output {text}");
                var result = validator.Evaluate(parsed, new EvaluationOptions { OutputFormat = OutputFormat.List });
                result.IsValid.Should().BeTrue($"{context}: output {text} errors {JsonSerializer.Serialize(result.Details.Where(d => d.Errors is not null).Select(d => d.Errors))}");
                cases++;
            }
        }
        cases.Should().Be(48);
    }

    [Fact]
    public async Task Json_mode_gives_an_object_and_stops_at_its_end()
    {
        foreach (var engine in _f.Engines)
        {
            var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
            for (int seed = 0; seed < 4; seed++)
            {
                var (ids, finish) = await Run(engine, new GenerationRequest
                {
                    PromptTokens = Prompt(engine, "JSON please"),
                    Sampling = new SamplingOptions { Temperature = 0.8f, Seed = seed, MaxNewTokens = 1500 },
                    Constraint = TokenConstraint.Json(JsonGrammar.AnyObject(new JsonGrammarOptions { MaxDepth = 3 }), vocab),
                    UseSessionCache = false,
                });
                string text = engine.Tokenizer.Decode(ids, skipSpecialTokens: true);
                if (finish == GenerationFinishReason.Stop)
                    JsonNode.Parse(text).Should().BeOfType<JsonObject>(text);
                else
                    JsonGrammar.AnyObject(new JsonGrammarOptions { MaxDepth = 3 }).CreateByteMatcher().TryFeed(text).Should().BeTrue("a cut output is still a valid prefix: " + text);
            }
        }
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"city":{"type":"string","maxLength":12},"temp":{"type":"number","minimum":-40,"maximum":60},"tags":{"type":"array","items":{"enum":["sun","rain"]},"maxItems":3},"note":{"type":["string","null"]}},"required":["city","temp"],"additionalProperties":false}""", 5)]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","minLength":3,"maxLength":70},"t":{"type":"string"}},"required":["s","t"],"additionalProperties":false}""", 6)]
    [InlineData(null, 7)]
    public void Mask_equals_the_brute_force_set_at_every_step_of_a_constrained_output(string? schema, int seed)
    {
        var engine = _f.Engines[0];
        var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
        var grammar = schema is null ? JsonGrammar.AnyObject(new JsonGrammarOptions { MaxDepth = 3 }) : JsonGrammar.FromSchema(schema);
        var matcher = TokenConstraint.Json(grammar, vocab).CreateMatcher(engine.DefaultStopTokenIds);
        var mask = new TokenMask(vocab.Size);
        var rng = new Random(seed);
        int steps = 0;
        while (!matcher.IsFinished && steps < 400)
        {
            matcher.FillMask(mask).Should().BeTrue();
            var expected = Enumerable.Range(0, vocab.Size).Where(matcher.Allows).ToArray();
            mask.AllowedIds().Should().Equal(expected, $"step {steps}");
            // Mostly plain text (long strings exercise the fast paths), sometimes anything allowed.
            var text = expected.Where(vocab.IsByteToken).Where(id => steps > 20 || vocab.BytesOf(id).IndexOfAny("}]"u8) < 0).ToArray();
            if (text.Length == 0) text = expected;
            var plain = text.Where(id => vocab.IsByteToken(id) && TokenVocabulary.PlainChars(vocab.BytesOf(id)) > 0).ToArray();
            int pick = plain.Length > 0 && rng.Next(10) < 7 ? plain[rng.Next(plain.Length)] : text[rng.Next(text.Length)];
            if (steps > 250 && expected.Any(id => !vocab.IsByteToken(id))) pick = expected.First(id => !vocab.IsByteToken(id)); // end when allowed
            matcher.Accept(pick);
            steps++;
        }
        steps.Should().BeGreaterThan(10);
    }

    [Fact]
    public async Task Required_tool_calls_are_well_formed_and_use_the_declared_schema()
    {
        using var doc = JsonDocument.Parse("""{"type":"object","properties":{"city":{"type":"string","maxLength":10},"days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","days"],"additionalProperties":false}""");
        var envelope = JsonGrammar.ToolCall(new[]
        {
            new KeyValuePair<string, JsonElement?>("get_weather", doc.RootElement),
            new KeyValuePair<string, JsonElement?>("get_time", null),
        });
        var validator = JsonSchema.FromText(doc.RootElement.GetRawText());
        foreach (var engine in _f.Engines)
        {
            var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
            int open = engine.Tokenizer.TokenToId("<tool_call>")!.Value, close = engine.Tokenizer.TokenToId("</tool_call>")!.Value;
            for (int seed = 0; seed < 6; seed++)
            {
                var (ids, finish) = await Run(engine, new GenerationRequest
                {
                    PromptTokens = Prompt(engine, "weather?"),
                    Sampling = new SamplingOptions { Temperature = 1f, Seed = seed, MaxNewTokens = 600 },
                    Constraint = TokenConstraint.ToolCalls(envelope, vocab, open, close, required: true, allowMultiple: false),
                    UseSessionCache = false,
                });
                finish.Should().Be(GenerationFinishReason.Stop);
                ids[0].Should().Be(open);
                ids[^2].Should().Be(close);
                string body = engine.Tokenizer.Decode(ids.Skip(1).Take(ids.Count - 3));
                body.Should().StartWith("\n").And.EndWith("\n");
                var call = JsonNode.Parse(body)!.AsObject();
                string name = call["name"]!.GetValue<string>();
                name.Should().BeOneOf("get_weather", "get_time");
                if (name == "get_weather") validator.Evaluate(call["arguments"]).IsValid.Should().BeTrue(body);
                else call["arguments"].Should().BeOfType<JsonObject>();
            }
        }
    }

    [Fact]
    public async Task Auto_mode_is_free_until_the_model_opens_a_call_then_constrains_its_body()
    {
        var engine = _f.Engines[0];
        var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
        int open = engine.Tokenizer.TokenToId("<tool_call>")!.Value, close = engine.Tokenizer.TokenToId("</tool_call>")!.Value;
        var envelope = JsonGrammar.ToolCall(new[] { new KeyValuePair<string, JsonElement?>("ping", null) });
        var constraint = TokenConstraint.ToolCalls(envelope, vocab, open, close, required: false);

        var matcher = constraint.CreateMatcher(engine.DefaultStopTokenIds);
        matcher.IsFree.Should().BeTrue();
        matcher.FillMask(new TokenMask(vocab.Size)).Should().BeFalse("free text is not masked");

        for (int seed = 0; seed < 4; seed++)
        {
            // The model "opens" a call (forced here, as a model would by itself); the body must then be well formed.
            var (ids, _) = await Run(engine, new GenerationRequest
            {
                PromptTokens = Prompt(engine, "ping"),
                Sampling = new SamplingOptions { Temperature = 1f, Seed = seed, MaxNewTokens = 400 },
                ForcedOutputTokens = new[] { open },
                Constraint = constraint,
                UseSessionCache = false,
            });
            int closeAt = ids.IndexOf(close);
            closeAt.Should().BePositive("the body is constrained up to </tool_call>");
            var call = JsonNode.Parse(engine.Tokenizer.Decode(ids.Skip(1).Take(closeAt - 1)))!.AsObject();
            call["name"]!.GetValue<string>().Should().Be("ping");
        }
    }

    [Fact]
    public async Task Forced_tokens_outside_the_constraint_are_rejected_before_generation()
    {
        var engine = _f.Engines[0];
        var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
        var request = new GenerationRequest
        {
            PromptTokens = Prompt(engine, "x"),
            ForcedOutputTokens = engine.Tokenizer.Encode("Sure"),
            Constraint = TokenConstraint.Json(JsonGrammar.AnyObject(), vocab),
        };
        var act = async () => await Run(engine, request);
        await act.Should().ThrowAsync<ArgumentException>().WithMessage("*ForcedOutputTokens[0]*not allowed*");
    }

    [Fact]
    public void Vocabulary_excludes_added_tokens_and_classifies_plain_text()
    {
        var engine = _f.Engines[0];
        var vocab = TokenVocabulary.For(engine.Tokenizer, engine.Config.VocabSize);
        foreach (int id in engine.Tokenizer.AddedTokens.Values) vocab.IsByteToken(id).Should().BeFalse();
        vocab.Size.Should().Be(engine.Config.VocabSize);
        TokenVocabulary.PlainChars("ab é"u8).Should().Be(4);
        TokenVocabulary.PlainChars("a\""u8).Should().Be(-1);
        TokenVocabulary.PlainChars(new byte[] { 0xE6, 0x97 }).Should().Be(-1, "incomplete character");
        vocab.PlainCount.Should().BeGreaterThan(0).And.BeLessThan(vocab.ByteTokenCount);
    }
}

public class ConstraintRandomWalkTests
{
    /// <summary>Uniformly random allowed tokens (no model) over many random schemas: never a dead end, always a valid value.</summary>
    [Fact]
    public void Random_token_walks_never_dead_end_and_always_validate()
    {
        var tok = GraniteTokenizer.FromDirectory(Fixtures.Dir(Fixtures.TinyHMoe));
        var vocab = TokenVocabulary.For(tok, 544);
        int eos = tok.EosTokenId!.Value;
        var rng = new Random(7);
        var mask = new TokenMask(vocab.Size);
        for (int i = 0; i < 300; i++)
        {
            string schemaText = RandomSchemas.Generate(rng).ToJsonString();
            var grammar = JsonGrammar.FromSchema(schemaText);
            var validator = JsonSchema.FromText(schemaText);
            var matcher = TokenConstraint.Json(grammar, vocab).CreateMatcher(new[] { eos });
            var ids = new List<int>();
            while (!matcher.IsFinished && ids.Count < 3000)
            {
                string sofar = tok.Decode(ids);
                var fill = () => matcher.FillMask(mask);
                fill.Should().NotThrow($"schema {schemaText} after {sofar}");
                var allowed = mask.AllowedIds().ToArray();
                // Prefer ending soon so walks stay short: pick the stop token when allowed, else a random allowed token.
                // or, half of the time, a one-byte token that closes something (a string, object or array).
                var closing = allowed.Where(id => vocab.BytesOf(id) is { Length: 1 } b && (b[0] == '"' || b[0] == '}' || b[0] == ']')).ToArray();
                int next = allowed.Contains(eos) ? eos
                    : closing.Length > 0 && rng.Next(2) == 0 ? closing[rng.Next(closing.Length)]
                    : allowed[rng.Next(allowed.Length)];
                matcher.Accept(next);
                ids.Add(next);
            }
            matcher.IsFinished.Should().BeTrue($"{schemaText}: {tok.Decode(ids)}");
            string text = tok.Decode(ids.Take(ids.Count - 1));
            JsonNode? parsed = null;
            var parse = () => parsed = JsonNode.Parse(text);
            parse.Should().NotThrow($"schema {schemaText}: {text}");
            validator.Evaluate(parsed, new EvaluationOptions { OutputFormat = OutputFormat.List }).IsValid.Should().BeTrue($"schema {schemaText}: {text}");
        }
    }
}
