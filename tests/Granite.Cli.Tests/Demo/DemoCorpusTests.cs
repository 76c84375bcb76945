using System.Text.Json;
using FluentAssertions;
using Granite.Cli.Demo;
using Granite.Core.Tokenization;
using Granite.Core.Training;
using Granite.Extensions.AI.Chat;
using Microsoft.Extensions.AI;
using Xunit.Abstractions;

namespace Granite.Cli.Tests.Demo;

/// <summary>
/// The demo corpus: SK's real declarations of the agent's plugins, real tool results, deterministic generation, the
/// 20% template/value hold-out, the trained BPE tokenizer (loaded by the normal loader) and the supervision mask.
/// </summary>
public sealed class DemoCorpusTests : IClassFixture<DemoCorpusTests.Shared>
{
    private readonly Shared _s;
    private readonly ITestOutputHelper _out;

    public DemoCorpusTests(Shared shared, ITestOutputHelper output)
    {
        _s = shared;
        _out = output;
    }

    /// <summary>One tool set and one small trained tokenizer for all tests of the class.</summary>
    public sealed class Shared : IDisposable
    {
        public Shared()
        {
            Granite.Core.GraniteRuntime.EnsureLoaded();
            Tools = DemoTools.Create(seed: 3);
            Corpus = new DemoCorpus(Tools);
            Dir = Path.Combine(Path.GetTempPath(), "granite-demo-tok-" + Guid.NewGuid().ToString("N"));
            var added = DemoData.GraniteAddedTokens().Select(t => t["content"]!.GetValue<string>()).ToArray();
            var texts = Enumerable.Range(0, 150).SelectMany(i =>
                DemoData.TextPieces(GraniteChatTemplate.Render(Corpus.Generate(3, DemoSplit.Train, i).Messages(), i == 0 ? Tools.Declarations : null, addGenerationPrompt: false), added)).ToList();
            DemoData.WriteTokenizer(Dir, texts, merges: 400);
            Tokenizer = GraniteTokenizer.FromDirectory(Dir);
        }

        internal DemoTools Tools { get; }
        internal DemoCorpus Corpus { get; }
        public string Dir { get; }
        public GraniteTokenizer Tokenizer { get; }

        public void Dispose()
        {
            Tools.Dispose();
            if (Directory.Exists(Dir)) Directory.Delete(Dir, true);
        }
    }

    [Fact]
    public void Declarations_are_the_agent_plugins_as_Semantic_Kernel_offers_them()
    {
        _s.Tools.Declarations.Select(t => t.Name).Should().Equal(
            "Time_GetUtcTime", "Time_GetTimeInCity", "Units_MilesToKilometres", "Units_CelsiusToFahrenheit", "Units_KilogramsToPounds",
            "Math_Calculate", "Weather_GetWeather", "Files_FindFiles");
        string miles = _s.Tools.DeclarationJson[2];
        _out.WriteLine(miles);
        miles.Should().StartWith("{\"type\": \"function\", \"function\": {\"name\": \"Units_MilesToKilometres\", \"description\": \"Converts a distance in miles to kilometres.\"");
        miles.Should().Contain("\"miles\"").And.Contain("\"number\"").And.Contain("distance in miles");
    }

    [Fact]
    public void Tool_results_come_from_the_real_plugin_code()
    {
        _s.Tools.Invoke("Units_MilesToKilometres", new Dictionary<string, object?> { ["miles"] = JsonDocument.Parse("26.2").RootElement }).Should().Be("42.165 km");
        _s.Tools.Invoke("Units_CelsiusToFahrenheit", new Dictionary<string, object?> { ["celsius"] = -40 }).Should().Be("-40 F");
        _s.Tools.Invoke("Math_Calculate", new Dictionary<string, object?> { ["expression"] = "(12 + 7) * 3 - 4 / 8" }).Should().Be("56.5");
        _s.Tools.Invoke("Weather_GetWeather", new Dictionary<string, object?> { ["city"] = "Paris" }).Should().Be("sunny, 14 C");
        _s.Tools.SetClock(new DateTimeOffset(2025, 3, 4, 23, 30, 0, TimeSpan.Zero));
        _s.Tools.Invoke("Time_GetTimeInCity", new Dictionary<string, object?> { ["city"] = "tokyo" }).Should().Be("08:30 in Tokyo");
        _s.Tools.Invoke("Time_GetUtcTime", new Dictionary<string, object?>()).Should().Be("2025-03-04 23:30 UTC");
        _s.Tools.Invoke("Files_FindFiles", new Dictionary<string, object?> { ["pattern"] = "tokenizer*.json" }).Should().Be("tokenizer.json, tokenizer_config.json");
        _s.Tools.Context.Calls.Should().Contain("Units.MilesToKilometres(26.2)");
    }

