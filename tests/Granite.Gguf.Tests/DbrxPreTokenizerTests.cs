using System.Text;
using System.Text.Json.Nodes;
using Granite.Core.Tokenization;
using Granite.Core.Weights.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>
/// Real Granite 4.0 tokenizers split with the cl100k-style regex (a <c>Split</c> + <c>ByteLevel</c> without regex), which
/// GGUF calls <c>tokenizer.ggml.pre = dbrx</c>. A fixture copy with that pre-tokenizer exports as <c>dbrx</c>, llama.cpp
/// tokenizes it exactly as this project does, and import gives the same tokenizer back.
/// </summary>
[Collection(LlamaCppCollection.Name)]
public class DbrxPreTokenizerTests
{
    private static readonly string[] Texts =
    {
        "numbers 1 12 123 1234 12345 123456 and 3.14159",
        "I'M SURE they'LL say IT'S what WE'VE done",
        "  leading spaces,\ttabs\r\nand\n\n\nnewlines   end",
        "unicode: café naïve 日本語 😀🚀 ---===",
        "he said: \"the answer is\" -- it's in the file.json {\"a\": 1}",
        "<|start_of_role|>user<|end_of_role|>What is 2+2?<|end_of_text|>",
    };

    [Fact]
    public void Cl100kSplitExportsAsDbrxAndTokenizesLikeLlamaCpp()
    {
        var dir = Directory.CreateTempSubdirectory("granite-gguf-dbrx-").FullName;
        try
        {
            var model = Path.Combine(dir, "model");
            Directory.CreateDirectory(model);
            var src = Golden.FixtureDir("tiny-h-moe");
            foreach (var file in Directory.GetFiles(src)) File.Copy(file, Path.Combine(model, Path.GetFileName(file)));
            var tj = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "tokenizer.json")))!.AsObject();
            tj["pre_tokenizer"] = JsonNode.Parse($$"""
                {"type":"Sequence","pretokenizers":[
                  {"type":"Split","pattern":{"Regex":{{System.Text.Json.JsonSerializer.Serialize(GgufTokenizerMetadata.Cl100kSplitPattern)}}},"behavior":"Isolated","invert":false},
                  {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]}
                """);
            File.WriteAllText(Path.Combine(model, "tokenizer.json"), tj.ToJsonString());
            var ours = GraniteTokenizer.FromDirectory(model);
            var gpt2 = GraniteTokenizer.FromDirectory(src);
            Texts.Count(t => !ours.Encode(t, allowSpecialTokens: true).SequenceEqual(gpt2.Encode(t, allowSpecialTokens: true)))
                .Should().BeGreaterThan(0, "the texts must tell the two split regexes apart");

            var gguf = Path.Combine(dir, "dbrx.gguf");
            GgufExporter.Export(model, gguf);
            using (var f = GgufFile.Open(gguf)) f.GetString("tokenizer.ggml.pre").Should().Be("dbrx");

            using (var llama = new LlamaCpp(gguf))
                foreach (var text in Texts)
                    llama.Weights.Tokenize(text, false, true, Encoding.UTF8).Select(t => (int)t).Should()
                        .Equal(ours.Encode(text, allowSpecialTokens: true), $"llama.cpp dbrx tokenization of {System.Text.Json.JsonSerializer.Serialize(text)}");

            var imported = Path.Combine(dir, "imported");
            GgufImporter.Materialize(gguf, imported);
            var back = GraniteTokenizer.FromDirectory(imported);
            foreach (var text in Texts)
                back.Encode(text, allowSpecialTokens: true).Should().Equal(ours.Encode(text, allowSpecialTokens: true), text);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void UnsupportedPreTokenizerIsRefusedNamingTheFile()
    {
        var dir = Directory.CreateTempSubdirectory("granite-gguf-pre-").FullName;
        try
        {
            var src = Golden.FixtureDir("tiny-h-moe");
            foreach (var file in Directory.GetFiles(src)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
            var tj = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer.json")))!.AsObject();
            tj["pre_tokenizer"] = JsonNode.Parse("""{"type":"Split","pattern":{"Regex":"\\s+"},"behavior":"Isolated","invert":false}""");
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tj.ToJsonString());
            var act = () => GgufExporter.Export(dir, Path.Combine(dir, "x.gguf"));
            act.Should().Throw<NotSupportedException>().WithMessage($"*{Path.Combine(dir, "tokenizer.json")}*no llama.cpp tokenizer.ggml.pre equivalent*");
            File.Exists(Path.Combine(dir, "x.gguf")).Should().BeFalse();
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
