using Granite.Core;
using Granite.Core.Configuration;
using Granite.Core.Weights;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Weights;

public class GraniteCheckpointLayoutTests
{
    public GraniteCheckpointLayoutTests() => GraniteRuntime.EnsureLoaded();

    // granite-4.0-h-tiny values from granite-spec.md §2.3.
    private const string HTinyJson = """
    {
      "model_type": "granitemoehybrid", "vocab_size": 100352, "hidden_size": 1536, "num_hidden_layers": 40,
      "layer_types": ["mamba","mamba","mamba","mamba","mamba","attention","mamba","mamba","mamba","mamba","mamba","mamba","mamba","mamba","mamba","attention","mamba","mamba","mamba","mamba","mamba","mamba","mamba","mamba","mamba","attention","mamba","mamba","mamba","mamba","mamba","mamba","mamba","mamba","mamba","attention","mamba","mamba","mamba","mamba"],
      "num_attention_heads": 12, "num_key_value_heads": 4, "intermediate_size": 512, "shared_intermediate_size": 1024,
      "num_local_experts": 64, "num_experts_per_tok": 6, "embedding_multiplier": 12, "attention_multiplier": 0.0078125,
      "residual_multiplier": 0.22, "logits_scaling": 6, "rms_norm_eps": 1e-5, "position_embedding_type": "nope",
      "mamba_n_heads": 48, "mamba_d_head": 64, "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_d_conv": 4,
      "mamba_expand": 2, "mamba_chunk_size": 256, "mamba_conv_bias": true, "mamba_proj_bias": false,
      "tie_word_embeddings": true, "bos_token_id": 100257, "eos_token_id": 100257, "pad_token_id": 100256,
      "max_position_embeddings": 131072, "torch_dtype": "bfloat16"
    }
    """;

    [Fact]
    public void HTinyLayoutMatchesSpecShapesAndParameterTotal()
    {
        var c = GraniteConfig.Parse(HTinyJson, "h-tiny");
        var specs = GraniteCheckpointLayout.Tensors(c, ScalarType.BFloat16).ToDictionary(s => s.Name);
        specs.Should().NotContainKey("lm_head.weight");
        specs["model.layers.0.mamba.in_proj.weight"].Shape.Should().Equal(6448, 1536);
        specs["model.layers.0.mamba.conv1d.weight"].Shape.Should().Equal(3328, 1, 4);
        specs["model.layers.5.self_attn.k_proj.weight"].Shape.Should().Equal(512, 1536);
        specs["model.layers.5.block_sparse_moe.input_linear.weight"].Shape.Should().Equal(64, 1024, 1536);
        specs["model.layers.39.block_sparse_moe.output_linear.weight"].Shape.Should().Equal(64, 1536, 512);
        specs.Keys.Count(k => k.Contains(".self_attn.q_proj.", StringComparison.Ordinal)).Should().Be(4);
        long total = specs.Values.Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b));
        total.Should().Be(6_939_037_248L, "granite-spec.md §3.4 total for h-tiny");
        specs.Values.Sum(s => s.ByteLength).Should().Be(2 * 6_939_037_248L);
    }

    [Fact]
    public void RandomCheckpointForAFixtureConfigIsCompleteAndPlausible()
    {
        using var tmp = new TempDir();
        var c = GraniteConfig.Load(Fixtures.Dir("tiny-h-moe"));
        var files = GraniteCheckpointLayout.WriteRandom(tmp.Path, c, ScalarType.BFloat16, seed: 5, maxShardBytes: 300_000);
        files.Count.Should().BeGreaterThan(1);

        using var ckpt = SafetensorsCheckpoint.Open(tmp.Path);
        using var reference = SafetensorsCheckpoint.Open(Fixtures.Dir("tiny-h-moe"));
        ckpt.Compare(reference.TensorNames, _ => false).Should().Match<CheckpointReport>(r => r.IsComplete && r.Unexpected.Count == 0);
        foreach (var n in reference.TensorNames)
        {
            ckpt.GetInfo(n).Shape.Should().Equal(reference.GetInfo(n).Shape, n);
            ckpt.GetInfo(n).DType.Should().Be(ScalarType.BFloat16);
        }
        using var scope = NewDisposeScope();
        ckpt.GetTensor("model.layers.0.mamba.D").to_type(ScalarType.Float32).data<float>().ToArray().Should().OnlyContain(v => v == 1f);
        var aLog = ckpt.GetTensor("model.layers.0.mamba.A_log").to_type(ScalarType.Float32);
        aLog.min().item<float>().Should().BeGreaterThanOrEqualTo(0f);
        aLog.max().item<float>().Should().BeLessThanOrEqualTo(MathF.Log(16f) + 0.02f);
        var w = ckpt.GetTensor("model.layers.0.shared_mlp.input_linear.weight").to_type(ScalarType.Float32);
        w.std().item<float>().Should().BeApproximately(0.02f, 0.003f);

        // Same seed, same bytes.
        using var tmp2 = new TempDir();
        GraniteCheckpointLayout.WriteRandom(tmp2.Path, c, ScalarType.BFloat16, seed: 5);
        using var again = SafetensorsCheckpoint.Open(tmp2.Path);
        ckpt.GetTensor("model.embed_tokens.weight").bytes.ToArray().Should().Equal(again.GetTensor("model.embed_tokens.weight").bytes.ToArray());
    }
}
