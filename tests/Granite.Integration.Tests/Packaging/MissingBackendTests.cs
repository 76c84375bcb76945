using System.Text.Json.Nodes;
using Granite.Core;

namespace Granite.Integration.Tests.Packaging;

/// <summary>
/// An application that references Granite (which references only TorchSharp) but no TorchSharp backend package gets an
/// error naming the package to add, not an opaque DllNotFoundException. Real process: the <c>granite</c> CLI deployed
/// next to these tests is copied without LibTorch, and its <c>granite.deps.json</c> without the backend packages —
/// exactly what a consumer's build output looks like without <c>TorchSharp-cpu</c>.
/// </summary>
public sealed class MissingBackendTests
{
    private static readonly string[] BackendPackages = ["TorchSharp-cpu", "libtorch-cpu", "libtorch-cpu-linux-x64", "libtorch-cpu-osx-arm64", "libtorch-cpu-win-x64"];

    [Fact]
    public void The_Backend_Is_Found_Where_It_Is_Deployed()
    {
        GraniteRuntime.EnsureLoaded();
        GraniteRuntime.FindLibTorch().Should().NotBeNull("the tests reference TorchSharp-cpu");
        GraniteRuntime.MissingBackendMessage().Should().Contain("TorchSharp-cpu").And.Contain("TorchSharp-cuda-windows").And.Contain("0.107.0")
            .And.Contain("README section \"Choosing the TorchSharp backend\"");
    }

    [Fact]
    public async Task An_Application_Without_A_Backend_Package_Is_Told_Which_Package_To_Add()
    {
        if (!OperatingSystem.IsLinux()) return; // the copy below strips Linux natives (*.so); CI runs on Linux
        string bin = AppContext.BaseDirectory;
        var app = Directory.CreateTempSubdirectory("granite-nobackend-");
        try
        {
            foreach (var file in Directory.EnumerateFiles(bin))
            {
                string name = Path.GetFileName(file);
                // LibTorch's libraries come from the backend packages; TorchSharp's own glue library stays.
                if (name.Contains(".so") && name != "libLibTorchSharp.so") continue;
                File.Copy(file, Path.Combine(app.FullName, name));
            }
            File.Exists(Path.Combine(app.FullName, "libtorch_cpu.so")).Should().BeFalse();
            StripBackendPackages(Path.Combine(app.FullName, "granite.deps.json"));

            // Before the check this crashed (exit 134: TorchSharp's unhandled "doesn't contain a reference to
            // libtorch-cpu-linux-x64", after copying ~480 MB of natives from the NuGet cache into bin/cpu).
            var result = await ChildProcess.RunDotnetAsync(Path.Combine(app.FullName, "granite.dll"),
                ["generate", "--model", Fixtures.Dir(Fixtures.TinyHMoe), "--prompt", "hi", "--max-tokens", "1"]);
            string err = result.Stderr;

            result.ExitCode.Should().Be(2, $"a clear one-line error, not a crash ({result})");
            err.Should().Contain("TorchSharp native backend (LibTorch) is missing").And.Contain("TorchSharp-cpu")
                .And.Contain("Choosing the TorchSharp backend");
            err.Should().NotContain("DllNotFoundException");
            Directory.Exists(Path.Combine(app.FullName, "cpu")).Should().BeFalse("TorchSharp's fallback copy of ~480 MB of natives never started");
        }
        finally
        {
            app.Delete(recursive: true);
        }
    }

    /// <summary>Removes the backend packages from a deps.json, as if the application never referenced them.</summary>
    private static void StripBackendPackages(string depsJson)
    {
        var root = JsonNode.Parse(File.ReadAllText(depsJson))!.AsObject();
        bool IsBackend(string key) => BackendPackages.Any(b => key.StartsWith(b + "/", StringComparison.Ordinal));
        int removed = 0;
        foreach (var (_, target) in root["targets"]!.AsObject())
        {
            var t = target!.AsObject();
            foreach (var key in t.Select(kv => kv.Key).Where(IsBackend).ToList()) { t.Remove(key); removed++; }
            foreach (var (_, lib) in t)
                if (lib?["dependencies"] is JsonObject deps)
                    foreach (var b in BackendPackages) deps.Remove(b);
        }
        var libraries = root["libraries"]!.AsObject();
        foreach (var key in libraries.Select(kv => kv.Key).Where(IsBackend).ToList()) libraries.Remove(key);
        removed.Should().BeGreaterThan(0, "the CLI's deps.json lists the CPU backend packages");
        File.WriteAllText(depsJson, root.ToJsonString());
    }
}
