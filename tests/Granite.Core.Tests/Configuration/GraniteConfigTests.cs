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
    public void ReaderAcceptsCommentsTrailingCommasPythonLiteralsAndNestedRopeTheta()
    {
        var c = GraniteConfig.Parse("""
        // written by hand
        {
          "num_hidden_layers": 2, /* two layers */
          "time_step_limit": [0.001, Infinity],
          "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"},
          "pad_token_id": null,
          "mamba_d_head": null,
        }
        """, "hand.json");
        c.TimeStepLimit.Should().Be((0.001, double.PositiveInfinity));
        c.RopeTheta.Should().Be(5e5);
        c.PadTokenId.Should().BeNull();
        c.MambaDHead.Should().Be(2 * 4096 / 128, "null means auto, as when absent");
        c.DefaultedFields.Should().NotContain("rope_theta").And.NotContain("pad_token_id").And.NotContain("time_step_limit").And.Contain("vocab_size");
        var limits = GraniteConfig.Parse("""{"num_hidden_layers": 1, "time_step_limit": [-Infinity, NaN]}""").TimeStepLimit;
        limits.Min.Should().Be(double.NegativeInfinity);
        double.IsNaN(limits.Max).Should().BeTrue();
    }

    [Theory]
    [InlineData("[1, 2]", "x.json: the root is not a JSON object")]
    [InlineData("null", "x.json: the root is not a JSON object")]
    [InlineData("""{"num_hidden_layers": 2, "hidden_size": [64,  64]}""", "x.json: field 'hidden_size' must be an integer (is [64,64])")]
    [InlineData("""{"num_hidden_layers": 2, "hidden_size": 64.5}""", "x.json: field 'hidden_size' must be an integer (is 64.5)")]
    [InlineData("""{"num_hidden_layers": 2, "tie_word_embeddings": "yes"}""", "x.json: field 'tie_word_embeddings' must be true or false (is \"yes\")")]
    [InlineData("""{"num_hidden_layers": 2, "eos_token_id": [1, "2"]}""", "x.json: field 'eos_token_id[1]' must be an integer")]
    [InlineData("""{"num_hidden_layers": 2, "time_step_limit": [0]}""", "x.json: field 'time_step_limit' must have two numbers")]
    [InlineData("""{"num_hidden_layers": 1, "layer_types": "mamba"}""", "x.json: field 'layer_types' must be a list of \"mamba\"/\"attention\"")]
    [InlineData("""{"num_hidden_layers": 2, "model_type": "llama"}""", "x.json: field 'model_type' is 'llama', expected 'granitemoehybrid'")]
    public void ReaderErrorsNameTheFileAndField(string json, string message)
    {
        var act = () => GraniteConfig.Parse(json, "x.json");
        act.Should().Throw<InvalidDataException>().Which.Message.Should().Be(message);
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
        var c = GraniteConfigPresets.HTinyShaped(12) with { SourcePath = "x" };
        var back = GraniteConfig.Parse(c.ToJson(), "x");
        back.Should().BeEquivalentTo(c);
        back.AttentionLayerCount.Should().Be(1);
        back.ExpertParameterCount.Should().Be(12L * 64 * 3 * 512 * 1536);
    }

    [Fact]
    public void BenchmarkShapesAtFortyLayersHaveTheRealParameterCounts()
    {
        // granite-spec §5 totals (tied embeddings counted once).
        GraniteConfigPresets.HTinyShaped(40).TotalParameterCount.Should().Be(6_939_037_248);
        GraniteConfigPresets.MicroShaped(40).TotalParameterCount.Should().Be(3_402_836_480);
        var micro = GraniteConfigPresets.MicroShaped(2) with { SourcePath = "m" };
        micro.Validate();
        GraniteConfig.Parse(micro.ToJson(), "m").Should().BeEquivalentTo(micro);
        micro.HeadDim.Should().Be(64);
        micro.AttentionMultiplier.Should().Be(1.0 / micro.HeadDim);
        micro.LogitsScaling.Should().Be(micro.HiddenSize / 256.0);
        var none = () => GraniteConfigPresets.MicroShaped(0);
        none.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*layers*");
        var negative = () => GraniteConfigPresets.HTinyShaped(-1);
        negative.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*layers*");
    }
}
