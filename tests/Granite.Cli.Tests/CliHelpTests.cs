using Granite.Cli;

namespace Granite.Cli.Tests;

/// <summary>
/// The generated command line (System.CommandLine): help for every command, docs/cli.md equal to that help, and the
/// parse errors in the CLI's one-line form.
/// </summary>
public class CliHelpTests
{
    private static readonly string[] Commands =
        ["inspect", "logits", "generate", "tokenize", "detokenize", "prompt", "bench", "export-gguf", "chat", "train-demo", "eval-demo", "docs-cli"];


    private static Task<(int Code, string Out, string Err)> Run(params string[] args) => CliRunner.RunAsync(args);

    private static string CliDoc => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Docs", "cli.md")).Replace("\r\n", "\n", StringComparison.Ordinal);

    [Fact]
    public void TheCommandTreeHasEveryCommand()
    {
        GraniteCli.CreateCommandLine().Root.Subcommands.Select(c => c.Name).Should().Equal(Commands);
    }

    [Theory]
    [MemberData(nameof(CommandNames))]
    public async Task EveryCommandHasHelp_AndDocsCliMdHoldsItExactly(string command)
    {
        var (code, output, err) = await Run(command, "--help");
        code.Should().Be(0, err);
        err.Should().BeEmpty();
        var help = GraniteCli.NormalizeHelp(output);
        help.Should().StartWith("Description:").And.Contain($"granite {command} [options]").And.Contain("--help");
        CliDoc.Should().Contain($"### `granite {command}`\n\n```text\n{help}\n```\n", "docs/cli.md is regenerated with `granite docs-cli --out docs/cli.md`");
    }

    public static TheoryData<string> CommandNames() => new(Commands);

    [Fact]
    public void DocsCliMd_EndsWithTheGeneratedReference()
    {
        var doc = CliDoc;
        int at = doc.IndexOf(GraniteCli.DocsMarker, StringComparison.Ordinal);
        at.Should().BeGreaterThan(0, "docs/cli.md has hand-written text, then the marker line");
        doc[at..].Should().Be(GraniteCli.CommandReference(), "run `granite docs-cli --out docs/cli.md` after changing an option");
    }

    [Fact]
    public async Task RootHelp_ListsTheCommands_NoArgumentsIsAUsageError()
    {
        var (code, output, _) = await Run("--help");
        code.Should().Be(0);
        foreach (var c in Commands) output.Should().Contain("  " + c + " ");
        var none = await Run();
        none.Code.Should().Be(2, "no command");
        none.Out.Should().Be(output);
        var help = await Run("help");
        help.Code.Should().Be(0);
        help.Out.Should().Be(output);
        (await Run("help", "generate")).Out.Should().Be((await Run("generate", "--help")).Out);
    }

    [Fact]
    public async Task HelpShowsDefaultsAndRequiredOptions()
    {
        var generate = GraniteCli.HelpText("generate");
        generate.Should().Contain("--model <DIR> (REQUIRED)").And.Contain("--ids <1,2,3>").And.Contain("--special");
        generate.Should().MatchRegex(@"--max-tokens <N> +most new tokens \[default: 64\]");
        generate.Should().Contain("--expert-budget <off|BYTES|N%>").And.Contain("[default: off]");
        var train = GraniteCli.HelpText("train-demo");
        train.Should().MatchRegex(@"--steps <N> +optimizer steps \[default: 4000\]").And.MatchRegex(@"--layers <mmamma> [^\n]*\[default: mmamma\]");
        train.Should().MatchRegex(@"--lr <X> +peak learning rate \[default: 0\.0025\]");
        (await Run("bench", "-h")).Out.Should().Contain("--sessions <K>").And.Contain("--tokenizer").And.Contain("--synthetic <h-tiny>");
    }

