using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Granite.Core.Tokenization;

namespace Granite.Core.Tests.Tokenization;

/// <summary>Hostile tokenizer files (issue #14): ids bounded and consistent with the model, regexes time out, every
/// violation an <see cref="InvalidDataException"/> naming the file and field.</summary>
public sealed class TokenizerHostileFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("granite-tok-hostile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string FixtureDir => TokenizerGolden.Dir("tiny-h-moe");

    private static JsonObject Tokenizer() => JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDir, "tokenizer.json")))!.AsObject();

    /// <summary>A model folder with the fixture's files and the given tokenizer.json.</summary>
    private string Folder(JsonNode tokenizer)
    {
        foreach (var f in Directory.GetFiles(FixtureDir)) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)), overwrite: true);
        File.WriteAllText(Path.Combine(_dir, "tokenizer.json"), tokenizer.ToJsonString());
        return _dir;
    }

    [Fact]
    public void VocabIdOfIntMax_IsRejected_NotAnOverflow()
    {
        var json = Tokenizer();
        json["model"]!["vocab"]!["Ġzzz"] = int.MaxValue;
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, json.ToJsonString());
        var act = () => GraniteTokenizer.FromFiles(path, null);
        act.Should().Throw<InvalidDataException>().WithMessage($"*{path}*'model.vocab' entry 'Ġzzz' has id 2147483647; expected an integer in 0..*");
    }

    [Fact]
    public void AddedTokenIntMax_IsRejected()
    {
        var json = Tokenizer();
        json["added_tokens"]!.AsArray().Add(new JsonObject { ["id"] = int.MaxValue, ["content"] = "<|evil|>", ["special"] = true });
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, json.ToJsonString());
        var act = () => GraniteTokenizer.FromFiles(path, null);
        act.Should().Throw<InvalidDataException>().WithMessage("*'added_tokens[*]' needs an integer 'id' in 0..*");
    }

    [Fact]
    public void AddedTokenBeyondTheModelVocabulary_IsRejected_NamingBothFiles()
    {
        var json = Tokenizer();
        var added = json["added_tokens"]!.AsArray();
        added.Add(new JsonObject { ["id"] = 544, ["content"] = "<|beyond|>", ["special"] = true });
        string dir = Folder(json);
        var act = () => GraniteTokenizer.FromDirectory(dir);
        act.Should().Throw<InvalidDataException>()
            .WithMessage($"*tokenizer.json*'added_tokens[{added.Count - 1}]' '<|beyond|>' has id 544, outside the model's vocabulary (vocab_size 544 in *config.json)*");
    }

    [Fact]
    public void VocabEntryBeyondTheModelVocabulary_IsRejected()
    {
        var json = Tokenizer();
        json["model"]!["vocab"]!["Ġzzz"] = 600;
        var act = () => GraniteTokenizer.FromDirectory(Folder(json));
        act.Should().Throw<InvalidDataException>().WithMessage("*'model.vocab' entry 'Ġzzz' has id 600, outside the model's vocabulary (vocab_size 544*");
    }

    [Fact]
    public void CatastrophicSplitRegex_TripsTheTimeout_WithAClearError()
    {
        var json = Tokenizer();
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "(a+)+$" }, ["behavior"] = "Isolated", ["invert"] = false },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = false }),
        };
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, json.ToJsonString());
        var tokenizer = GraniteTokenizer.FromFiles(path, null);
        tokenizer.Encode("aab").Should().NotBeEmpty(); // the pattern works on ordinary text
        var sw = Stopwatch.StartNew();
        var act = () => tokenizer.Encode(new string('a', 40) + "!");
        act.Should().Throw<InvalidDataException>()
            .WithMessage($"Invalid tokenizer file '{path}': 'pre_tokenizer.pretokenizers[0]': the split regex took longer than 1 s on one match*(a+)+$*");
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(30), "the match was cut off, not run to completion (2^40 steps)");
    }

    [Theory]
    [InlineData("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\\ud800\": 0}}}", "unpaired surrogate")]
    [InlineData("{\"model\": \u001b[2J", "not valid JSON: malformed at line 1")]
    public void UndecodableOrBrokenJson_IsAnInvalidDataException_NamingTheFile(string text, string part)
    {
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, text);
        var act = () => GraniteTokenizer.FromFiles(path, null);
        var ex = act.Should().Throw<InvalidDataException>().Which;
        ex.Message.Should().Contain(path).And.Contain(part).And.NotContain("\u001b");
    }

    [Fact]
    public void InvalidUtf8_NamesTheFile_AndTheOffset()
    {
        string path = Path.Combine(_dir, "tokenizer.json");
        var bytes = File.ReadAllBytes(Path.Combine(FixtureDir, "tokenizer.json")).ToList();
        bytes.InsertRange(40, new byte[] { 0xFF, 0xFE });
        File.WriteAllBytes(path, bytes.ToArray());
        var act = () => GraniteTokenizer.FromFiles(path, null);
        act.Should().Throw<InvalidDataException>().WithMessage($"Invalid tokenizer file '{path}': not valid UTF-8 (bad byte sequence at offset 40).");
    }

    [Fact]
    public void TokenizerConfig_WithLoneSurrogate_OrControlBytes_IsAClearError()
    {
        string path = Path.Combine(_dir, "tokenizer_config.json");
        File.WriteAllText(path, "{\"eos_token\": \"\\udc00\"}");
        var act = () => GraniteTokenizer.FromFiles(Path.Combine(FixtureDir, "tokenizer.json"), path);
        act.Should().Throw<InvalidDataException>().WithMessage($"Invalid configuration file '{path}': *unpaired surrogate*");
        File.WriteAllText(path, "{\"eos_token\": fal\u001b[2Jse, " + new string('x', 10_000) + "}", Encoding.UTF8);
        var ex = act.Should().Throw<InvalidDataException>().Which;
        ex.Message.Should().StartWith($"Invalid configuration file '{path}': not valid JSON: malformed at line 1").And.NotContain("\u001b");
        ex.Message.Length.Should().BeLessThan(path.Length + 300, "the rest of the file is not quoted");
    }
}