    [Fact]
    public void Generation_is_deterministic_and_respects_the_hold_out()
    {
        // The per-conversation seed is the same in every process (a corpus must not depend on HashCode's per-process salt).
        DemoCorpus.StableSeed(1, 0, 0).Should().Be(1475179021);
        var a = _s.Corpus.Generate(5, DemoSplit.Train, 42);
        var b = _s.Corpus.Generate(5, DemoSplit.Train, 42);
        JsonSerializer.Serialize(a).Should().Be(JsonSerializer.Serialize(b));

        var train = Enumerable.Range(0, 400).Select(i => _s.Corpus.Generate(5, DemoSplit.Train, i)).ToList();
        var unseen = Enumerable.Range(0, 200).Select(i => _s.Corpus.Generate(5, DemoSplit.UnseenTemplate, i)).ToList();
        var seen = Enumerable.Range(0, 200).Select(i => _s.Corpus.Generate(5, DemoSplit.SeenTemplateUnseenValue, i)).ToList();
        train.Select(c => c.Kind).Distinct().Should().BeEquivalentTo(new[] { "single", "parallel", "no-tool", "follow-up" });
        static IEnumerable<string> Values(DemoConversation c) =>
            c.Turns.SelectMany(t => t.Calls).SelectMany(call => call.Arguments.Values).Select(v => v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText());
        train.SelectMany(Values).Should().OnlyContain(v => !DemoCorpus.HeldOutValue(v));
        seen.Concat(unseen).SelectMany(Values).Should().OnlyContain(v => DemoCorpus.HeldOutValue(v));
        // Questions of unseen templates never occur in training with their values masked out.
        static string Shape(DemoTurn t) => t.Calls.Count == 0 ? t.User : t.Calls.Aggregate(t.User, (u, c) => c.Arguments.Values.Aggregate(u, (x, v) => x.Replace(v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText(), "{x}")));
        var trainShapes = train.Where(c => c.Kind == "single").Select(c => Shape(c.Turns[0])).ToHashSet();
        var unseenShapes = unseen.Where(c => c.Kind == "single").Select(c => Shape(c.Turns[0])).ToList();
        unseenShapes.Should().NotBeEmpty().And.OnlyContain(s => !trainShapes.Contains(s));
        seen.Where(c => c.Kind == "single").Select(c => Shape(c.Turns[0])).Should().Contain(s => trainShapes.Contains(s));
        foreach (var c in train.Concat(unseen))
            foreach (var t in c.Turns)
                t.Results.All(r => t.Answer.Contains(r, StringComparison.Ordinal)).Should().BeTrue(t.Answer);
    }

    [Fact]
    public void Copy_curriculum_values_are_fresh_never_held_out_and_only_in_the_user_text()
    {
        var convs = Enumerable.Range(0, 400).Select(i => _s.Corpus.CopyConversation(5, 0, i)).ToList();
        JsonSerializer.Serialize(_s.Corpus.CopyConversation(5, 0, 7)).Should().Be(JsonSerializer.Serialize(convs[7]));
        JsonSerializer.Serialize(_s.Corpus.CopyConversation(5, 1, 7)).Should().NotBe(JsonSerializer.Serialize(convs[7]), "each stream draws its own values");
        var values = new List<string>();
        foreach (var c in convs)
        {
            c.Kind.Should().Be("copy");
            c.Turns.Count.Should().BeInRange(1, 3);
            foreach (var t in c.Turns)
            {
                t.Calls.Should().BeEmpty();
                t.Results.Should().NotBeEmpty();
                foreach (var v in t.Results)
                {
                    t.User.Should().Contain(v);
                    t.Answer.Should().Contain(v);
                    DemoCorpus.HeldOutValue(v).Should().BeFalse(v);
                    values.Add(v);
                }
            }
        }
        _out.WriteLine(string.Join(" | ", values.Take(30)));
        values.Distinct().Count().Should().BeGreaterThan(values.Count * 85 / 100, "values are drawn fresh, not from a pool (only short ones repeat)");
        values.Should().Contain(v => v.Length >= 6 && v.All(char.IsAsciiDigit), "long digit strings");
        values.Should().Contain(v => System.Text.RegularExpressions.Regex.IsMatch(v, @"^[0-9]+\.[0-9]{2,3}$"), "decimals");
        values.Should().Contain(v => v.StartsWith('-'), "negative numbers");
        values.Should().Contain(v => char.IsUpper(v[0]) && v.Skip(1).All(char.IsLower), "made-up names");
        values.Should().Contain(v => v.Contains('*'), "glob patterns");

        // Rendered without the tool block: short sequences whose supervised tokens are the answers.
        var ex = DemoData.ToExample(_s.Tokenizer, GraniteChatTemplate.Render(convs[0].Messages(), null, addGenerationPrompt: false));
        ex.Validate();
        ex.Ids.Length.Should().BeLessThan(200);
        _s.Tokenizer.Decode(ex.Ids.Take(ex.PrefixLength)).Should().NotContain("<tools>");
        ex.SupervisedCount.Should().BeGreaterThan(0);
    }

