using Granite.Core.Configuration;

namespace Granite.Core.Tests.Configuration;

public class GraniteConfigTests
{

    internal static string HSmallJson(string extra = "") => $$"""
    {
      "model_type": "granitemoehybrid", "vocab_size": 100352, "hidden_size": 4096, "num_hidden_layers": 40,
      "layer_types": [{{string.Join(",", Enumerable.Range(0, 40).Select(i => i is 5 or 15 or 25 or 35 ? "\"attention\"" : "\"mamba\""))}}],
      "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 768, "shared_intermediate_size": 1536,
      "num_local_experts": 72, "num_experts_per_tok": 10, "mamba_n_heads": 128, "mamba_d_head": 64, "mamba_d_state": 128,
      "mamba_n_groups": 1, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 256, "tie_word_embeddings": true,
      "embedding_multiplier": 12, "attention_multiplier": 0.0078125, "residual_multiplier": 0.22, "logits_scaling": 16,
      "rms_norm_eps": 1e-5, "position_embedding_type": "nope", "time_step_limit": [0.0, Infinity],
      "bos_token_id": 100257, "eos_token_id": 100257, "pad_token_id": 100256, "max_position_embeddings": 131072{{extra}}
    }
    """;

    [Theory]
    [InlineData("tiny-h-moe", 6, 4, 2, 8)]
    [InlineData("tiny-h-dense", 6, 5, 1, 0)]
    [InlineData("tiny-dense", 4, 0, 4, 0)]
    public void LoadsFixtureConfigs(string fixture, int layers, int mamba, int attention, int experts)
    {
        var c = GraniteConfig.Load(Fixtures.Dir(fixture));
        c.NumHiddenLayers.Should().Be(layers);
        c.MambaLayerCount.Should().Be(mamba);
        c.AttentionLayerCount.Should().Be(attention);
        c.NumLocalExperts.Should().Be(experts);
        c.EosTokenIds.Should().Equal(507);
        c.HiddenSize.Should().Be(64);
        c.EmbeddingMultiplier.Should().Be(12.0);
    }

    [Fact]
    public void HSmallParameterCountMatchesSpec()
    {
        var c = GraniteConfig.Parse(HSmallJson());
        c.TotalParameterCount.Should().Be(32_207_337_984L);
        c.ActiveParameterCount.Should().Be(8_803_121_664L);
        c.TimeStepLimit.Max.Should().Be(double.PositiveInfinity);
        c.MambaInProjSize.Should().Be(16768);
        c.KvBytesPerToken(2).Should().Be(16384);
        c.MambaStateBytesPerSequence(2, 2).Should().Be(77_930_496L);
    }

    [Fact]
    public void AcceptsLayersBlockTypeAliasAndAutoHeadDim()
    {
        var json = HSmallJson().Replace("\"layer_types\"", "\"layers_block_type\"").Replace("\"mamba_d_head\": 64", "\"mamba_d_head\": \"auto\"");
        var c = GraniteConfig.Parse(json);
        c.AttentionLayerCount.Should().Be(4);
        c.MambaDHead.Should().Be(64);
    }

    [Theory]
    [InlineData("\"hidden_size\": 4096", "\"hidden_size\": \"big\"", "hidden_size")]
    [InlineData("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 7", "num_key_value_heads")]
    [InlineData("\"num_hidden_layers\": 40", "\"num_hidden_layers\": 41", "layer_types")]
    [InlineData("\"mamba_d_head\": 64", "\"mamba_d_head\": 60", "mamba_d_head")]
    [InlineData("\"num_experts_per_tok\": 10", "\"num_experts_per_tok\": 100", "num_experts_per_tok")]
    [InlineData("\"layer_types\": [\"mamba\"", "\"layer_types\": [\"mamba2\"", "layer_types[0]")]
    public void ValidationNamesFieldAndFile(string from, string to, string field)
    {
        var act = () => GraniteConfig.Parse(HSmallJson().Replace(from, to), "/models/x/config.json");
        act.Should().Throw<InvalidDataException>().WithMessage($"*/models/x/config.json*'{field}'*");
    }

    [Fact]
    public void MalformedJsonIsReported()
    {
        var act = () => GraniteConfig.Parse("{ \"hidden_size\": ", "bad.json");
        act.Should().Throw<InvalidDataException>().WithMessage("*bad.json*malformed*");
    }
}

public class GraniteConfigRoundTripTests
{
    [Fact]
    public void ToJsonRoundTripsEveryField()
    {
        var c = GraniteConfig.HTinyShaped(12) with { SourcePath = "x" };
        var back = GraniteConfig.Parse(c.ToJson(), "x");
        back.Should().BeEquivalentTo(c);
        back.AttentionLayerCount.Should().Be(1);
        back.ExpertParameterCount.Should().Be(12L * 64 * 3 * 512 * 1536);
    }

    [Fact]
    public void BenchmarkShapesAtFortyLayersHaveTheRealParameterCounts()
    {
        // granite-spec §5 totals (tied embeddings counted once).
        GraniteConfig.HTinyShaped(40).TotalParameterCount.Should().Be(6_939_037_248);
        GraniteConfig.MicroShaped(40).TotalParameterCount.Should().Be(3_402_836_480);
        var micro = GraniteConfig.MicroShaped(2) with { SourcePath = "m" };
        micro.Validate();
        GraniteConfig.Parse(micro.ToJson(), "m").Should().BeEquivalentTo(micro);
        micro.HeadDim.Should().Be(64);
        micro.AttentionMultiplier.Should().Be(1.0 / micro.HeadDim);
        micro.LogitsScaling.Should().Be(micro.HiddenSize / 256.0);
        var none = () => GraniteConfig.MicroShaped(0);
        none.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*layers*");
        var negative = () => GraniteConfig.HTinyShaped(-1);
        negative.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*layers*");
    }
}
