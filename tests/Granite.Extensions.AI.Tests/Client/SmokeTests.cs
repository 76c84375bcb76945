using System.Diagnostics;
using Microsoft.Extensions.AI;
using Xunit.Abstractions;

namespace Granite.Extensions.AI.Tests.Client;

public class SmokeTests(TinyEngineFixture fx, ITestOutputHelper output) : IClassFixture<TinyEngineFixture>
{
    [Fact]
    public async Task StreamsAResponse()
    {
        using var client = fx.NewClient();
        var sw = Stopwatch.StartNew();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 8 }))
            updates.Add(u);
        output.WriteLine($"{sw.ElapsedMilliseconds} ms, text '{string.Concat(updates.Select(u => u.Text))}'");
        var response = updates.ToChatResponse();
        response.FinishReason.Should().Be(ChatFinishReason.Length);
        response.Usage!.OutputTokenCount.Should().Be(8);
    }
}
