using System.Text.Json.Nodes;
using Granite.Core.Configuration;
using Granite.Core.Experts;
using Granite.Core.Modeling;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Modeling;

/// <summary>config.json sizes are checked against the checkpoint's tensor headers before anything is allocated (issue #14).</summary>
public class HostileConfigTests
{
    public HostileConfigTests() => GraniteRuntime.EnsureLoaded();

    /// <summary>Huge sizes that used to allocate hundreds of GB (or loop) now fail at once, naming config.json and the field.</summary>
    [Theory]
    [InlineData("vocab_size", 1_000_000_000L, "vocab_size")]
    [InlineData("intermediate_size", 1_000_000_000L, "intermediate_size")]
    [InlineData("shared_intermediate_size", 2_000_000_000L, "shared_intermediate_size")]
    [InlineData("num_local_experts", 100_000L, "num_local_experts")]
    [InlineData("mamba_d_state", 1_000_000_000L, "mamba_d_state")]
    [InlineData("mamba_d_conv", 1_000_000_000L, "mamba_d_conv")]
    [InlineData("num_hidden_layers", 2_147_483_647L, "num_hidden_layers")]
    [InlineData("num_hidden_layers", 7L, "num_hidden_layers")]
    [InlineData("hidden_size", 65_536L, "hidden_size")]
    [InlineData("num_key_value_heads", 4L, "num_key_value_heads")]
    [InlineData("mamba_n_heads", 4L, "mamba_n_heads")]
    public void OversizedOrWrongField_IsRejectedBeforeAllocation_NamingConfigAndField(string field, long value, string named)
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-h-moe");
        try
        {
            var cfg = Path.Combine(dir, "config.json");
            var root = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
            root[field] = value;
            if (field == "num_hidden_layers") root.Remove("layer_types");
            if (field == "hidden_size") root.Remove("mamba_d_head");
            if (field == "mamba_n_heads") root.Remove("mamba_d_head");
            File.WriteAllText(cfg, root.ToJsonString());
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var act = () => GraniteModel.Load(dir);
            var ex = act.Should().Throw<InvalidDataException>().Which;
            ex.Message.Should().Contain("config.json").And.Contain($"'{named}'");
            ex.Message.Should().NotContain("\n");
            (GC.GetTotalAllocatedBytes(precise: true) - before).Should().BeLessThan(64L << 20, "nothing sized by the field was allocated");
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Fact]
    public void LayerKindDisagreeingWithTheCheckpoint_NamesLayerTypes()
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-h-moe");
        try
        {
            var cfg = Path.Combine(dir, "config.json");
            var root = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
            root["layer_types"] = new JsonArray("mamba", "mamba", "mamba", "mamba", "mamba", "attention");
            File.WriteAllText(cfg, root.ToJsonString());
            var act = () => GraniteModel.Load(dir);
            act.Should().Throw<InvalidDataException>().WithMessage("*config.json: field 'layer_types[2]' is \"mamba\" but the checkpoint's layer 2 is an attention layer*");
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Theory]
    [InlineData("I16", 2)]
    [InlineData("U8", 1)]
    [InlineData("BOOL", 1)]
    [InlineData("I32", 4)]
    public void IntegerWeights_AreRejected(string dtype, int size)
    {
        var dir = SafetensorsTestWriter.CopyFixture("tiny-h-moe");
        try
        {
            var file = Path.Combine(dir, "model.safetensors");
            var entries = SafetensorsTestWriter.Read(file);
            var i = entries.FindIndex(e => e.Name == "model.layers.0.mamba.D");
            var e = entries[i];
            entries[i] = e with { DType = dtype, Data = new byte[e.Shape.Aggregate(1L, (a, b) => a * b) * size] };
            SafetensorsTestWriter.Write(file, entries);
            var act = () => GraniteModel.Load(dir);
            act.Should().Throw<InvalidDataException>()
                .WithMessage($"*model.safetensors: tensor 'model.layers.0.mamba.D' has dtype {dtype}; weights must be floating point*");
        }
        finally { SafetensorsTestWriter.Delete(dir); }
    }

    [Fact]
    public void MemoryPlan_CountsConvertedWeightsAsPrivate_AndZeroCopyAsMapped()
    {
        var dir = Golden.FixtureDir("tiny-h-moe");
        var c = GraniteConfig.Load(dir);
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        ckpt.GetInfo("model.embed_tokens.weight").DType.Should().Be(ScalarType.BFloat16);
        var stored = ModelPreflight.Check(c, ckpt, dir, ScalarType.BFloat16);
        stored.ParameterBytes.Should().Be(2 * c.TotalParameterCount);
        stored.MappedBytes.Should().Be(stored.ParameterBytes);
        stored.AllocatedBytes.Should().Be(0);
        var f32 = ModelPreflight.Check(c, ckpt, dir, ScalarType.Float32);
        f32.AllocatedBytes.Should().Be(4 * c.TotalParameterCount);
        f32.MappedBytes.Should().Be(0);
        var offloaded = ModelPreflight.Check(c, ckpt, dir, ScalarType.Float32, ExpertOffloadOptions.Parse("50%"));
        offloaded.AllocatedBytes.Should().Be(4 * (c.TotalParameterCount - c.ExpertParameterCount) + ExpertOffloadPlan.Create(c, ScalarType.Float32, ExpertOffloadOptions.Parse("50%")).MaxResidentBytes);
        f32.AvailableBytes.Should().BePositive();
    }

