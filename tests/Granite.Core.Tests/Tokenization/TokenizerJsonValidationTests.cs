using System.Text.Json.Nodes;
using Granite.Core.Tokenization;

namespace Granite.Core.Tests.Tokenization;

public sealed class TokenizerJsonValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("granite-tok-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static JsonObject Fixture(string name = "tiny-h-moe") =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerGolden.Dir(name), "tokenizer.json")))!.AsObject();

    private string Write(JsonNode node, string name = "tokenizer.json")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, node.ToJsonString());
        return path;
    }

    private void ShouldReject(JsonNode json, params string[] messageParts)
    {
        string path = Write(json);
        Action load = () => GraniteTokenizer.FromFiles(path, null);
        var ex = load.Should().Throw<InvalidDataException>().Which;
        ex.Message.Should().Contain(path);
        foreach (string part in messageParts)
        {
            ex.Message.Should().Contain(part);
        }
    }

    [Fact]
    public void MissingModelIsRejected()
    {
        JsonObject json = Fixture();
        json.Remove("model");
        ShouldReject(json, "'model'");
    }

    [Fact]
    public void UnknownModelTypeIsRejected()
    {
        JsonObject json = Fixture();
        json["model"]!["type"] = "WordPiece";
        ShouldReject(json, "WordPiece", "BPE");
    }

    [Fact]
    public void MissingVocabIsRejected()
    {
        JsonObject json = Fixture();
        json["model"]!.AsObject().Remove("vocab");
        ShouldReject(json, "model.vocab");
    }

    [Fact]
    public void DuplicateVocabIdIsRejected()
    {
        JsonObject json = Fixture();
        json["model"]!["vocab"]!["Ġweather"] = 39; // 39 is "H"
        ShouldReject(json, "duplicate id 39", "Ġweather");
    }

    [Fact]
    public void AddedTokenWithIdOfAnotherVocabTokenIsRejected()
    {
        JsonObject json = Fixture();
        json["added_tokens"]![1]!["id"] = 39;
        ShouldReject(json, "added_tokens[1]", "duplicate id 39");
    }

    [Fact]
    public void AddedTokensSharingAnIdAreRejected()
    {
        JsonObject json = Fixture();
        json["added_tokens"]![1]!["id"] = 506;
        ShouldReject(json, "added_tokens[1]", "506");
    }

    [Fact]
    public void MergeWithUnknownTokenIsRejected()
    {
        JsonObject json = Fixture();
        json["model"]!["merges"]!.AsArray().Add(new JsonArray("zzz", "q"));
        ShouldReject(json, "model.merges[250]", "'zzz'");
    }

    [Fact]
    public void MalformedMergeStringIsRejected()
    {
        JsonObject json = Fixture("tiny-dense");
        json["model"]!["merges"]![3] = "nospace";
        ShouldReject(json, "model.merges[3]", "nospace");
    }

    [Fact]
    public void MalformedMergePairIsRejected()
    {
        JsonObject json = Fixture();
        json["model"]!["merges"]![5] = new JsonArray("a", "b", "c");
        ShouldReject(json, "model.merges[5]");
    }

    [Fact]
    public void MergeWhoseResultIsNotInVocabIsRejected()
    {
        JsonObject json = Fixture();
        json["model"]!["merges"]!.AsArray().Add(new JsonArray("Ġweather", "Ġweather"));
        ShouldReject(json, "model.merges[250]", "ĠweatherĠweather");
    }

    [Fact]
    public void UnsupportedPreTokenizerIsRejected()
    {
        JsonObject json = Fixture();
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" };
        ShouldReject(json, "pre_tokenizer", "Whitespace");
    }

    [Fact]
    public void SplitRegexThatDotNetCannotCompileIsRejected()
    {
        JsonObject json = Fixture();
        json["pre_tokenizer"] = JsonNode.Parse("""
            {"type":"Sequence","pretokenizers":[
              {"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated","invert":false},
              {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}
            """);
        ShouldReject(json, "pre_tokenizer.pretokenizers[0]", "(unclosed");
    }

    [Fact]
    public void InvalidJsonIsRejected()
    {
        string path = Path.Combine(_dir, "tokenizer.json");
        File.WriteAllText(path, "{ \"model\": { ");
        Action load = () => GraniteTokenizer.FromFiles(path, null);
        load.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(path).And.Contain("not valid JSON");
    }

    [Fact]
    public void MissingFilesAreReported()
    {
        Action noJson = () => GraniteTokenizer.FromDirectory(_dir);
        noJson.Should().Throw<FileNotFoundException>().Which.Message.Should().Contain("tokenizer.json");

        Action noDir = () => GraniteTokenizer.FromDirectory(Path.Combine(_dir, "nope"));
        noDir.Should().Throw<DirectoryNotFoundException>();
    }

    [Fact]
    public void UnknownEosTokenInConfigIsRejected()
    {
        string tokenizerPath = Write(Fixture());
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerGolden.Dir("tiny-h-moe"), "tokenizer_config.json")))!.AsObject();
        config["eos_token"] = "<|no_such_token|>";
        string configPath = Write(config, "tokenizer_config.json");

        Action load = () => GraniteTokenizer.FromFiles(tokenizerPath, configPath);
        load.Should().Throw<InvalidDataException>().Which.Message.Should().Contain(configPath).And.Contain("eos_token");
    }

    [Fact]
    public void StringAndPairMergesGiveIdenticalTokenizers()
    {
        // tiny-h-moe stores merges as ["a","b"] pairs; write a variant with "a b" strings (and vice versa for tiny-dense)
        JsonObject pairs = Fixture("tiny-h-moe");
        JsonObject strings = Fixture("tiny-h-moe");
        strings["model"]!["merges"] = new JsonArray(pairs["model"]!["merges"]!.AsArray()
            .Select(m => (JsonNode)JsonValue.Create($"{m![0]} {m[1]}")).ToArray());
        JsonObject dense = Fixture("tiny-dense");
        dense["model"]!["merges"] = new JsonArray(dense["model"]!["merges"]!.AsArray()
            .Select(m => (JsonNode)new JsonArray(m!.GetValue<string>().Split(' ').Select(p => (JsonNode)JsonValue.Create(p)!).ToArray())).ToArray());

        GraniteTokenizer fromStrings = GraniteTokenizer.FromFiles(Write(strings, "strings.json"), null);
        GraniteTokenizer fromPairs = GraniteTokenizer.FromFiles(Write(dense, "pairs.json"), null);

        foreach (TokenizerGolden.EncodeCase c in TokenizerGolden.Load("tiny-h-moe").Cases)
        {
            fromStrings.Encode(c.Text, allowSpecialTokens: true).Should().Equal(c.Ids, c.Text);
            fromPairs.Encode(c.Text, allowSpecialTokens: true).Should().Equal(c.Ids, c.Text);
        }
    }

    [Fact]
    public void SplitPreTokenizerRegexIsReadFromTokenizerJson()
    {
        // Replace the ByteLevel regex by an explicit Split (cl100k-style pattern with digit groups of <= 3 and
        // case-insensitive contractions) + ByteLevel(use_regex=false): digit runs now split differently.
        JsonObject json = Fixture();
        json["pre_tokenizer"] = JsonNode.Parse("""
            {"type":"Sequence","pretokenizers":[
              {"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},
              {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}
            """);
        GraniteTokenizer tokenizer = GraniteTokenizer.FromFiles(Write(json), null);
        GraniteTokenizer gpt2 = TokenizerGolden.Tokenizer("tiny-h-moe");

        tokenizer.Encode(" 1234567").Select(tokenizer.IdToToken).Should().Equal("Ġ", "1", "2", "3", "4", "5", "6", "7");
        gpt2.Encode(" 1234567").Select(gpt2.IdToToken).Should().Equal("Ġ1", "2", "3", "4", "5", "6", "7");
        tokenizer.Decode(tokenizer.Encode("x 1234567 I'D")).Should().Be("x 1234567 I'D");
    }
}
