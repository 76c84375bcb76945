using System.Diagnostics;
using Granite.Core.Modeling;
using TorchSharp;
using Xunit.Abstractions;

namespace Granite.Core.Tests.Modeling;

public class ScratchTiming(ITestOutputHelper o)
{
    [Fact]
    public void Bf16Layers()
    {
        GraniteRuntime.EnsureLoaded();
        foreach (var fx in new[] { "tiny-h-moe", "tiny-h-dense", "tiny-dense" })
        {
            var g = Golden.Load(fx);
            using var model = GraniteModel.Load(Golden.FixtureDir(fx), new GraniteModelOptions { Threads = 1, WeightDtype = WeightDtypePolicy.BFloat16 });
            using var state = model.CreateState();
            var hidden = new List<torch.Tensor>();
            model.Forward(g.DebugIds, state, false, hidden).Dispose();
            for (int i = 0; i < hidden.Count; i++)
            {
                var rows = ModelParityTests.Rows(hidden[i]);
                double worst = 0, mag = 0;
                for (int t = 0; t < rows.Length; t++) { worst = Math.Max(worst, Compare.Close(rows[t], g.HiddenStates[i][t], 0, 0).MaxAbs); mag = Math.Max(mag, g.HiddenStates[i][t].Max(Math.Abs)); }
                o.WriteLine($"{fx} bf16 hidden[{i}] max|Δ| = {worst:E3} max|x| = {mag:F3}");
            }
        }
    }
}
