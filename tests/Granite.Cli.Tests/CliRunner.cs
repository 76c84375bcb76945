namespace Granite.Cli.Tests;

/// <summary>Runs the <c>granite</c> command line in-process with captured standard output and error.</summary>
internal static class CliRunner
{
    /// <summary>Runs <c>granite args…</c>; returns the exit code and everything written to stdout and stderr.</summary>
    public static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = await GraniteCli.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
