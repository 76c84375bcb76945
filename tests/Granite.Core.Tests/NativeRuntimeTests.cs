using Granite.Core;
using TorchSharp;

namespace Granite.Core.Tests;

public class NativeRuntimeTests
{
    [Fact]
    public void TorchSharpLoadsAndComputes()
    {
        GraniteRuntime.EnsureLoaded();
        using var a = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var b = torch.ones(3, 2);
        using var c = a.matmul(b);
        c.data<float>().ToArray().Should().Equal(3f, 3f, 12f, 12f);
        GraniteRuntime.LoadReport.Should().NotBe("not loaded yet");
        Console.WriteLine(GraniteRuntime.LoadReport);
    }
}
