using System.Text.Json;
using System.Text.Json.Nodes;
using Granite.Cli;

namespace Granite.Cli.Tests;

/// <summary>The CLI against hostile checkpoint files (issue #14): one escaped line naming file and field, never a hang or crash.</summary>
public class CliHostileInputTests
{

    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliRunner.RunAsync(args);

    private static string Copy(string fixture) => Fixtures.CopyToTemp(fixture, "granite-hostile-");

    private static void AssertOneCleanLine(string err)
    {
        err.Trim().Split('\n').Should().HaveCount(1, "errors are one line");
        err.TrimEnd('\n', '\r').Should().NotContain("\u001b").And.NotContain("\u0007").And.NotContain("\r");
        err.Length.Should().BeLessThan(GraniteCli.MaxErrorChars + 100);
    }

    [Fact]
    public async Task InspectListsDefaultedFields_AndLoadMemory()
    {
        var (code, output, err) = await Run("inspect", "--model", Fixtures.Dir("tiny-h-moe"), "--json");
        code.Should().Be(0, err);
        var j = JsonDocument.Parse(output).RootElement;
        j.GetProperty("defaulted_fields").EnumerateArray().Select(e => e.GetString()).Should().Equal("time_step_limit");
        j.GetProperty("load_private_bytes").GetInt64().Should().Be(0, "BF16 weights kept as stored are zero-copy");
        j.GetProperty("load_mapped_bytes").GetInt64().Should().Be(2 * 544_288);
        (await Run("inspect", "--model", Fixtures.Dir("tiny-h-moe"), "--json", "--dtype", "f32")).Out
            .Should().Contain("\"load_private_bytes\":" + (4 * 544_288));
        var (_, text, _) = await Run("inspect", "--model", Fixtures.Dir("tiny-h-moe"));
        text.Should().Contain("defaulted fields time_step_limit");
    }

