using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Granite.Core.Generation;

/// <summary>Copies the logits of one position out of a tensor into managed memory, once per step, for the
/// <see cref="Sampler"/> (which never touches tensors).</summary>
internal static class LogitsReader
{
    /// <summary>
    /// Reads <paramref name="logits"/> (shape [V] or [1, V]; float32, bfloat16 or any floating dtype; any device) as
    /// float32 into <paramref name="buffer"/>, grown when shorter than V and otherwise reused.
    /// </summary>
    /// <returns>The first V elements of <paramref name="buffer"/>.</returns>
    /// <exception cref="ArgumentException">Bad shape or a non-floating dtype (parameter <c>logits</c>).</exception>
    public static Span<float> Read(Tensor logits, ref float[] buffer)
    {
        ArgumentNullException.ThrowIfNull(logits);
        bool batchOfOne = logits.dim() == 2 && logits.shape[0] == 1;
        if (!(logits.dim() == 1 || batchOfOne) || logits.shape[^1] < 1)
            throw new ArgumentException($"logits must have shape [V] or [1, V]; got [{string.Join(", ", logits.shape)}].", nameof(logits));
        if (!logits.is_floating_point())
            throw new ArgumentException($"logits must be a floating-point tensor; got {logits.dtype}.", nameof(logits));

        int vocab = checked((int)logits.shape[^1]);
        if (buffer.Length < vocab)
            buffer = new float[vocab];
        var x = buffer.AsSpan(0, vocab);

        using (NewDisposeScope())
        {
            var v = logits;
            if (v.device_type != DeviceType.CPU)
                v = v.cpu();
            if (!v.is_contiguous())
                v = v.contiguous();
            switch (v.dtype)
            {
                case ScalarType.Float32:
                    MemoryMarshal.Cast<byte, float>(v.bytes)[..vocab].CopyTo(x);
                    break;
                case ScalarType.BFloat16:
                    var raw = MemoryMarshal.Cast<byte, ushort>(v.bytes)[..vocab];
                    for (int i = 0; i < raw.Length; i++)
                        x[i] = BitConverter.Int32BitsToSingle(raw[i] << 16);
                    break;
                default:
                    MemoryMarshal.Cast<byte, float>(v.to(ScalarType.Float32).bytes)[..vocab].CopyTo(x);
                    break;
            }
        }
        return x;
    }
}