    [Theory]
    [InlineData(new[] { "logits", "--model", "@FIXTURE", "--ids" }, "granite: option --ids needs a value")]
    [InlineData(new[] { "logits", "--model", "@FIXTURE", "--ids", "1", "extra" }, "granite: unexpected argument 'extra'")]
    [InlineData(new[] { "logits", "--model", "@FIXTURE", "--ids", "1", "--bogus=3" }, "granite: unknown option --bogus")]
    [InlineData(new[] { "logits", "--model", "@FIXTURE", "--ids", "1", "--greedy", "-1" }, "granite: option --greedy must be an integer >= 0 (got '-1')")]
    [InlineData(new[] { "generate", "--model", "@FIXTURE", "--max-tokens", "many", "--prompt", "x" }, "granite: option --max-tokens must be an integer >= 1 (got 'many')")]
    [InlineData(new[] { "generate", "--model", "@FIXTURE" }, "granite: give exactly one of --ids or --prompt")]
    [InlineData(new[] { "generate", "--model", "@FIXTURE", "--prompt", "x", "--top-p", "0,5" }, "granite: option --top-p must be a number (got '0,5')")]
    [InlineData(new[] { "tokenize", "--model", "@FIXTURE" }, "granite: option --text is required")]
    [InlineData(new[] { "bench", "--tokenizer", "--model", "@FIXTURE", "--threads", "2" }, "granite: option --threads does not apply to bench --tokenizer")]
    [InlineData(new[] { "bench", "--model", "@FIXTURE", "--megabytes", "2" }, "granite: option --megabytes needs --tokenizer")]
    [InlineData(new[] { "bench", "--model", "@FIXTURE", "--synthetic", "h-tiny" }, "granite: give exactly one of --model or --synthetic")]
    [InlineData(new[] { "bench", "--synthetic", "h-tiny", "--sessions", "65" }, "granite: --sessions is at most 64")]
    [InlineData(new[] { "train-demo", "--out", "/tmp/never-trained", "--layers", "am" }, "granite: option --layers must be a string of m (Mamba) and a (attention) that starts with m (got 'am')")]
    [InlineData(new[] { "train-demo", "--out", "/tmp/never-trained", "--hidden", "48" }, "granite: option --hidden must be a multiple of 32 (got 48)")]
    [InlineData(new[] { "train-demo", "--out", "/tmp/never-trained", "--minutes", "0" }, "granite: option --minutes must be > 0")]
    [InlineData(new[] { "--model", "x" }, "granite: unknown command '--model' (try 'granite --help')")]
    [InlineData(new[] { "generate", "--model", "@FIXTURE", "--prompt", "x", "--seed", "1", "--seed", "2" }, "granite: option --seed given twice")]
    public async Task ParseErrorsAreOneLineWithExitCode2(string[] args, string expected)
    {
        var resolved = args.Select(a => a == "@FIXTURE" ? Fixtures.Dir("tiny-h-moe") : a).ToArray();
        var (code, output, err) = await Run(resolved);
        code.Should().Be(2);
        output.Should().BeEmpty("a parse error runs nothing");
        err.TrimEnd('\n').Should().Be(expected);
    }

    [Fact]
    public async Task GeneratePrompt_IsTheTemplatedUserTurn_SameAsGivingItsIds()
    {
        var file = Path.Combine(Path.GetTempPath(), $"granite-conv-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"add_generation_prompt\":true}");
        try
        {
            var (pcode, pout, perr) = await Run("prompt", "--model", Fixtures.Dir("tiny-h-moe"), "--conversation", file, "--json");
            pcode.Should().Be(0, perr);
            var ids = System.Text.Json.JsonDocument.Parse(pout).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            ids.Should().NotBeEmpty();
            var (code, output, err) = await Run("generate", "--model", Fixtures.Dir("tiny-h-moe"), "--prompt", "Hello", "--max-tokens", "3", "--json");
            code.Should().Be(0, err);
            var byIds = await Run("generate", "--model", Fixtures.Dir("tiny-h-moe"), "--ids", string.Join(",", ids), "--max-tokens", "3", "--json");
            byIds.Code.Should().Be(0, byIds.Err);
            var j = System.Text.Json.JsonDocument.Parse(output).RootElement;
            j.GetProperty("prompt_tokens").GetInt32().Should().Be(ids.Length);
            output.Should().Be(byIds.Out);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public async Task ValuesAreLiteral_NoResponseFiles_AndVerboseIsAcceptedAnywhere()
    {
        var (code, output, err) = await Run("tokenize", "--model", Fixtures.Dir("tiny-h-moe"), "--text", "@not-a-response-file", "--json", "--verbose");
        code.Should().Be(0, err);
        var (code2, output2, _) = await Run("--verbose", "tokenize", "--model", Fixtures.Dir("tiny-h-moe"), "--text=@not-a-response-file", "--json");
        code2.Should().Be(0);
        output2.Should().Be(output).And.StartWith("{\"ids\":[");
    }
}
