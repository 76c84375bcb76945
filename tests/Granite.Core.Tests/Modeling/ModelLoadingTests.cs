using Granite.Core.Kernels;
using Granite.Core.Configuration;
using Granite.Core.Modeling;
using Granite.Core.Tests.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

public class ModelLoadingTests
{
    public ModelLoadingTests() => GraniteRuntime.EnsureLoaded();

    [Fact]
    public void HSmallModuleTreeOnMetaDeviceHasTheSpecParameterCount()
    {
        var c = GraniteConfig.Parse(GraniteConfigTests.HSmallJson());
        using var m = new GraniteCausalLM(c, ScalarType.BFloat16, torch.META, GraniteKernels.Create(null, 1));
        var ps = m.named_parameters().ToList();
        ps.Sum(p => p.parameter.numel()).Should().Be(32_207_337_984L).And.Be(c.TotalParameterCount);
        ps.Should().OnlyContain(p => p.parameter.device.type == DeviceType.META);
        var shapes = ps.ToDictionary(p => p.name, p => p.parameter.shape);
        shapes["model.embed_tokens.weight"].Should().Equal(100352, 4096);
        shapes["model.layers.0.mamba.in_proj.weight"].Should().Equal(16768, 4096);
        shapes["model.layers.0.mamba.conv1d.weight"].Should().Equal(8448, 1, 4);
        shapes["model.layers.0.mamba.A_log"].Should().Equal(128);
        shapes["model.layers.5.self_attn.k_proj.weight"].Should().Equal(1024, 4096);
        shapes["model.layers.39.block_sparse_moe.input_linear.weight"].Should().Equal(72, 1536, 4096);
        shapes["model.layers.39.block_sparse_moe.router.layer.weight"].Should().Equal(72, 4096);
        shapes.Keys.Should().NotContain("lm_head.weight").And.NotContain("model.layers.5.mamba.in_proj.weight");
        m.state_dict().Keys.Should().Contain("model.layers.39.shared_mlp.output_linear.weight");
    }

    [Theory]
    [InlineData("tiny-h-moe")]
    [InlineData("tiny-h-moe-sharded")]
    [InlineData("tiny-h-dense")]
    [InlineData("tiny-dense")]
    public void FixtureLoadsWithNothingMissingOrUnexpected(string fixture)
    {
        using var model = GraniteModel.Load(Golden.FixtureDir(fixture));
        model.LoadReport.Missing.Should().BeEmpty();
        model.LoadReport.Unexpected.Should().BeEmpty();
        model.LoadReport.ParameterCount.Should().Be(model.Config.TotalParameterCount);
        model.WeightDtype.Should().Be(model.LoadReport.StoredDtype);
    }

    [Fact]
    public void MissingTensorIsReportedWithNameAndFolder()
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-h-moe");
        try
        {
            var file = Path.Combine(dir, "model.safetensors");
            SafetensorsTestWriter.Write(file, SafetensorsTestWriter.Read(file).Where(e => e.Name != "model.layers.1.mamba.A_log"));
            var act = () => GraniteModel.Load(dir);
            var ex = act.Should().Throw<InvalidDataException>().Which;
            ex.Message.Should().Contain("model.layers.1.mamba.A_log").And.Contain(dir);
            ((ModelLoadReport)ex.Data["ModelLoadReport"]!).Missing.Should().Equal("model.layers.1.mamba.A_log");
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Fact]
    public void UntiedModelRequiresLmHead()
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-dense");
        try
        {
            var file = Path.Combine(dir, "model.safetensors");
            SafetensorsTestWriter.Write(file, SafetensorsTestWriter.Read(file).Where(e => e.Name != "lm_head.weight"));
            var act = () => GraniteModel.Load(dir);
            act.Should().Throw<InvalidDataException>().WithMessage("*lm_head.weight*");
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Fact]
    public void UnexpectedTensorsAreListedAndTiedLmHeadIsAccepted()
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-h-moe");
        try
        {
            var file = Path.Combine(dir, "model.safetensors");
            var entries = SafetensorsTestWriter.Read(file);
            var embed = entries.Single(e => e.Name == "model.embed_tokens.weight");
            entries.Add(embed with { Name = "lm_head.weight" });
            entries.Add(new SafetensorsTestWriter.Entry("model.layers.0.mamba.rotary_emb.inv_freq", "F32", new long[] { 2 }, new byte[8]));
            SafetensorsTestWriter.Write(file, entries);
            using var model = GraniteModel.Load(dir);
            model.LoadReport.Unexpected.Should().Equal("model.layers.0.mamba.rotary_emb.inv_freq");
            model.LoadReport.IgnoredTiedLmHead.Should().BeTrue();
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Fact]
    public void WrongShapeNamesTensorAndBothShapes()
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-h-moe");
        try
        {
            var cfg = Path.Combine(dir, "config.json");
            File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"shared_intermediate_size\": 64", "\"shared_intermediate_size\": 32"));
            var act = () => GraniteModel.Load(dir);
            act.Should().Throw<InvalidDataException>()
                .WithMessage("*model.layers.0.shared_mlp.input_linear.weight*[128, 64]*[64, 64]*");
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Fact]
    public void MissingFolderIsReported()
    {
        var act = () => GraniteModel.Load(Path.Combine(Path.GetTempPath(), "no-such-granite-model"));
        act.Should().Throw<DirectoryNotFoundException>().WithMessage("*no-such-granite-model*");
    }
}
