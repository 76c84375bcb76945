using System.Text.Json;
using Granite.Cli;

namespace Granite.Cli.Tests;

/// <summary><c>granite export-gguf</c>: wiring, output contract and error policy (the file itself is checked against
/// llama.cpp in Granite.Gguf.Tests).</summary>
[Collection(ProcessWide.Collection)] // sets GRANITE_CACHE
public class ExportGgufCliTests
{

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliRunner.RunAsync(args);

    [Theory]
    [InlineData("tiny-h-moe", null, "granitehybrid", "bf16", 96)]
    [InlineData("tiny-h-moe", "f32", "granitehybrid", "f32", 96)]
    [InlineData("tiny-dense", "bf16", "granite", "bf16", 39)]
    [InlineData("tiny-h-moe", "q4_k", "granitehybrid", "q4_k", 96)]
    public async Task WritesAGgufFile(string fixture, string? type, string arch, string writtenType, int tensors)
    {
        var dir = Directory.CreateTempSubdirectory("granite-export-cli-").FullName;
        try
        {
            var file = Path.Combine(dir, "model.gguf");
            var args = new List<string> { "export-gguf", "--model", Fixtures.Dir(fixture), "--out", file, "--json" };
            if (type is not null) args.AddRange(new[] { "--type", type });
            var (code, output, err) = await Run(args.ToArray());
            code.Should().Be(0, err);
            var j = JsonDocument.Parse(output).RootElement;
            j.GetProperty("architecture").GetString().Should().Be(arch);
            j.GetProperty("type").GetString().Should().Be(writtenType);
            j.GetProperty("tensors").GetInt32().Should().Be(tensors);
            j.GetProperty("bytes").GetInt64().Should().Be(new FileInfo(file).Length);
            var head = new byte[8];
            using (var fs = File.OpenRead(file)) fs.ReadExactly(head);
            BitConverter.ToUInt32(head, 0).Should().Be(0x46554747u, "GGUF magic");
            BitConverter.ToUInt32(head, 4).Should().Be(3u, "GGUF version");
            Directory.GetFiles(dir).Should().ContainSingle("the temporary file is renamed into place");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("--type", "q2_k", "option --type must be bf16, f16, f32, q8_0, q4_0, q4_k or q6_k (got 'q2_k')")]
    [InlineData("--bogus", "1", "unknown option --bogus")]
    public async Task BadOptionsGiveOneLineErrors(string name, string value, string message)
    {
        var (code, _, err) = await Run("export-gguf", "--model", Fixtures.Dir("tiny-h-moe"), "--out", Path.Combine(Path.GetTempPath(), "never-written.gguf"), name, value);
        code.Should().Be(2);
        err.Trim().Should().Be("granite: " + message);
    }

    [Fact]
    public async Task MissingOutIsAUsageError()
    {
        var (code, _, err) = await Run("export-gguf", "--model", Fixtures.Dir("tiny-h-moe"));
        code.Should().Be(2);
        err.Trim().Should().Be("granite: option --out is required");
    }

    [Fact]
    public async Task CommandsAcceptTheExportedGgufFileAsModel()
    {
        var dir = Directory.CreateTempSubdirectory("granite-export-cli-").FullName;
        var previous = Environment.GetEnvironmentVariable("GRANITE_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", Path.Combine(dir, "cache"));
            var file = Path.Combine(dir, "tiny.gguf");
            (await Run("export-gguf", "--model", Fixtures.Dir("tiny-dense"), "--out", file)).Code.Should().Be(0);
            var c = GoldenJson.Root(Fixtures.TinyDense).GetProperty("cases")[2];
            var ids = string.Join(",", c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()));
            var (code, output, err) = await Run("logits", "--model", file, "--ids", ids, "--greedy", "8", "--json");
            code.Should().Be(0, err);
            var j = JsonDocument.Parse(output).RootElement;
            j.GetProperty("argmax").EnumerateArray().Select(e => e.GetInt32()).Should().Equal(c.GetProperty("argmax_all").EnumerateArray().Select(e => e.GetInt32()));
            j.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).Should().Equal(c.GetProperty("greedy_new_tokens").EnumerateArray().Take(8).Select(e => e.GetInt32()));
            var (tcode, tout, _) = await Run("tokenize", "--model", file, "--text", "Hello world", "--json");
            tcode.Should().Be(0);
            var (ocode, oout, _) = await Run("tokenize", "--model", Fixtures.Dir("tiny-dense"), "--text", "Hello world", "--json");
            ocode.Should().Be(0);
            tout.Should().Be(oout);
        }
        finally
        {
            Environment.SetEnvironmentVariable("GRANITE_CACHE", previous);
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task AFileThatIsNotGgufIsRejectedClearly()
    {
        var dir = Directory.CreateTempSubdirectory("granite-export-cli-").FullName;
        try
        {
            var file = Path.Combine(dir, "fake.gguf");
            File.WriteAllText(file, "not a model");
            var (code, _, err) = await Run("logits", "--model", file, "--ids", "1", "--json");
            code.Should().Be(2);
            err.Trim().Should().Be($"granite: {file}: is not a GGUF file (no GGUF magic)");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
