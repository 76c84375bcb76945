using System.Text.Json;

namespace Granite.Cli.Tests;

/// <summary><c>granite inspect --dtype q8_0</c>: the quantized bytes and the logit change against the model as stored.</summary>
public class InspectQuantizationTests
{
    [Fact]
    public async Task InspectQ8_0ReportsMemoryAndAccuracy()
    {
        var (code, output, err) = await CliRunner.RunAsync("inspect", "--model", Fixtures.Dir("tiny-h-moe"), "--json", "--dtype", "q8_0");
        code.Should().Be(0, err);
        var q = JsonDocument.Parse(output).RootElement.GetProperty("quantization");
        q.GetProperty("format").GetString().Should().Be("Q8_0");
        q.GetProperty("tensors").GetInt32().Should().BeGreaterThan(0);
        // 34 bytes per 32 BF16 weights (64 bytes).
        ((double)q.GetProperty("quantized_bytes").GetInt64() / q.GetProperty("source_bytes").GetInt64()).Should().BeApproximately(34.0 / 64, 1e-9);
        int tokens = q.GetProperty("prompt_tokens").GetInt32();
        tokens.Should().BeGreaterThan(5);
        double delta = q.GetProperty("max_abs_logit_delta").GetDouble();
        // Measured 1.11 with top-1 30/30 on this random-weight fixture (64-wide rows; max |logit| ≈ 7): docs/quantization.md.
        delta.Should().BeGreaterThan(0).And.BeLessThan(2.0);
        q.GetProperty("top1_agreement").GetInt32().Should().BeGreaterThanOrEqualTo(tokens * 8 / 10);
        var (_, text, _) = await CliRunner.RunAsync("inspect", "--model", Fixtures.Dir("tiny-h-moe"), "--dtype", "q8_0");
        text.Should().Contain("quantization     Q8_0:");
    }
}
