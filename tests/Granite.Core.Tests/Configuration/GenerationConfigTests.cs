using Granite.Core.Configuration;
using Granite.Core.Generation;
using Granite.Core.Tests.Sessions;

namespace Granite.Core.Tests.Configuration;

/// <summary>generation_config.json: every EOS id it lists stops generation; malformed files are clear errors.</summary>
public sealed class GenerationConfigTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "granite-gencfg-" + Guid.NewGuid().ToString("N"));

    public GenerationConfigTests()
    {
        Directory.CreateDirectory(_dir);
        foreach (var f in Directory.GetFiles(SessionTestSupport.ModelDir)) File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)));
        File.Delete(Path.Combine(_dir, GenerationConfig.FileName));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("{\"eos_token_id\": 7}", new[] { 7 })]
    [InlineData("{\"eos_token_id\": [7, 9, 7]}", new[] { 7, 9 })]
    [InlineData("{\"do_sample\": true}", new int[0])]
    [InlineData("{\"eos_token_id\": null}", new int[0])]
    public void ReadsEosIds(string json, int[] expected)
    {
        File.WriteAllText(Path.Combine(_dir, GenerationConfig.FileName), json);
        GenerationConfig.Load(_dir)!.EosTokenIds.Should().Equal(expected);
    }

    [Theory]
    [InlineData("{\"eos_token_id\": \"x\"}", "eos_token_id")]
    [InlineData("{\"eos_token_id\": [1, -2]}", "eos_token_id")]
    [InlineData("[1]", "JSON object")]
    [InlineData("{", "not valid JSON")]
    public void MalformedFilesAreClearErrors(string json, string message)
    {
        File.WriteAllText(Path.Combine(_dir, GenerationConfig.FileName), json);
        var act = () => GenerationConfig.Load(_dir);
        act.Should().Throw<InvalidDataException>().WithMessage($"*{GenerationConfig.FileName}*{message}*");
    }

    [Fact]
    public void MissingFileIsNull() => GenerationConfig.Load(_dir).Should().BeNull();

    [Fact]
    public async Task AnExtraEosIdFromGenerationConfigStopsGeneration()
    {
        GraniteRuntime.EnsureLoaded();
        using var probe = GraniteEngine.Load(_dir, new GraniteEngineOptions { SessionCacheBytes = 0 });
        var word = probe.Encode(" hello");
        int extra = probe.Encode("<|unused_1|>").Single();
        probe.DefaultStopTokenIds.Should().NotContain(extra);
        var forced = word.Append(extra).Concat(word).ToArray();
        (await probe.GenerateAsync(probe.Encode(SessionTestSupport.User("Hi")), maxNew: 20, reuse: false, forced: forced)).Finish
            .Should().Be(GenerationFinishReason.Length, "without generation_config.json the id is an ordinary token");

        File.WriteAllText(Path.Combine(_dir, GenerationConfig.FileName), $"{{\"eos_token_id\": [{probe.Config.EosTokenIds[0]}, {extra}]}}");
        using var engine = GraniteEngine.Load(_dir, new GraniteEngineOptions { SessionCacheBytes = 0 });
        engine.DefaultStopTokenIds.Should().Contain(extra).And.Contain(engine.Config.EosTokenIds);
        var turn = await engine.GenerateAsync(engine.Encode(SessionTestSupport.User("Hi")), maxNew: 20, reuse: false, forced: forced);
        turn.Finish.Should().Be(GenerationFinishReason.Stop);
        turn.Output.Should().Equal(word.Append(extra));
    }
}
