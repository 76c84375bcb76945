using Granite.Core.Experts;

namespace Granite.Core.Tests.Experts;

public class ExpertOffloadOptionsTests
{
    [Theory]
    [InlineData("off", false, null, null)]
    [InlineData("OFF", false, null, null)]
    [InlineData("25%", true, null, 0.25)]
    [InlineData("12.5%", true, null, 0.125)]
    [InlineData("100%", true, null, 1.0)]
    [InlineData("123456", true, 123456L, null)]
    [InlineData("2K", true, 2048L, null)]
    [InlineData("3m", true, 3L << 20, null)]
    [InlineData("1G", true, 1L << 30, null)]
    public void ParsesBudgets(string text, bool enabled, long? bytes, double? fraction)
    {
        var o = ExpertOffloadOptions.Parse(text);
        o.Enabled.Should().Be(enabled);
        o.BudgetBytes.Should().Be(bytes);
        o.BudgetFraction.Should().Be(fraction);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("0%")]
    [InlineData("150%")]
    [InlineData("abc")]
    [InlineData("1T")]
    [InlineData("99999999999999999999")]
    public void RejectsBadBudgets(string text)
    {
        var act = () => ExpertOffloadOptions.Parse(text);
        act.Should().Throw<FormatException>().WithMessage($"*'{text}'*");
    }

    [Fact]
    public void PlanSplitsTheBudgetOverLayers()
    {
        var c = new Granite.Core.Configuration.GraniteConfig { HiddenSize = 1536, IntermediateSize = 512, NumLocalExperts = 64, NumExpertsPerTok = 6, NumHiddenLayers = 4 };
        long eb = ExpertOffloadPlan.BytesPerExpert(c, TorchSharp.torch.ScalarType.BFloat16);
        eb.Should().Be(3L * 512 * 1536 * 2);
        ExpertOffloadPlan.Create(c, TorchSharp.torch.ScalarType.BFloat16, ExpertOffloadOptions.WithFraction(0.125)).CapacityPerLayer.Should().Be(8);
        ExpertOffloadPlan.Create(c, TorchSharp.torch.ScalarType.BFloat16, ExpertOffloadOptions.WithFraction(0.25)).CapacityPerLayer.Should().Be(16);
        ExpertOffloadPlan.Create(c, TorchSharp.torch.ScalarType.BFloat16, ExpertOffloadOptions.WithBudget(eb * 4 * 10 + eb)).CapacityPerLayer.Should().Be(10);
        ExpertOffloadPlan.Create(c, TorchSharp.torch.ScalarType.BFloat16, ExpertOffloadOptions.WithBudget(long.MaxValue / 2)).CapacityPerLayer.Should().Be(64);
        var p = ExpertOffloadPlan.Create(c, TorchSharp.torch.ScalarType.BFloat16, new ExpertOffloadOptions { Enabled = true, BudgetFraction = 0.5, MaxResidentExpertsPerLayer = 7 });
        p.CapacityPerLayer.Should().Be(7);
        p.MaxResidentBytes.Should().Be(7 * 4 * eb);
        p.TotalExpertBytes.Should().Be(64 * 4 * eb);
    }
}

public class WriteConfigTests
{
    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-dense")]
    [InlineData("tiny-dense")]
    public void WrittenConfigReadsBackEqual(string fixture)
    {
        var original = Granite.Core.Configuration.GraniteConfig.Load(Fixtures.Dir(fixture));
        var dir = Path.Combine(Path.GetTempPath(), "granite-writeconfig-" + Guid.NewGuid().ToString("N"));
        try
        {
            var path = Granite.Core.Weights.GraniteCheckpointLayout.WriteConfig(dir, original);
            var back = Granite.Core.Configuration.GraniteConfig.Load(path);
            back.LayerTypes.Should().Equal(original.LayerTypes);
            back.EosTokenIds.Should().Equal(original.EosTokenIds);
            (back with { LayerTypes = original.LayerTypes, EosTokenIds = original.EosTokenIds, SourcePath = original.SourcePath }).Should().Be(original);
        }
        finally { Directory.Delete(dir, true); }
    }
}
