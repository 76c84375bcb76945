using Granite.Core.Weights.Gguf;
using Granite.Extensions.AI;
using Microsoft.Extensions.AI;

namespace Granite.Extensions.AI.Tests.Client;

/// <summary><see cref="GraniteChatClientOptions.ModelPath"/> may name a GGUF file: the client answers exactly as over the
/// checkpoint folder it was exported from.</summary>
[Collection(ProcessWide.Collection)] // sets GRANITE_CACHE
public class GgufModelPathTests
{
    [Fact]
    public async Task ChatClientOverAGgufFileAnswersLikeOverTheFolder()
    {
        var folder = Fixtures.Dir(Fixtures.TinyHMoe);
        var dir = Directory.CreateTempSubdirectory("granite-gguf-client-").FullName;
        var previous = Environment.GetEnvironmentVariable("GRANITE_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", Path.Combine(dir, "cache"));
            var gguf = Path.Combine(dir, "tiny-h-moe.gguf");
            GgufExporter.Export(folder, gguf);
            // Special tokens kept in the text: GGUF marks every <|…|> token CONTROL, so a token that tokenizer.json does not
            // flag special (e.g. <|fim_prefix|>) is special after import and would be skipped (docs/gguf.md).
            var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 0, AdditionalProperties = new() { [GraniteChatClient.SkipSpecialTokensKey] = false } };
            // Float32 compute: deterministic across engines in one process (BF16 kernels may split reductions differently).
            string expected, actual;
            using (var c = new GraniteChatClient(new GraniteChatClientOptions { ModelPath = folder, WeightDtype = Granite.Core.Modeling.WeightDtypePolicy.Float32 }))
                expected = (await c.GetResponseAsync("Tell me about granite.", options)).Text;
            using (var c = new GraniteChatClient(new GraniteChatClientOptions { ModelPath = gguf, WeightDtype = Granite.Core.Modeling.WeightDtypePolicy.Float32 }))
                actual = (await c.GetResponseAsync("Tell me about granite.", options)).Text;
            expected.Should().NotBeEmpty();
            actual.Should().Be(expected);
        }
        finally
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", previous);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void MissingPathIsNamed()
    {
        var missing = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N") + ".gguf");
        var act = () => new GraniteChatClient(new GraniteChatClientOptions { ModelPath = missing });
        act.Should().Throw<DirectoryNotFoundException>().WithMessage($"*{missing}*");
    }
}
