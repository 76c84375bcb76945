using System.Text;
using System.Text.Json;
using Granite.Core.Tokenization;
using Granite.Core.Weights.Gguf;
using Xunit.Abstractions;

namespace Granite.Gguf.Tests;

/// <summary>
/// llama.cpp (LLamaSharp 0.30 native CPU build) loads every fixture's <c>export-gguf</c> output and reproduces the
/// fixture's golden logits within the golden tolerance: a second, independent implementation of the model, the GGUF
/// layout and the tokenizer metadata. F32 exports (llama.cpp computes in F32 from F32 weights, as the goldens do).
/// </summary>
[Collection(LlamaCppCollection.Name)]
public class LlamaCppCrossCheckTests
{
    private readonly ExportedFixtures _exports;
    private readonly ITestOutputHelper _out;

    public LlamaCppCrossCheckTests(ExportedFixtures exports, ITestOutputHelper output)
    {
        _exports = exports;
        _out = output;
    }

    public static IEnumerable<object[]> FixtureData => ExportedFixtures.Fixtures.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void LogitsOfEveryGoldenCaseMatch(string fixture)
    {
        var g = Golden.Load(fixture);
        using var llama = new LlamaCpp(_exports.Path(fixture, GgmlType.F32));
        double worst = 0;
        foreach (var c in g.Cases)
        {
            llama.Reset();
            var rows = llama.Decode(c.InputIds, 0, allPositions: true);
            rows.Should().HaveCount(c.InputIds.Length);
            rows[^1].Should().HaveCount(c.LastLogits.Length, "llama.cpp's vocabulary is the config's vocab_size");
            worst = Math.Max(worst, Compare.Close(rows[^1], c.LastLogits, g.LogitsAtol, g.LogitsRtol).MaxAbs);
            Compare.ShouldBeClose(rows[^1], c.LastLogits, g.LogitsAtol, g.LogitsRtol, $"llama.cpp {fixture}/{c.Name} last logits");
            if (c.AllLogits is not null)
                for (int t = 0; t < rows.Length; t++)
                {
                    worst = Math.Max(worst, Compare.Close(rows[t], c.AllLogits[t], g.LogitsAtol, g.LogitsRtol).MaxAbs);
                    Compare.ShouldBeClose(rows[t], c.AllLogits[t], g.LogitsAtol, g.LogitsRtol, $"llama.cpp {fixture}/{c.Name} position {t}");
                }
            for (int t = 0; t < rows.Length; t++)
                if (!c.AmbiguousPositions.Contains(t))
                    Compare.Argmax(rows[t]).Should().Be(c.ArgmaxAll[t], $"llama.cpp argmax at position {t} of {fixture}/{c.Name}");
        }
        _out.WriteLine($"{fixture}: llama.cpp vs golden max|Δlogit| = {worst:E3} (atol {g.LogitsAtol}, rtol {g.LogitsRtol})");
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void GreedyContinuationsMatch(string fixture)
    {
        var g = Golden.Load(fixture);
        using var llama = new LlamaCpp(_exports.Path(fixture, GgmlType.F32));
        foreach (var c in g.Cases)
        {
            llama.Reset();
            var generated = new List<int> { Compare.Argmax(llama.Decode(c.InputIds, 0, allPositions: false)[0]) };
            while (generated.Count < c.GreedyNewTokens.Length)
                generated.Add(Compare.Argmax(llama.Decode(new[] { generated[^1] }, c.InputIds.Length + generated.Count - 1, allPositions: false)[0]));
            generated.Should().Equal(c.GreedyNewTokens, $"llama.cpp greedy continuation of {fixture}/{c.Name}");
        }
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void SessionPrefillThenSingleStepsMatch(string fixture)
    {
        var g = Golden.Load(fixture);
        var s = g.Session;
        using var llama = new LlamaCpp(_exports.Path(fixture, GgmlType.F32));
        var first = llama.Decode(s.PrefixIds, 0, allPositions: false)[0];
        Compare.ShouldBeClose(first, s.StepLogits[0], g.LogitsAtol, g.LogitsRtol, $"llama.cpp {fixture} session step 0");
        for (int j = 0; j < s.ExtraIds.Length; j++)
        {
            var row = llama.Decode(new[] { s.ExtraIds[j] }, s.PrefixIds.Length + j, allPositions: false)[0];
            Compare.ShouldBeClose(row, s.StepLogits[j + 1], g.LogitsAtol, g.LogitsRtol, $"llama.cpp {fixture} session step {j + 1}");
            Compare.Argmax(row).Should().Be(s.StepArgmax[j + 1]);
        }
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void TokenizerMetadataTokenizesLikeTokenizerJson(string fixture)
    {
        var dir = Golden.FixtureDir(fixture);
        var ours = GraniteTokenizer.FromDirectory(dir);
        using var llama = new LlamaCpp(_exports.Path(fixture, null));
        string[] texts =
        {
            "Hello world! The quick brown fox jumps over the lazy dog.",
            "  leading spaces,\ttabs\nand\n\nnewlines   ",
            "numbers 1 12 123 1234 12345 3.14159 and symbols #$%&*()[]{}",
            "I'm sure they'll say it's what we've done, isn't it?",
            "unicode: café naïve Ünïcödé — “quotes” 日本語 中文 😀🚀",
            "<|start_of_role|>user<|end_of_role|>What is 2+2?<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>",
            "<tool_call>{\"name\": \"get_time\"}</tool_call><think>hmm</think>",
        };
        foreach (var text in texts)
        {
            var expected = ours.Encode(text, allowSpecialTokens: true);
            var actual = llama.Weights.Tokenize(text, false, true, Encoding.UTF8).Select(t => (int)t).ToArray();
            actual.Should().Equal(expected, $"llama.cpp's tokenization of {JsonSerializer.Serialize(text)} from the GGUF metadata of {fixture}");
        }
    }

    [Theory]
    [MemberData(nameof(FixtureData))]
    public void LlamaCppReadsTheMetadata(string fixture)
    {
        var dir = Golden.FixtureDir(fixture);
        var cfg = Granite.Core.Configuration.GraniteConfig.Load(dir);
        using var llama = new LlamaCpp(_exports.Path(fixture, null));
        var md = llama.Weights.Metadata;
        md["general.architecture"].Should().Be(GraniteGgufLayout.Architecture(cfg));
        md["general.architecture"].Should().Be(fixture == "tiny-dense" ? "granite" : "granitehybrid");
        md["tokenizer.ggml.model"].Should().Be("gpt2");
        md["tokenizer.ggml.pre"].Should().Be("gpt-2");
        using var tc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer_config.json")));
        md["tokenizer.chat_template"].Should().Be(tc.RootElement.GetProperty("chat_template").GetString());
        llama.Weights.Vocab.Count.Should().Be(cfg.VocabSize);
        llama.Weights.EmbeddingSize.Should().Be(cfg.HiddenSize);
        llama.Weights.Vocab.EOS.Should().NotBeNull();
        ((int)llama.Weights.Vocab.EOS!.Value).Should().Be(cfg.EosTokenIds[0]);
    }
}
