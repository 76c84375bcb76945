using Granite.Core.Weights.Gguf;

namespace Granite.Gguf.Tests;

/// <summary>The exported key set, order, value types and tensor layout: llama.cpp's converter's, pinned.</summary>
[Collection(LlamaCppCollection.Name)]
public class GgufExportLayoutTests
{
    private readonly ExportedFixtures _exports;

    public GgufExportLayoutTests(ExportedFixtures exports) => _exports = exports;

    [Fact]
    public void HybridKeysAreTheConvertersInItsOrder()
    {
        using var f = GgufFile.Open(_exports.Path("tiny-h-moe", null));
        var keys = f.Metadata.Select(k => $"{k.Key}:{k.Value.Type}{(k.Value.Type == GgufValueType.Array ? "/" + k.Value.ElementType : "")}").ToArray();
        keys.Should().Equal(
            "general.architecture:String", "general.type:String", "general.name:String",
            "granitehybrid.block_count:UInt32", "granitehybrid.context_length:UInt32", "granitehybrid.embedding_length:UInt32",
            "granitehybrid.feed_forward_length:UInt32", "granitehybrid.attention.head_count:UInt32",
            "granitehybrid.attention.head_count_kv:Array/Int32", "granitehybrid.rope.freq_base:Float32",
            "granitehybrid.attention.layer_norm_rms_epsilon:Float32", "granitehybrid.expert_count:UInt32",
            "granitehybrid.expert_used_count:UInt32", "general.file_type:UInt32", "granitehybrid.vocab_size:UInt32",
            "granitehybrid.rope.dimension_count:UInt32", "granitehybrid.attention.scale:Float32", "granitehybrid.embedding_scale:Float32",
            "granitehybrid.residual_scale:Float32", "granitehybrid.logit_scale:Float32",
            "granitehybrid.expert_shared_feed_forward_length:UInt32", "granitehybrid.ssm.conv_kernel:UInt32",
            "granitehybrid.ssm.state_size:UInt32", "granitehybrid.ssm.group_count:UInt32", "granitehybrid.ssm.inner_size:UInt32",
            "granitehybrid.ssm.time_step_rank:UInt32", "granitehybrid.rope.scaling.finetuned:Bool", "general.quantization_version:UInt32",
            "tokenizer.ggml.model:String", "tokenizer.ggml.pre:String", "tokenizer.ggml.tokens:Array/String",
            "tokenizer.ggml.token_type:Array/Int32", "tokenizer.ggml.merges:Array/String", "tokenizer.ggml.bos_token_id:UInt32",
            "tokenizer.ggml.eos_token_id:UInt32", "tokenizer.ggml.unknown_token_id:UInt32", "tokenizer.ggml.padding_token_id:UInt32",
            "tokenizer.ggml.add_bos_token:Bool", "tokenizer.ggml.add_eos_token:Bool", "tokenizer.chat_template:String");
        ((int[])f.Require("granitehybrid.attention.head_count_kv").Value).Should().Equal(0, 0, 2, 0, 0, 2);
        f.GetUInt32("granitehybrid.context_length").Should().Be(1u << 20);
        f.GetUInt32("general.file_type").Should().Be(32u, "MOSTLY_BF16");
        f.GetDouble("granitehybrid.attention.scale").Should().Be(0.0625);
        f.GetDouble("granitehybrid.logit_scale").Should().Be(4.0);
        f.GetUInt32("granitehybrid.ssm.inner_size").Should().Be(128u);
        f.GetUInt32("granitehybrid.ssm.time_step_rank").Should().Be(8u);
        f.Get("granitehybrid.rope.scaling.finetuned")!.Value.Should().Be(false);
        var types = (int[])f.Require("tokenizer.ggml.token_type").Value;
        var tokens = (string[])f.Require("tokenizer.ggml.tokens").Value;
        tokens.Should().HaveCount(544);
        tokens[507].Should().Be("<|end_of_text|>");
        types[507].Should().Be((int)GgufTokenType.Control);
        types[508].Should().Be((int)GgufTokenType.Control, "<|fim_prefix|> is not special in tokenizer.json but looks special");
        types[520].Should().Be((int)GgufTokenType.UserDefined, "<tool_call>");
        tokens[540].Should().Be("[PAD540]");
        types[540].Should().Be((int)GgufTokenType.Unused);
    }

    [Fact]
    public void HybridTensorsHaveTheConvertersNamesShapesAndTypes()
    {
        using var f = GgufFile.Open(_exports.Path("tiny-h-moe", null));
        string D(string n) { var t = f.GetInfo(n); return $"{t.Type}[{string.Join(",", t.Shape)}]"; }
        D("token_embd.weight").Should().Be("BF16[544,64]");
        f.ContainsTensor("output.weight").Should().BeFalse("embeddings are tied");
        D("output_norm.weight").Should().Be("F32[64]");
        D("blk.0.ssm_in.weight").Should().Be("BF16[296,64]");
        D("blk.0.ssm_conv1d.weight").Should().Be("F32[160,4]");
        D("blk.0.ssm_conv1d.bias").Should().Be("F32[160]");
        D("blk.0.ssm_dt.bias").Should().Be("F32[8]");
        D("blk.0.ssm_a").Should().Be("F32[8,1]");
        D("blk.0.ssm_d").Should().Be("F32[8,1]");
        D("blk.0.ssm_norm.weight").Should().Be("F32[1,128]");
        D("blk.0.ssm_out.weight").Should().Be("BF16[64,128]");
        D("blk.0.ffn_gate_inp.weight").Should().Be("F32[8,64]");
        D("blk.0.ffn_gate_exps.weight").Should().Be("BF16[8,32,64]");
        D("blk.0.ffn_up_exps.weight").Should().Be("BF16[8,32,64]");
        D("blk.0.ffn_down_exps.weight").Should().Be("BF16[8,64,32]");
        D("blk.0.ffn_gate_shexp.weight").Should().Be("BF16[64,64]");
        D("blk.0.ffn_down_shexp.weight").Should().Be("BF16[64,64]");
        D("blk.2.attn_q.weight").Should().Be("BF16[64,64]");
        D("blk.2.attn_k.weight").Should().Be("BF16[32,64]");
        D("blk.2.attn_v.weight").Should().Be("BF16[32,64]");
        D("blk.2.attn_output.weight").Should().Be("BF16[64,64]");
        f.Tensors.Should().HaveCount(96);
        f.Tensors.Should().OnlyContain(t => (t.Offset - f.DataStart) % 32 == 0);
    }

    [Fact]
    public void DenseModelIsGraniteWithDenseFfnAndRope()
    {
        using var f = GgufFile.Open(_exports.Path("tiny-dense", null));
        f.GetString("general.architecture").Should().Be("granite");
        f.Get("granite.rope.scaling.finetuned")!.Value.Should().Be(true);
        f.GetUInt32("granite.context_length").Should().Be(4096u);
        ((int[])f.Require("granite.attention.head_count_kv").Value).Should().Equal(2, 2, 2, 2);
        f.GetUInt32("general.file_type").Should().Be(0u, "the fixture is stored in F32");
        f.ContainsTensor("output.weight").Should().BeTrue("tiny-dense has an untied head");
        f.ContainsTensor("blk.0.ffn_gate.weight").Should().BeTrue();
        f.ContainsTensor("blk.0.ffn_gate_shexp.weight").Should().BeFalse();
        f.ContainsTensor("blk.0.ffn_gate_inp.weight").Should().BeFalse();
        f.Tensors.Should().HaveCount(39);
    }
}
