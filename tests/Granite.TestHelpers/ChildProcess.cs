using System.Diagnostics;

namespace Granite.TestHelpers;

/// <summary>What a finished child process returned.</summary>
/// <param name="ExitCode">The process exit code.</param>
/// <param name="Stdout">Everything it wrote to standard output.</param>
/// <param name="Stderr">Everything it wrote to standard error.</param>
public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    /// <summary>Both streams, for assertion messages.</summary>
    public override string ToString() => $"exit code {ExitCode}; stdout: {Stdout}; stderr: {Stderr}";
}

/// <summary>Runs a .NET program (<c>dotnet some.dll args…</c>) as a child process of the test, with a time limit.</summary>
public static class ChildProcess
{
    /// <summary>The default limit: generous for a 2-core machine shared with other builds.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(3);

    /// <summary>
    /// Runs <c>dotnet <paramref name="dll"/> <paramref name="args"/></c> with <paramref name="stdin"/> as its standard
    /// input (none: closed at once) and both output streams captured. A process still running after
    /// <paramref name="timeout"/> is killed (with its children) and reported as a <see cref="TimeoutException"/> carrying
    /// what it wrote so far.
    /// </summary>
    public static async Task<ProcessResult> RunDotnetAsync(string dll, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null)
    {
        if (!System.IO.File.Exists(dll)) throw new FileNotFoundException($"The child program {dll} is not built next to the tests.", dll);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("dotnet did not start");
        if (stdin is not null) await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var limit = timeout ?? DefaultTimeout;
        using var cts = new CancellationTokenSource(limit);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
            throw new TimeoutException($"dotnet {Path.GetFileName(dll)} {string.Join(' ', psi.ArgumentList.Skip(1))} did not exit within {limit} (stdout: {await stdout}; stderr: {await stderr})");
        }
        return new ProcessResult(p.ExitCode, await stdout, await stderr);
    }
}
