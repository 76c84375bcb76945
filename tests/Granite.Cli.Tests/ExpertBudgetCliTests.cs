using System.Text.Json;
using Granite.Cli;

namespace Granite.Cli.Tests;

/// <summary><c>--expert-budget</c> on <c>granite logits</c>, <c>generate</c> and <c>inspect</c>.</summary>
[Collection(ProcessWide.Collection)] // --threads 1 sets LibTorch's process-wide thread count
public class ExpertBudgetCliTests
{
    private static readonly string Moe = Fixtures.Dir(Fixtures.TinyHMoe);

    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.RunAsync(args).GetAwaiter().GetResult();

    [Theory]
    [InlineData("100%")]
    [InlineData("12.5%")]
    [InlineData("294912")]
    [InlineData("200K")]
    public void LogitsWithABudgetEqualLogitsWithOffloadOff(string budget)
    {
        var off = Run("logits", "--model", Moe, "--ids", "5,17,300,2,9,44", "--greedy", "6", "--threads", "1", "--expert-budget", "off");
        var on = Run("logits", "--model", Moe, "--ids", "5,17,300,2,9,44", "--greedy", "6", "--threads", "1", "--expert-budget", budget);
        off.Code.Should().Be(0, off.Err);
        on.Code.Should().Be(0, on.Err);
        on.Out.Should().Be(off.Out);
        using var doc = JsonDocument.Parse(on.Out);
        doc.RootElement.GetProperty("last_logits").GetArrayLength().Should().Be(544);
    }

    [Fact]
    public void GenerateAcceptsABudget()
    {
        var off = Run("generate", "--model", Moe, "--ids", "5,17,300", "--max-tokens", "6", "--json");
        var on = Run("generate", "--model", Moe, "--ids", "5,17,300", "--max-tokens", "6", "--json", "--expert-budget", "25%");
        on.Code.Should().Be(0, on.Err);
        on.Out.Should().Be(off.Out);
    }

    [Fact]
    public void InspectShowsTheResidentBytesAtABudget()
    {
        var r = Run("inspect", "--model", Moe, "--json", "--expert-budget", "50%");
        r.Code.Should().Be(0, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var root = doc.RootElement;
        root.GetProperty("expert_weight_share").GetDouble().Should().BeApproximately(589824.0 / 1088576, 1e-4);
        var x = root.GetProperty("expert_offload");
        x.GetProperty("resident_experts_per_layer").GetInt32().Should().Be(4);
        x.GetProperty("expert_bytes_each").GetInt64().Should().Be(3 * 32 * 64 * 2);
        x.GetProperty("resident_bytes_max").GetInt64().Should().Be(6 * 4 * 3 * 32 * 64 * 2);
        var text = Run("inspect", "--model", Moe, "--expert-budget", "50%");
        text.Out.Should().Contain("4/8 experts per layer resident, at most 294,912 of 589,824 expert bytes");
    }

    [Theory]
    [InlineData("12x", "option --expert-budget '12x' must be")]
    [InlineData("0%", "must be a percentage in (0, 100]")]
    [InlineData("1000", "below one resident expert per layer")]
    public void BadBudgetsFailWithOneLine(string budget, string message)
    {
        var r = Run("logits", "--model", Moe, "--ids", "1,2", "--expert-budget", budget);
        r.Code.Should().Be(2);
        r.Err.Should().Contain(message);
        r.Err.Trim().Split('\n').Should().HaveCount(1);
    }
}