    [Fact]
    public void Tool_argument_numbers_vary_in_length_and_decimals_and_keep_the_split()
    {
        var nums = Enumerable.Range(0, 1500).Select(i => _s.Corpus.Generate(6, DemoSplit.Train, i))
            .SelectMany(c => c.Turns).SelectMany(t => t.Calls)
            .Where(c => c.Name.StartsWith("Units_", StringComparison.Ordinal))
            .Select(c => c.Arguments.Values.Single().GetRawText()).ToList();
        nums.Count.Should().BeGreaterThan(200);
        nums.Distinct().Count().Should().BeGreaterThan(nums.Count * 7 / 10, "numbers are drawn fresh, not from a small pool (only short ones repeat)");
        var intLengths = nums.Select(n => n.TrimStart('-').Split('.')[0].Length).Distinct().ToList();
        intLengths.Should().Contain(new[] { 1, 2, 3, 4 });
        nums.Should().Contain(n => n.Contains('.') && n.Split('.')[1].Length == 2);
        nums.Should().OnlyContain(n => !n.EndsWith('0') || !n.Contains('.'), "decimals are written in their shortest form");
        nums.Should().OnlyContain(n => !DemoCorpus.HeldOutValue(n));

        // City questions: training mixes in made-up places (copied from the question; the real tool does not know
        // them), the evaluation splits ask about held-out table cities only.
        static IEnumerable<(string City, DemoTurn Turn)> Cities(IEnumerable<DemoConversation> cs) => cs.SelectMany(c => c.Turns)
            .Where(t => t.Calls.Count == 1 && t.Calls[0].Arguments.ContainsKey("city")).Select(t => (t.Calls[0].Arguments["city"].GetString()!, t));
        var train = Cities(Enumerable.Range(0, 800).Select(i => _s.Corpus.Generate(6, DemoSplit.Train, i))).ToList();
        var madeUp = train.Where(c => Granite.Demo.DemoCities.Find(c.City) is null).ToList();
        madeUp.Count.Should().BeInRange(train.Count / 6, train.Count / 2);
        madeUp.Should().OnlyContain(c => c.Turn.Results[0] == "unknown city: " + c.City && c.Turn.Answer == "Sorry, unknown city: " + c.City + "." && c.Turn.User.Contains(c.City));
        madeUp.Select(c => c.City).Distinct().Count().Should().BeGreaterThan(madeUp.Count * 9 / 10);
        var eval = Cities(Enumerable.Range(0, 400).Select(i => _s.Corpus.Generate(6, i % 2 == 0 ? DemoSplit.SeenTemplateUnseenValue : DemoSplit.UnseenTemplate, i))).ToList();
        eval.Should().NotBeEmpty().And.OnlyContain(c => Granite.Demo.DemoCities.Find(c.City) != null && DemoCorpus.HeldOutValue(c.City));
    }