    [Fact]
    public void WeightsLargerThanAvailableMemory_AreRefusedWithAClearMessage()
    {
        var plan = new ModelMemoryPlan(ParameterBytes: 8_000, MappedBytes: 0, AllocatedBytes: 8_000, AvailableBytes: 1_000, ScalarType.Float32);
        var act = () => ModelPreflight.EnsureFits(plan, "/m");
        act.Should().Throw<InsufficientMemoryException>().WithMessage("/m: the weights need 8,000 bytes of memory as Float32*only 1,000 bytes are available*");
        ModelPreflight.EnsureFits(plan with { AvailableBytes = 8_000 }, "/m"); // fits exactly
    }

    [Fact]
    public void DefaultedFields_AreListed_AndAreHuggingFaceDefaults()
    {
        var c = GraniteConfig.Load(Golden.FixtureDir("tiny-h-moe"));
        c.DefaultedFields.Should().Equal("time_step_limit");
        var bare = GraniteConfig.Parse("""{"model_type": "granitemoehybrid", "num_hidden_layers": 2}""");
        bare.DefaultedFields.Should().NotContain("num_hidden_layers").And.Contain("vocab_size").And.Contain("layer_types").And.Contain("mamba_d_head");
        // GraniteMoeHybridConfig.__init__ defaults (transformers configuration_granitemoehybrid.py).
        bare.VocabSize.Should().Be(32000);
        bare.HiddenSize.Should().Be(4096);
        bare.IntermediateSize.Should().Be(11008);
        bare.SharedIntermediateSize.Should().Be(1024);
        bare.NumAttentionHeads.Should().Be(32);
        bare.NumKeyValueHeads.Should().Be(32);
        bare.MaxPositionEmbeddings.Should().Be(2048);
        bare.RmsNormEps.Should().Be(1e-6);
        bare.BosTokenId.Should().Be(1);
        bare.EosTokenIds.Should().Equal(2);
        bare.PadTokenId.Should().BeNull();
        bare.TieWordEmbeddings.Should().BeFalse();
        bare.RopeTheta.Should().Be(10000);
        bare.NumLocalExperts.Should().Be(8);
        bare.NumExpertsPerTok.Should().Be(2);
        bare.PositionEmbeddingType.Should().BeNull();
        bare.LayerTypes.Should().Equal(LayerKind.Mamba, LayerKind.Mamba);
        bare.MambaNHeads.Should().Be(128);
        bare.MambaNGroups.Should().Be(1);
        bare.MambaDState.Should().Be(256);
        bare.MambaDHead.Should().Be(2 * 4096 / 128);
        bare.MambaDConv.Should().Be(4);
        bare.MambaExpand.Should().Be(2);
        bare.MambaChunkSize.Should().Be(256);
        bare.MambaConvBias.Should().BeTrue();
        bare.MambaProjBias.Should().BeFalse();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(2_147_483_647)]
    public void LayerCountOutOfRange_IsRejectedBeforeSizingAnything(int layers)
    {
        var act = () => GraniteConfig.Parse($$"""{"num_hidden_layers": {{layers}}}""", "/x/config.json");
        act.Should().Throw<InvalidDataException>().WithMessage($"/x/config.json: field 'num_hidden_layers' is {layers}, expected 1..*");
    }

    [Fact]
    public void DuplicateKeys_AreAnInvalidDataException_NamingTheFile()
    {
        // AFL reproducer (tests/Granite.Fuzz/regressions/config): JsonObject threw ArgumentException on the repeated key.
        var act = () => GraniteConfig.Parse("""{"model_type": "granitemoehybrid", "inige": 0.1, "num_hidden_layers": 2, "inige": null}""", "/m/config.json");
        act.Should().Throw<InvalidDataException>().WithMessage("/m/config.json: not valid JSON*inige*");
    }

    [Theory]
    [InlineData("""{"model_type": "\ud800", "num_hidden_layers": 1}""")]
    [InlineData("""{"\udc00": 1, "num_hidden_layers": 1}""")]
    [InlineData("""{"num_hidden_layers": 2, "layer_types": ["\ud800", "mamba"]}""")]
    public void EscapedUnpairedSurrogates_AreInvalidData(string json)
    {
        var act = () => GraniteConfig.Parse(json, "/m/config.json");
        act.Should().Throw<InvalidDataException>().WithMessage("/m/config.json: *unpaired surrogate*");
    }

    [Fact]
    public void ThreadsAreBounded()
    {
        var act = () => GraniteModel.Load(Golden.FixtureDir("tiny-h-moe"), new GraniteModelOptions { Threads = 100_000 });
        act.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*Threads must be 0*");
    }
}
