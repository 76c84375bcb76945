using System.Text.Json;
using Granite.Cli;
using Granite.Core;

namespace Granite.Cli.Tests;

public sealed class ChatCommandTests
{
    private static string ModelDir => Fixtures.Dir(Fixtures.TinyHMoe);

    private static async Task<(int Code, List<JsonElement> Lines, string Err)> RunAsync(params string[] args)
    {
        GraniteRuntime.EnsureLoaded();
        var (code, stdout, stderr) = await CliRunner.RunAsync(args);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        return (code, lines, stderr);
    }

    [Fact]
    public async Task ReplaysTurnsAndReportsCachedTokensPerTurn()
    {
        var script = Path.GetTempFileName();
        try
        {
            File.WriteAllText(script, "[\"Hello there\", \"What can you do?\", \"Thanks\"]");
            var reuse = await RunAsync("chat", "--model", ModelDir, "--script", script, "--json", "--max-tokens", "5", "--dtype", "f32");
            var none = await RunAsync("chat", "--model", ModelDir, "--script", script, "--json", "--max-tokens", "5", "--dtype", "f32", "--no-reuse");
            reuse.Code.Should().Be(0, reuse.Err);
            none.Code.Should().Be(0, none.Err);
            reuse.Lines.Should().HaveCount(3);
            foreach (var l in reuse.Lines.Concat(none.Lines))
                l.EnumerateObject().Select(p => p.Name).Should().Equal("turn", "input_tokens", "cached_input_tokens", "output_tokens", "ttft_ms", "total_ms");
            for (int i = 0; i < 3; i++)
            {
                reuse.Lines[i].GetProperty("turn").GetInt32().Should().Be(i + 1);
                reuse.Lines[i].GetProperty("input_tokens").GetInt32().Should().Be(none.Lines[i].GetProperty("input_tokens").GetInt32());
                none.Lines[i].GetProperty("cached_input_tokens").GetInt32().Should().Be(0);
            }
            reuse.Lines[0].GetProperty("cached_input_tokens").GetInt32().Should().Be(0);
            for (int i = 1; i < 3; i++)
            {
                int prevTotal = reuse.Lines[i - 1].GetProperty("input_tokens").GetInt32() + reuse.Lines[i - 1].GetProperty("output_tokens").GetInt32();
                reuse.Lines[i].GetProperty("cached_input_tokens").GetInt32().Should().BeGreaterThanOrEqualTo(prevTotal);
            }

            File.WriteAllText(script, "first line\n\nsecond line\n");
            var lines = await RunAsync("chat", "--model", ModelDir, "--script", script, "--json", "--max-tokens", "2");
            lines.Lines.Should().HaveCount(2);
        }
        finally
        {
            File.Delete(script);
        }
    }

    [Fact]
    public async Task StoredConversationAndResentHistoryDoTheSameWork()
    {
        var script = Path.GetTempFileName();
        try
        {
            File.WriteAllText(script, "[\"Hello there\", \"What can you do?\", \"Thanks\"]");
            var resend = await RunAsync("chat", "--model", ModelDir, "--script", script, "--json", "--max-tokens", "5", "--dtype", "f32", "--system", "Be brief.");
            var stored = await RunAsync("chat", "--model", ModelDir, "--script", script, "--json", "--max-tokens", "5", "--dtype", "f32", "--system", "Be brief.", "--store-conversations");
            resend.Code.Should().Be(0, resend.Err);
            stored.Code.Should().Be(0, stored.Err);
            stored.Lines.Should().HaveCount(3);
            for (int i = 0; i < 3; i++)
                foreach (var key in new[] { "input_tokens", "cached_input_tokens", "output_tokens" })
                    stored.Lines[i].GetProperty(key).GetInt32().Should().Be(resend.Lines[i].GetProperty(key).GetInt32(), $"turn {i + 1} {key}");
            resend.Lines[2].GetProperty("cached_input_tokens").GetInt32().Should().BeGreaterThanOrEqualTo(resend.Lines[1].GetProperty("input_tokens").GetInt32(), "the resent history is resumed");
        }
        finally
        {
            File.Delete(script);
        }
    }

    [Fact]
    public async Task BadScriptIsAUsageError()
    {
        var (code, _, err) = await RunAsync("chat", "--model", ModelDir, "--script", "/nonexistent/turns.txt", "--json");
        code.Should().Be(2);
        err.Should().Contain("script file not found");
    }
}