    [Fact]
    public void Trained_tokenizer_loads_with_the_Split_then_ByteLevel_form_and_keeps_digits_apart()
    {
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(_s.Dir, "tokenizer.json"))).RootElement;
        var pre = json.GetProperty("pre_tokenizer");
        pre.GetProperty("type").GetString().Should().Be("Sequence");
        pre.GetProperty("pretokenizers")[0].GetProperty("type").GetString().Should().Be("Split");
        pre.GetProperty("pretokenizers")[1].GetProperty("use_regex").GetBoolean().Should().BeFalse();
        json.GetProperty("added_tokens").GetArrayLength().Should().Be(28);

        var fixture = GraniteTokenizer.FromDirectory(Fixtures.Dir(Fixtures.TinyHDense));
        var t = _s.Tokenizer;
        foreach (var (content, id) in fixture.AddedTokens)
        {
            t.AddedTokens.Should().ContainKey(content);
            t.IsSpecial(t.AddedTokens[content]).Should().Be(fixture.IsSpecial(id), content);
        }
        t.ChatTemplate.Should().Be(GraniteChatTemplate.KnownTemplate);

        const string text = "What is 1234.5 miles in km? {\"city\": \"Paris\"} in Paris, ünïcode 😀";
        var ids = t.Encode(text);
        t.Decode(ids).Should().Be(text);
        for (int id = 0; id < t.VocabularySize; id++)
        {
            if (t.IsSpecial(id) || t.AddedTokens.Values.Contains(id)) continue;
            var bytes = t.TokenBytes(id, skipSpecialTokens: false)!;
            bytes.Count(b => b is >= (byte)'0' and <= (byte)'9').Should().BeLessThanOrEqualTo(1, $"token {id} must not merge digits");
        }
        // A value is the same tokens in the sentence and inside JSON.
        var paris = t.Encode("Paris");
        var sentence = t.Encode("the weather in Paris");
        var inJson = t.Encode("{\"city\": \"Paris\"}");
        sentence.TakeLast(paris.Count).Should().Equal(paris);
        ContainsRun(inJson, paris).Should().BeTrue();
        // User text never yields control tokens.
        t.Encode("<tool_call><|end_of_text|>").Should().NotContain(t.AddedTokens["<tool_call>"]).And.NotContain(t.AddedTokens["<|end_of_text|>"]);
    }

    private static bool ContainsRun(IReadOnlyList<int> hay, IReadOnlyList<int> needle)
    {
        for (int i = 0; i + needle.Count <= hay.Count; i++)
            if (hay.Skip(i).Take(needle.Count).SequenceEqual(needle)) return true;
        return false;
    }

    [Fact]
    public void Supervision_covers_exactly_the_assistant_outputs_and_the_prefix_is_shared()
    {
        var t = _s.Tokenizer;
        var conv = Enumerable.Range(0, 50).Select(i => _s.Corpus.Generate(9, DemoSplit.Train, i)).First(c => c.Kind == "follow-up" && c.Turns.All(x => x.Calls.Count > 0));
        var prompt = GraniteChatTemplate.Render(conv.Messages(), _s.Tools.Declarations, addGenerationPrompt: false);
        var ex = DemoData.ToExample(t, prompt);
        ex.Validate();
        var other = DemoData.ToExample(t, GraniteChatTemplate.Render(_s.Corpus.Generate(9, DemoSplit.Train, 999).Messages(), _s.Tools.Declarations, addGenerationPrompt: false));
        other.Ids.Take(other.PrefixLength).Should().Equal(ex.Ids.Take(ex.PrefixLength));
        t.Decode(ex.Ids.Take(ex.PrefixLength)).Should().EndWith("<|end_of_text|>").And.Contain("Files_FindFiles");

        // Supervised runs, decoded, are the assistant messages: calls then answers, each closed by end-of-text.
        var runs = new List<string>();
        for (int i = 0; i < ex.Ids.Length; i++)
        {
            if (!ex.Supervised[i]) continue;
            int j = i;
            while (j < ex.Ids.Length && ex.Supervised[j]) j++;
            runs.Add(t.Decode(ex.Ids[i..j]));
            i = j;
        }
        string Call(ExpectedCall c) => "<tool_call>\n{\"name\": \"" + c.Name + "\", \"arguments\": " + PythonJson.SerializeValue(c.ArgumentObjects()) + "}\n</tool_call>";
        var expected = conv.Turns.SelectMany(turn => new[] { string.Join("\n", turn.Calls.Select(Call)) + "<|end_of_text|>", turn.Answer + "<|end_of_text|>" });
        runs.Should().Equal(expected);
    }

    [Fact]
    public void A_few_seconds_of_training_on_a_corpus_slice_lowers_the_loss()
    {
        var config = DemoData.ModelConfig(_s.Tokenizer, hidden: 64, layers: "mma");
        using var model = TrainableGranite.Create(config, seed: 2);
        using var trainer = new Trainer(model, new TrainerOptions { PeakLearningRate = 4e-3, WarmupSteps = 3, TotalSteps = 12, FinalLearningRate = 1e-3 });
        TrainingExample Ex(DemoSplit split, int i) => DemoData.ToExample(_s.Tokenizer, GraniteChatTemplate.Render(_s.Corpus.Generate(2, split, i).Messages(), _s.Tools.Declarations, addGenerationPrompt: false));
        var held = Enumerable.Range(0, 4).Select(i => Ex(DemoSplit.SeenTemplateUnseenValue, i)).ToList();
        double before = Trainer.EvaluateLoss(model, held);
        for (int s = 0; s < 12; s++)
        {
            var r = trainer.TrainStep(Enumerable.Range(0, 2).Select(k => Ex(DemoSplit.Train, s * 2 + k)).ToList());
            if (s % 4 == 0) _out.WriteLine($"step {r.Step}: loss {r.Loss:F3}, {r.ComputedTokens} tokens in {r.Elapsed.TotalMilliseconds:F0} ms");
        }
        double after = Trainer.EvaluateLoss(model, held);
        _out.WriteLine($"held-out loss {before:F3} → {after:F3}");
        after.Should().BeLessThan(before - 1.0, "12 AdamW steps on the corpus must start learning the assistant format");
    }
}
