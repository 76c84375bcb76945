using System.Text.Json;
using FluentAssertions;
using Granite.Cli;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Tokenization;

namespace Granite.Cli.Tests.Demo;

/// <summary><c>granite train-demo</c> / <c>eval-demo</c> end to end on a minimal budget: a standard folder the normal loaders open.</summary>
[Collection(ProcessWide.Collection)] // train-demo sets LibTorch's process-wide thread count
public class TrainDemoCliTests
{
    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliRunner.RunAsync(args);

    [Fact]
    public async Task Train_demo_writes_a_loadable_Hugging_Face_folder_and_reports_the_evaluation()
    {
        string dir = Path.Combine(Path.GetTempPath(), "granite-train-demo-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (code, output, err) = await Run("train-demo", "--out", dir, "--seed", "4", "--steps", "2", "--batch", "1", "--merges", "300",
                "--tokenizer-conversations", "30", "--hidden", "32", "--layers", "ma", "--eval", "1", "--checkpoint-every", "1", "--json");
            code.Should().Be(0, err);
            var json = JsonDocument.Parse(output).RootElement;
            json.GetProperty("step").GetInt64().Should().Be(2);
            json.GetProperty("finished").GetBoolean().Should().BeTrue();
            json.GetProperty("tokens_per_second").GetDouble().Should().BeGreaterThan(0);
            json.GetProperty("evaluation").GetProperty("conversations").GetInt32().Should().Be(2);
            err.Should().Contain("step 2/2").And.Contain("| call-vs-no-call decision |");
            foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "checkpoint/trainer_state.json", "checkpoint/optimizer/model.safetensors" })
                File.Exists(Path.Combine(dir, f)).Should().BeTrue(f);

            using var model = GraniteModel.Load(dir);
            model.Config.LayerTypes.Should().Equal(LayerKind.Mamba, LayerKind.Attention);
            var tok = GraniteTokenizer.FromDirectory(dir);
            tok.AddedTokens.Should().HaveCount(28);
            model.Config.VocabSize.Should().BeGreaterThanOrEqualTo(tok.VocabularySize);

            // The same command with other options refuses to resume the checkpoint.
            var (code2, _, err2) = await Run("train-demo", "--out", dir, "--seed", "5", "--steps", "2", "--eval", "0");
            code2.Should().Be(2);
            err2.Should().Contain("trainer_state.json has seed = 4");

            // With the constant schedule the weights after a step do not depend on --steps, so a later session may raise it.
            var (code4, out4, err4) = await Run("train-demo", "--out", dir, "--seed", "4", "--steps", "3", "--batch", "1", "--merges", "300",
                "--tokenizer-conversations", "30", "--hidden", "32", "--layers", "ma", "--eval", "0", "--checkpoint-every", "1", "--json");
            code4.Should().Be(0, err4);
            err4.Should().Contain("resumed at step 2");
            JsonDocument.Parse(out4).RootElement.GetProperty("step").GetInt64().Should().Be(3);
            var (code5, _, err5) = await Run("train-demo", "--out", dir, "--seed", "4", "--steps", "4", "--batch", "1", "--merges", "300",
                "--tokenizer-conversations", "30", "--hidden", "32", "--layers", "ma", "--eval", "0", "--schedule", "cosine");
            code5.Should().Be(2);
            err5.Should().Contain("trainer_state.json has schedule = \"constant\"");

            var (code3, out3, err3) = await Run("eval-demo", "--model", dir, "--count", "1", "--json");
            code3.Should().Be(0, err3);
            JsonDocument.Parse(out3).RootElement.GetProperty("conversations").GetInt32().Should().Be(2);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
