using Granite.Core.Generation;
using static TorchSharp.torch;

namespace Granite.Core.Tests.Generation;

/// <summary>The one tensor-to-managed copy per step that feeds the sampler.</summary>
public class LogitsReaderTests
{
    public LogitsReaderTests() => GraniteRuntime.EnsureLoaded();

    [Fact]
    public void ReadsVectorsBatchOfOneBf16AndStridedTensorsIntoAReusedBuffer()
    {
        using var scope = NewDisposeScope();
        var buffer = Array.Empty<float>();
        using (var v = tensor(new float[] { 1f, 3f, -2f, 3f, 2f }))
            LogitsReader.Read(v, ref buffer).ToArray().Should().Equal(1f, 3f, -2f, 3f, 2f);
        var first = buffer;
        using (var batch = tensor(new float[] { 1f, 2f, 7f, 3f }).reshape(1, 4))
            LogitsReader.Read(batch, ref buffer).ToArray().Should().Equal(1f, 2f, 7f, 3f);
        buffer.Should().BeSameAs(first, "a large enough buffer is reused");
        using (var bf16 = tensor(new float[] { 0.5f, -1f, 4f, 2f }).to(ScalarType.BFloat16))
            LogitsReader.Read(bf16, ref buffer).ToArray().Should().Equal(0.5f, -1f, 4f, 2f);
        using (var f64 = tensor(new double[] { 0.25, -8, 1e3 }))
            LogitsReader.Read(f64, ref buffer).ToArray().Should().Equal(0.25f, -8f, 1000f);
        using (var m = tensor(new float[] { 0, 1, 2, 3, 4, 5 }).reshape(3, 2))
        using (var column = m.t()[1].unsqueeze(0)) // [1, 3] view with stride 2
            LogitsReader.Read(column, ref buffer).ToArray().Should().Equal(1f, 3f, 5f);
        var c = GoldenLogits.Cases[0];
        using (var big = tensor(c.LastLogits))
            LogitsReader.Read(big, ref buffer).ToArray().Should().Equal(c.LastLogits);
        buffer.Length.Should().Be(c.LastLogits.Length, "the buffer grows to the vocabulary");
    }

    [Fact]
    public void RejectsBadShapesAndIntegerTensors()
    {
        using var scope = NewDisposeScope();
        var buffer = Array.Empty<float>();
        using var twoRows = zeros(2, 5);
        new Action(() => LogitsReader.Read(twoRows, ref buffer)).Should().Throw<ArgumentException>().Which.ParamName.Should().Be("logits");
        using var cube = zeros(1, 1, 5);
        new Action(() => LogitsReader.Read(cube, ref buffer)).Should().Throw<ArgumentException>().WithMessage("logits must have shape [V] or [1, V]; got [1, 1, 5].*");
        using var ints = tensor(new long[] { 1, 2 });
        new Action(() => LogitsReader.Read(ints, ref buffer)).Should().Throw<ArgumentException>().WithMessage("*floating-point*");
    }
}