    [Theory]
    [InlineData("vocab_size", 1_000_000_000)]
    [InlineData("num_local_experts", 1_000_000)]
    [InlineData("mamba_d_conv", 100_000)]
    public async Task InspectAndLogits_RunTheSameValidation(string field, long value)
    {
        var dir = Copy("tiny-h-moe");
        try
        {
            var cfg = Path.Combine(dir, "config.json");
            var root = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
            root[field] = value;
            File.WriteAllText(cfg, root.ToJsonString());
            foreach (var args in new[] { new[] { "inspect", "--model", dir }, new[] { "logits", "--model", dir, "--ids", "1,2" } })
            {
                var (code, _, err) = await Run(args);
                code.Should().Be(2, args[0]);
                err.Should().Contain("config.json").And.Contain($"'{field}'");
                AssertOneCleanLine(err);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public async Task TerminalEscapes_AndHugeValues_InConfig_AreNotEchoedRaw()
    {
        var dir = Copy("tiny-h-moe");
        try
        {
            var cfg = Path.Combine(dir, "config.json");
            string original = File.ReadAllText(cfg);
            File.WriteAllText(cfg, original.Replace("\"vocab_size\": 544", "\"vocab_size\": 544 \u001b]0;pwned\u0007\u001b[2J" + new string('x', 20_000)));
            var (code, _, err) = await Run("inspect", "--model", dir);
            code.Should().Be(2);
            err.Should().Contain("config.json");
            AssertOneCleanLine(err);

            File.WriteAllText(cfg, original.Replace("\"vocab_size\": 544", "\"vocab_size\": [" + string.Join(",", Enumerable.Repeat("\"\\u001b[2J\"", 5000)) + "]"));
            (code, _, err) = await Run("inspect", "--model", dir);
            code.Should().Be(2);
            err.Should().Contain("config.json: field 'vocab_size' must be an integer");
            AssertOneCleanLine(err);
            err.Length.Should().BeLessThan(400, "the value is quoted as a short excerpt");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public async Task ThreadsAreBounded()
    {
        var (code, _, err) = await Run("logits", "--model", Fixtures.Dir("tiny-h-moe"), "--ids", "1", "--threads", "100000");
        code.Should().Be(2);
        err.Should().Contain("--threads must be at most");
        AssertOneCleanLine(err);
    }
}

/// <summary>Non-regular files and non-finite weights (issue #14, other entry points).</summary>
public class CliHostileFileTypeTests
{
    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, uint mode);


    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliRunner.RunAsync(args);

    private static string Copy(string fixture) => Fixtures.CopyToTemp(fixture, "granite-hostile-");

    [Theory]
    [InlineData("model.safetensors", "logits")]
    [InlineData("model.safetensors", "inspect")]
    [InlineData("config.json", "inspect")]
    [InlineData("tokenizer.json", "tokenize")]
    public async Task Fifo_InsteadOfAFile_IsRefused_WithoutBlocking(string file, string command)
    {
        var dir = Copy("tiny-h-moe");
        try
        {
            var path = Path.Combine(dir, file);
            File.Delete(path);
            if (file == "tokenizer.json")
            {
                // Through a symbolic link as well: the link's own size must not pass for the target's.
                var fifo = Path.Combine(dir, "pipe");
                mkfifo(fifo, Convert.ToUInt32("600", 8)).Should().Be(0);
                File.CreateSymbolicLink(path, fifo);
            }
            else
            {
                mkfifo(path, Convert.ToUInt32("600", 8)).Should().Be(0);
            }
            string[] args = command switch
            {
                "logits" => new[] { "logits", "--model", dir, "--ids", "1" },
                "tokenize" => new[] { "tokenize", "--model", dir, "--text", "hi" },
                _ => new[] { command, "--model", dir },
            };
            var run = Run(args);
            (await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60)))).Should().BeSameAs(run, "opening a FIFO must not block");
            var (code, _, err) = await run;
            code.Should().Be(2);
            err.Should().Contain(file).And.Contain("not a regular file");
            err.Trim().Split('\n').Should().HaveCount(1);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public async Task CharacterDevice_AsWeights_IsRefused()
    {
        var dir = Copy("tiny-h-moe");
        try
        {
            var path = Path.Combine(dir, "model.safetensors");
            File.Delete(path);
            File.CreateSymbolicLink(path, "/dev/zero");
            var (code, _, err) = await Run("inspect", "--model", dir);
            code.Should().Be(2);
            err.Should().Contain("not a regular file");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public async Task NonFiniteWeights_GiveAClearLogitsError_AndCheckWeightsNamesTheTensor()
    {
        var dir = Copy("tiny-h-moe");
        try
        {
            var file = Path.Combine(dir, "model.safetensors");
            var bytes = File.ReadAllBytes(file);
            long n = BitConverter.ToInt64(bytes, 0);
            var header = JsonNode.Parse(System.Text.Encoding.UTF8.GetString(bytes, 8, (int)n))!.AsObject();
            var offsets = header["model.norm.weight"]!["data_offsets"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
            header["model.norm.weight"]!["dtype"]!.GetValue<string>().Should().Be("BF16");
            for (long o = 8 + n + offsets[0]; o < 8 + n + offsets[1]; o += 2) { bytes[o] = 0xC0; bytes[o + 1] = 0x7F; } // BF16 NaN
            File.WriteAllBytes(file, bytes);

            var (code, output, err) = await Run("logits", "--model", dir, "--ids", "1,2", "--json");
            code.Should().Be(2, output);
            err.Should().Contain("non-finite logits (NaN or Inf); the weights are probably corrupt");
            err.Trim().Split('\n').Should().HaveCount(1);

            (code, _, err) = await Run("logits", "--model", dir, "--ids", "1,2", "--json", "--check-weights");
            code.Should().Be(2);
            err.Should().Contain("model.safetensors: tensor 'model.norm.weight' holds 64 non-finite values (NaN or Inf) of 64");

            (code, _, err) = await Run("logits", "--model", Fixtures.Dir("tiny-h-moe"), "--ids", "1,2", "--json", "--check-weights");
            code.Should().Be(0, err);
        }
        finally { Directory.Delete(dir, true); }
    }
}
